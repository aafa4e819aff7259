"""The policy, programme and report pages: each role opens exactly the pages its role may (the
403 page for the rest), sees them in its navigation, and writes only where it may."""

from __future__ import annotations

import pytest

from counties.models import Official
from loans.models import CreditPolicy, FundMovement
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy

R = Official.Role

PAGES = {
    "/portal/policy/": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.AUDITOR},
    "/portal/policy/1/": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.AUDITOR},
    "/portal/programmes/": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.AUDITOR},
    "/portal/reports/": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.AUDITOR, R.TOWNSHIP_OFFICER},
    "/portal/reports/loans.csv": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.AUDITOR, R.TOWNSHIP_OFFICER},
    "/portal/reports/consents.xlsx": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.AUDITOR, R.TOWNSHIP_OFFICER},
    "/portal/reports/access.csv": {R.COUNTY_ADMIN, R.AUDITOR},
}
# What only administrators and risk officers may post.
WRITES = {
    "/portal/policy/new": lambda policy: {"partner": policy.partner_id},
    "/portal/policy/1/submit": lambda policy: {},
    "/portal/programmes/": lambda policy: {"action": "fund_deposit", "deposit-amount": "100.00", "deposit-on": "2026-11-27"},
}
WRITERS = {R.COUNTY_ADMIN, R.RISK_OFFICER}


@pytest.fixture
def policy(portal):
    return activate_policy(credit_partner("roles-bank"))


@pytest.mark.parametrize("role", R.values)
def test_each_role_opens_exactly_its_new_pages(portal, policy, role):
    portal.login(role)
    path = f"/portal/policy/{policy.version}/"
    pages = {page.replace("/portal/policy/1/", path): roles for page, roles in PAGES.items()}
    got = {page: portal.get(page).status_code for page in pages}
    assert got == {page: 200 if role in roles else 403 for page, roles in pages.items()}
    nav = {item["url"] for item in portal.get("/portal/").context["nav"]}
    assert ("/portal/policy/" in nav, "/portal/programmes/" in nav, "/portal/reports/" in nav) == (
        role in PAGES["/portal/policy/"], role in PAGES["/portal/programmes/"], role in PAGES["/portal/reports/"]
    )


@pytest.mark.parametrize("role", R.values)
def test_only_writers_write(portal, policy, role):
    portal.login(role)
    posts = {path.replace("/1/", f"/{policy.version}/"): data(policy) for path, data in WRITES.items()}
    statuses = {path: portal.post(path, data).status_code for path, data in posts.items()}
    if role in WRITERS:
        assert set(statuses.values()) == {302}
        assert FundMovement.objects.count() == 1 and CreditPolicy.objects.count() == 2
    else:
        assert statuses == dict.fromkeys(posts, 403)
        assert not FundMovement.objects.exists() and CreditPolicy.objects.count() == 1
