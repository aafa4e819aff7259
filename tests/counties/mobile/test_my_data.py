"""My data on /m/data/: what the county shares about the farmer, per category, as of today,
read through the consent gate (which logs the look-up), and every access to it."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from data_sharing.models import AccessLog
from data_sharing.services import consent_pause
from loans.nightly import credit_assessment_run
from tests.counties.mobile.conftest import get, log_in
from tests.data_sharing.test_consent import grant
from tests.loans.test_features import add_record


def day_text(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def test_the_farmer_sees_the_shared_records_and_every_access(client, county, li, wang):
    today = timezone.localdate()
    last_week = today - dt.timedelta(days=7)
    grant(li, county["partner"], ["land_contract", "agri_insurance"])
    add_record(li, "land_contract", "HT-9", {"contract_no": "HT-9", "parcels": 3, "area_mu": "6.50"}, as_of=last_week)
    add_record(
        li,
        "agri_subsidy",
        f"{today.year}|grain",
        {"year": today.year, "kind": "grain", "amount_yuan": "300.00"},
        as_of=last_week,
    )
    add_record(wang, "land_contract", "W-1", {"contract_no": "W-1", "parcels": 1, "area_mu": "99.00"}, as_of=last_week)
    credit_assessment_run(business_date=today)
    log_in(client, li)

    html = get(client, "/m/data/").content.decode()

    own_read = AccessLog.objects.filter(farmer=li).get()
    assert (own_read.accessor_type, own_read.accessor, own_read.purpose, own_read.business_date) == (
        "farmer",
        f"farmer:{li.pk}",
        "credit",
        today,
    )
    assert own_read.categories == ["agri_insurance", "dishonest_debtor", "land_contract"]
    land = html.split('id="category-land_contract"')[1].split("</section>")[0]
    assert (
        '<dl class="records"><div><dt>承包合同编号</dt><dd>HT-9</dd></div><div><dt>地块数</dt><dd>3</dd></div>'
        "<div><dt>承包面积（亩）</dt><dd>6.50</dd></div><div><dt>承包期限至</dt><dd>—</dd></div></dl>"
    ) in land
    assert f"数据截至 {day_text(last_week)}" in land
    assert "99.00" not in html  # 王五's records never show
    subsidy = html.split('id="category-agri_subsidy"')[1].split("</section>")[0]
    assert "没有共享（您没有授权这一类）。" in subsidy and "300.00" not in subsidy
    insurance = html.split('id="category-agri_insurance"')[1].split("</section>")[0]
    assert "已授权，县里没有您的这类记录。" in insurance
    accesses = html.split('id="accesses"')[1]
    assert accesses.index("<strong>您本人查看</strong>") < accesses.index(
        "<strong>mybank 银行（夜间额度计算）</strong>"
    )
    assert "用途：评估和发放您的信用贷款" in accesses
    assert "数据：农业保险、失信被执行人、土地承包经营权" in accesses


def test_without_an_active_consent_nothing_is_read(client, county, li):
    consent = grant(li, county["partner"], ["land_contract"])
    consent_pause(consent=consent, actor="farmer")
    add_record(
        li,
        "land_contract",
        "HT-1",
        {"contract_no": "HT-1", "parcels": 1, "area_mu": "2.00"},
        as_of=timezone.localdate(),
    )
    log_in(client, li)

    html = get(client, "/m/data/").content.decode()

    assert not AccessLog.objects.filter(farmer=li).exists()
    assert "HT-1" not in html
    assert html.count("没有共享（您没有授权这一类）。") == 8  # every consentable category
    assert "还没有人用过您的数据。" in html
