"""Each role tries what it must not do: the 403 page (or 404 for another township's farmer),
and nothing written."""

from __future__ import annotations

import datetime as dt

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from counties.models import FarmerLookup, NightlyRun, Official
from data_sharing.models import AccessLog, ImportBatch
from tests.counties.portal.conftest import make_official, otp_login

R = Official.Role
DAY = dt.date(2026, 11, 27)

# page → roles that may open it (everyone else gets the 403 page)
PAGES = {
    "/portal/": set(R.values),
    "/portal/dashboard.json": set(R.values),
    "/portal/loans/": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.TOWNSHIP_OFFICER, R.AUDITOR},
    "/portal/nightly/": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.DATA_OFFICER, R.AUDITOR},
    f"/portal/nightly/{DAY}/": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.DATA_OFFICER, R.AUDITOR},
    f"/portal/nightly/{DAY}/progress": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.DATA_OFFICER, R.AUDITOR},
    "/portal/farmers/": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.TOWNSHIP_OFFICER, R.DATA_OFFICER},
    "/portal/access/": {R.AUDITOR, R.COUNTY_ADMIN},
    "/portal/access/export.csv": {R.AUDITOR, R.COUNTY_ADMIN},
    "/portal/policy/": {R.COUNTY_ADMIN, R.RISK_OFFICER, R.AUDITOR},
    "/portal/officials/": {R.COUNTY_ADMIN},
    "/portal/data/": {R.COUNTY_ADMIN, R.DATA_OFFICER},
}


@pytest.mark.parametrize("role", R.values)
def test_each_role_opens_exactly_its_pages(portal, role):
    NightlyRun.objects.create(business_date=DAY, status=NightlyRun.Status.SUCCEEDED)
    portal.login(role)
    got = {page: portal.get(page).status_code for page in PAGES}
    assert got == {page: 200 if role in roles else 403 for page, roles in PAGES.items()}
    forbidden = [page for page, roles in PAGES.items() if role not in roles and not page.startswith("/portal/data/")]
    for page in forbidden:
        assert "无权访问" in portal.get(page).content.decode()


def test_the_navigation_lists_only_what_the_role_may_open(portal):
    portal.login(R.DATA_OFFICER)
    nav = [item["url"] for item in portal.get("/portal/").context["nav"]]
    assert nav == ["/portal/", "/portal/nightly/", "/portal/farmers/", "/portal/data/"]


def test_a_data_officer_cannot_rerun_the_night_or_see_the_policy(portal, monkeypatch):
    from counties.tasks import nightly_county

    sent = []
    monkeypatch.setattr(nightly_county, "apply_async", lambda *a, **k: sent.append((a, k)))
    NightlyRun.objects.create(business_date=DAY, status=NightlyRun.Status.FAILED)
    portal.login(R.DATA_OFFICER)
    assert portal.post(f"/portal/nightly/{DAY}/rerun").status_code == 403
    assert portal.get("/portal/policy/").status_code == 403
    assert NightlyRun.objects.get(business_date=DAY).status == NightlyRun.Status.FAILED
    assert sent == []


def test_a_township_officer_cannot_open_another_townships_farmer(portal, book):
    portal.login(R.TOWNSHIP_OFFICER, township=portal.townships["east"])
    west_farmer = book.farmers["c1"]
    east_farmer = book.farmers["a1"]
    assert portal.get(f"/portal/farmers/{west_farmer.pk}/").status_code == 404
    assert portal.post(f"/portal/farmers/{west_farmer.pk}/", {"purpose": "loan_servicing"}).status_code == 404
    assert not AccessLog.objects.filter(farmer=west_farmer).exists()
    assert portal.get(f"/portal/farmers/{east_farmer.pk}/").status_code == 200
    # Not in searches either, and not in the loan list.
    assert [row["farmer"].pk for row in portal.get("/portal/farmers/", q="王").context["rows"]] == []
    assert [row["farmer"].pk for row in portal.get("/portal/farmers/", q="张大").context["rows"]] == [east_farmer.pk]
    listed = {loan.farmer_id for loan in portal.get("/portal/loans/", township="410225802").context["page"]}
    assert listed and west_farmer.pk not in listed
    rows = portal.get("/portal/loans/").context["rows"]
    assert [row.code for row in rows] == ["410225801"]


def test_an_auditor_cannot_post_anything(portal, book, monkeypatch):
    from counties.tasks import nightly_county

    sent = []
    monkeypatch.setattr(nightly_county, "apply_async", lambda *a, **k: sent.append((a, k)))
    NightlyRun.objects.create(business_date=DAY, status=NightlyRun.Status.FAILED)
    _user, other, _device = make_official(R.RISK_OFFICER, username="target")
    portal.login(R.AUDITOR)
    posts = {
        f"/portal/nightly/{DAY}/rerun": {},
        f"/portal/farmers/{book.farmers['a1'].pk}/": {"purpose": "risk_review"},
        "/portal/officials/": {"username": "new", "role": "auditor", "password": "Aud1tor-pass-2026"},
        f"/portal/officials/{other.pk}/reset-otp": {},
        f"/portal/officials/{other.pk}/unlock": {},
        f"/portal/officials/{other.pk}/active": {"active": "0"},
        "/portal/dashboard.json": {},
        "/portal/access/": {},
        "/portal/data/upload/": {"category": "land_contract", "as_of_date": "2026-06-30"},
    }
    assert {path: portal.post(path, data).status_code for path, data in posts.items()} == dict.fromkeys(posts, 403)
    assert sent == []
    assert NightlyRun.objects.get(business_date=DAY).status == NightlyRun.Status.FAILED
    assert not FarmerLookup.objects.exists() and not AccessLog.objects.filter(accessor_type="official").exists()
    assert not Official.objects.filter(user__username="new").exists()
    assert TOTPDevice.objects.filter(user=other.user).exists()
    assert other.user.__class__.objects.get(pk=other.user.pk).is_active
    assert not ImportBatch.objects.exists()


def test_a_risk_officer_cannot_read_the_access_log_or_manage_officials(portal):
    portal.login(R.RISK_OFFICER)
    assert portal.get("/portal/access/").status_code == 403
    assert portal.get("/portal/access/export.csv").status_code == 403
    assert portal.post("/portal/officials/", {"username": "x", "role": "auditor", "password": "Aud1tor-pass-2026"}).status_code == 403


def test_a_township_officer_without_a_township_is_refused(portal):
    user, _official, device = make_official(R.TOWNSHIP_OFFICER)
    otp_login(portal.client, user, device)
    assert portal.get("/portal/").status_code == 403


def test_a_user_who_is_not_an_official_is_refused(portal):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("not-an-official", password="x" * 12)
    device = TOTPDevice.objects.create(user=user, name="portal", confirmed=True)
    otp_login(portal.client, user, device)
    assert portal.get("/portal/").status_code == 403
