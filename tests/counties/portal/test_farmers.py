"""Farmer look-up: search by name, village or exact ID/phone (blind index) with masked PII; a
farmer's page asks why, reads through the consent gate (logged) and shows consent, line and
loans; the access log shows that read to auditors and county admins, filtered and as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io

from django.utils import timezone

from counties.models import FarmerLookup, Official
from data_sharing.models import AccessLog
from data_sharing.pii import mask_id_number
from tests.conftest import valid_id_number
from tests.loans.test_features import add_record


def _ids(response) -> list[int]:
    return [row["farmer"].pk for row in response.context["rows"]]


def test_search_by_name_village_id_or_phone_with_masked_pii(portal, book):
    portal.login(Official.Role.COUNTY_ADMIN)
    a1, b1 = book.farmers["a1"], book.farmers["b1"]
    assert set(_ids(portal.get("/portal/farmers/", q="张"))) == {book.farmers[k].pk for k in ("a1", "a2", "a3", "a4")}
    assert _ids(portal.get("/portal/farmers/", q="张三")) == [book.farmers["a3"].pk]
    assert _ids(portal.get("/portal/farmers/", q=valid_id_number(seq=811))) == [a1.pk]
    assert _ids(portal.get("/portal/farmers/", q=valid_id_number(seq=811).lower())) == [a1.pk]
    assert _ids(portal.get("/portal/farmers/", q="139 0013 9002")) == [b1.pk]
    assert _ids(portal.get("/portal/farmers/", q="13900139003")) == []  # exact only
    assert _ids(portal.get("/portal/farmers/", q=valid_id_number(seq=811)[:10])) == []  # no partial ID search
    assert set(_ids(portal.get("/portal/farmers/", village="李庄"))) == {b1.pk, book.farmers["b2"].pk}
    assert _ids(portal.get("/portal/farmers/", q="李一", village="410225801002")) == [b1.pk]
    assert _ids(portal.get("/portal/farmers/", q="李一", village="张庄")) == []
    assert portal.get("/portal/farmers/").context["rows"] == []

    page = portal.get("/portal/farmers/", q="李一")
    html = page.content.decode()
    id_number = valid_id_number(seq=821)
    assert mask_id_number(id_number) in html and id_number not in html
    assert "139****9002" in html and "13900139002" not in html
    assert not AccessLog.objects.exists()  # a search reads no government data


def test_opening_a_farmer_asks_why_then_reads_through_the_gate_and_logs_it(portal, book):
    official = portal.login(Official.Role.RISK_OFFICER, username="risk-li")
    a1 = book.farmers["a1"]
    add_record(a1, "land_contract", "HT-811", {"contract_area_mu": "8.50", "parcels": 3}, as_of=book.today)

    asked = portal.get(f"/portal/farmers/{a1.pk}/")
    assert asked.status_code == 200
    assert "查询目的" in asked.content.decode()
    assert "max-age=0" in asked["Cache-Control"]
    assert not AccessLog.objects.exists() and not FarmerLookup.objects.exists()

    no_purpose = portal.post(f"/portal/farmers/{a1.pk}/", {"note": "x"})
    assert no_purpose.status_code == 200 and not AccessLog.objects.exists()

    shown = portal.post(f"/portal/farmers/{a1.pk}/", {"purpose": "farmer_request", "note": "农户来电咨询额度"})
    assert shown.status_code == 200
    entry = AccessLog.objects.get()
    assert (entry.accessor_type, entry.accessor, entry.farmer_id, entry.partner_id, entry.farmer_count, entry.purpose) == (
        "official", "risk-li", a1.pk, book.partner.pk, 1, "credit",
    )
    assert entry.categories == ["agri_subsidy", "dishonest_debtor", "land_contract"]  # consented + the public list
    lookup = FarmerLookup.objects.get()
    assert (lookup.access_log_id, lookup.username, lookup.role, lookup.purpose, lookup.note) == (
        entry.pk, "risk-li", official.role, "farmer_request", "农户来电咨询额度",
    )
    html = shown.content.decode()
    assert "普惠测试银行" in html and '<span class="tag consent-active">有效</span>' in html
    assert "<dd>50000.00</dd>" in html and "18000.50" in html  # the line and the loan's balance
    assert "HT-811" in html and "8.50" in html  # the admitted land record
    assert valid_id_number(seq=811) not in html and "13800138001" not in html


def test_a_farmer_without_consent_is_read_as_refused_and_still_logged(portal, book):
    portal.login(Official.Role.COUNTY_ADMIN, username="admin-x")
    a4 = book.farmers["a4"]
    # The county's policy partner is the one read for; a4 never consented.
    from tests.loans.test_nightly_batch import activate_policy

    activate_policy(book.partner)
    html = portal.post(f"/portal/farmers/{a4.pk}/", {"purpose": "complaint"}).content.decode()
    entry = AccessLog.objects.get(farmer=a4)
    assert (entry.farmer_count, entry.categories, entry.accessor) == (0, [], "admin-x")
    assert "没有有效授权" in html


def test_the_access_log_shows_the_read_to_auditors_and_admins_with_filters_and_csv(portal, book):
    reader = portal.login(Official.Role.RISK_OFFICER, username="risk-wang")
    b1 = book.farmers["b1"]
    portal.post(f"/portal/farmers/{b1.pk}/", {"purpose": "loan_servicing", "note": "逾期回访"})
    entry = AccessLog.objects.get(farmer=b1)
    masked = f"李* {mask_id_number(valid_id_number(seq=821))}"
    today = timezone.localdate()

    for role in (Official.Role.AUDITOR, Official.Role.COUNTY_ADMIN):
        portal.login(role)
        page = portal.get("/portal/access/")
        assert page.status_code == 200
        row = next(row for row in page.context["rows"] if row["accessor"] == "risk-wang")
        assert (row["farmer"], row["official_purpose"], row["note"], row["categories"], row["purpose"]) == (
            masked, "贷后管理", "逾期回访", "agri_subsidy, dishonest_debtor, land_contract", "credit",
        )
        html = page.content.decode()
        assert masked in html and "李一" not in html and valid_id_number(seq=821) not in html

        yesterday = (today - dt.timedelta(days=1)).isoformat()
        assert portal.get("/portal/access/", date_to=yesterday).context["rows"] == []
        assert [r["accessor"] for r in portal.get("/portal/access/", date_from=today.isoformat()).context["rows"]] == [
            "risk-wang"
        ]

        download = portal.get("/portal/access/export.csv", date_from=today.isoformat(), date_to=today.isoformat())
        assert download["Content-Type"] == "text/csv; charset=utf-8"
        assert f"access-log-410225-{today}_{today}.csv" in download["Content-Disposition"]
        text = b"".join(download.streaming_content).decode("utf-8")
        assert text.startswith("\ufeff")
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
        assert rows[0][0] == "时间 Time"
        assert rows[1:] == [[
            timezone.localtime(entry.at).isoformat(timespec="seconds"), "县级工作人员", "risk-wang", "普惠测试银行", masked, "1",
            "agri_subsidy, dishonest_debtor, land_contract", "credit", "贷后管理", "逾期回访", str(today),
        ]]
    assert reader.user.username == "risk-wang"


def test_csv_cells_that_look_like_formulas_are_defused(portal, book):
    portal.login(Official.Role.COUNTY_ADMIN)
    portal.post(f"/portal/farmers/{book.farmers['a1'].pk}/", {"purpose": "complaint", "note": "=HYPERLINK(\"x\")"})
    text = b"".join(portal.get("/portal/access/export.csv").streaming_content).decode("utf-8")
    assert "'=HYPERLINK" in text
