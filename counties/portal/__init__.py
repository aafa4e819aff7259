"""The county officials' portal under /portal/: sign-in with a second factor, dashboards, the
loan book, nightly runs, farmer look-ups through the consent gate, the access log, the credit
policy (model card, drafts, the what-if sandbox, a second official's approval), county
programmes (interest subsidy, the risk compensation fund, disaster pauses), monthly reports as
CSV / XLSX, and the management of officials. Views stay thin; reads are in
:mod:`counties.selectors`, :mod:`counties.portal.reports` and :mod:`counties.portal.model_card`,
writes in :mod:`counties.portal.services` and the loans services (:mod:`loans.policy`,
:mod:`loans.programmes`); who may open what is in :mod:`counties.portal.nav`."""
