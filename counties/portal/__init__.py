"""The county officials' portal under /portal/: sign-in with a second factor, dashboards, the
loan book, nightly runs, farmer look-ups through the consent gate, the access log and the
management of officials. Views stay thin; reads are in :mod:`counties.selectors`, writes in
:mod:`counties.portal.services`."""
