"""The home page /m/: the line (amount, available, grade, rate, valid until, status), why it is
what it is (three reasons and one hint), what it says when there is no line yet, and the
messages list."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone, translation

from counties.mobile import selectors
from data_sharing.services import consent_pause, consent_revoke, consent_text_publish
from loans.models import CreditAssessment, CreditLine
from loans.nightly import add_months, credit_assessment_run
from tests.counties.mobile.conftest import errors, get, log_in, post
from tests.data_sharing.test_consent import grant
from tests.loans.test_features import CONSENTABLE, add_record
from tests.loans.test_nightly_batch import add_wang

TODAY = timezone.localdate


def day_text(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


@pytest.fixture
def assessed(county, li, client):
    """李四 consented, with the hand-checked records of tests/loans/test_nightly_batch.py
    (score 597, grade B), assessed today: a line of 20,000 + 1,500 × 8.23 mu = 32,345 → 32,300."""
    consent = grant(li, county["partner"], CONSENTABLE)
    add_wang(li, TODAY())
    credit_assessment_run(business_date=TODAY())
    log_in(client, li)
    return consent


def test_home_shows_the_line_and_why(client, assessed, li):
    html = get(client, "/m/").content.decode()

    valid_until = add_months(TODAY(), 12)
    assert '<p class="big" id="available">32,300 元</p>' in html
    assert '<span class="badge active" id="line-status">可用</span>' in html
    assert '<dd id="line-amount">32,300 元</dd>' in html
    assert '<dd id="line-grade">B</dd>' in html
    assert '<dd id="line-rate">6%</dd>' in html
    assert f'<dd id="line-valid-until">{day_text(valid_until)}</dd>' in html
    assert (
        '<ol class="reasons"><li>家庭处于防返贫监测中</li><li>未加入合作社或登记家庭农场</li>'
        "<li>土地的农业保险覆盖不足</li></ol>"
    ) in html
    assert '<p class="hint" id="hint"><strong>提额办法：</strong>加入农民专业合作社或登记家庭农场</p>' in html
    assert '<li class="info" data-key="line_changed">您获得了 32,300 元的额度。' in html
    assert "李四，您好" in html


def test_home_in_english(client, assessed):
    html = get(client, "/m/", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert '<p class="big" id="available">32,300 yuan</p>' in html
    assert '<span class="badge active" id="line-status">Available</span>' in html
    assert (
        "<li>Your household is under poverty-relapse monitoring</li><li>Not in a cooperative or a registered family farm</li>"
        "<li>Little of your land is insured</li>"
    ) in html
    assert "Join a cooperative or register a family farm" in html
    assert '<html lang="en">' in html


def test_without_consent_the_home_page_asks_for_it(client, li):
    log_in(client, li)

    html = get(client, "/m/").content.decode()

    assert '<section class="card" id="line" data-state="no_consent">' in html
    assert '<p class="explain" id="line-explanation">您还没有授权。授权后，今晚就会为您计算额度。</p>' in html
    assert '<a class="btn huge" href="/m/consent/">授权</a>' in html
    assert 'id="why"' not in html


def test_after_consent_the_line_is_computed_tonight(client, county, li):
    grant(li, county["partner"], CONSENTABLE)
    log_in(client, li)

    html = get(client, "/m/").content.decode()

    assert 'data-state="pending"' in html
    assert "您已授权，额度将在今晚计算，明天来看。" in html
    assert '<a class="btn huge" href="/m/consent/">' not in html


def test_revoking_suspends_the_line_and_says_why(client, assessed, li):
    consent_revoke(consent=assessed, actor=f"farmer:{li.pk}")

    html = get(client, "/m/").content.decode()

    assert CreditLine.objects.get(farmer=li).status == "suspended"
    assert '<p class="big" id="available">0 元</p>' in html
    assert '<span class="badge suspended" id="line-status">已冻结</span>' in html
    assert (
        '<p class="explain" id="line-explanation">您撤回了授权，额度已冻结。重新授权后，今晚会重新计算额度。</p>'
        in html
    )
    assert '<a class="btn huge" href="/m/consent/">授权</a>' in html
    assert '<li class="alert" data-key="line_suspended">您撤回了授权，额度已冻结。' in html
    assert "家庭处于防返贫监测中" in html  # the last assessment's reasons still explain the amount


def test_pausing_suspends_the_line_until_resumed(client, assessed, li):
    consent_pause(consent=assessed, actor=f"farmer:{li.pk}")

    html = get(client, "/m/").content.decode()

    assert "您暂停了授权，额度暂时不能用。恢复授权后就能继续用。" in html
    assert '<li class="info" data-key="consent_paused">您暂停了授权，额度暂时不能用。' in html


def test_an_ineligible_farmer_is_told_why_in_plain_words(client, county, li):
    grant(li, county["partner"], CONSENTABLE)
    court = {"court": "兰考县人民法院", "case_no": "A1", "listed_on": "2024-01-01"}
    add_record(li, "dishonest_debtor", "A1", court, as_of=TODAY())
    credit_assessment_run(business_date=TODAY())
    log_in(client, li)

    html = get(client, "/m/").content.decode()

    assert 'data-state="ineligible"' in html
    assert "暂时不能给您额度：在法院的失信被执行人名单上。" in html


def test_a_new_consent_text_asks_for_re_consent(client, assessed):
    consent_text_publish(purpose_code="credit", text_zh="新版授权书", text_en="New consent text")

    html = get(client, "/m/").content.decode()

    assert '<li class="warn" data-key="consent_reconsent">授权书有更新或已到期，请重新授权。' in html
    assert "授权书内容有更新。请阅读后重新授权，额度才能继续用。" in html
    assert '<a class="btn huge" href="/m/consent/">授权</a>' in html
    assert '<a class="link" href="/m/consent/">查看授权</a>' in html


def test_an_expired_line_says_so_and_when_it_comes_back(client, assessed, li):
    yesterday = TODAY() - dt.timedelta(days=1)
    CreditLine.objects.filter(farmer=li).update(status="expired", valid_until=yesterday)

    html = get(client, "/m/").content.decode()
    english = get(client, "/m/", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert 'data-state="expired"' in html
    assert f"您的额度已于 {day_text(yesterday)} 到期。今晚会为您重新计算额度。" in html
    assert "Your credit line expired on " in english and ". It will be worked out again tonight." in english
    assert f'<li class="warn" data-key="line_expired">您的额度已于 {day_text(yesterday)} 到期。' in html


def test_messages_say_when_the_line_changed_and_when_it_expires(client, county, li):
    today = TODAY()
    for days_ago, amount in ((3, "9000.00"), (2, "9000.00"), (1, "12000.00"), (0, "12000.00")):
        assessment = CreditAssessment.objects.create(
            business_date=today - dt.timedelta(days=days_ago),
            farmer=li,
            eligible=True,
            grade="C",
            line_amount=Decimal(amount),
            features={},
            scorecard_version=1,
            policy_version=1,
        )
    grant(li, county["partner"], CONSENTABLE)
    CreditLine.objects.create(
        farmer=li,
        amount=Decimal("12000.00"),
        grade="C",
        annual_rate=Decimal("0.08"),
        valid_until=today + dt.timedelta(days=20),
        assessment=assessment,
        business_date=today,
    )
    log_in(client, li)

    with translation.override("zh-hans"):
        notices = [(notice.key, notice.level, notice.text, notice.on) for notice in selectors.farmer_messages(li)]

    assert notices == [
        ("line_expiring", "warn", f"您的额度将于 {day_text(today + dt.timedelta(days=20))} 到期。", today),
        ("line_changed", "info", "您的额度从 9,000 元调整为 12,000 元。", today - dt.timedelta(days=1)),
    ]
    assert get(client, "/m/").status_code == 200


def test_other_apps_add_their_messages_to_the_list(county, li, monkeypatch):
    def loan_messages(*, farmer):
        return [selectors.FarmerMessage("payment_overdue", "alert", f"{farmer.name}：第 2 期已逾期", TODAY())]

    monkeypatch.setattr("tests.counties.mobile.test_home.loan_messages_for_test", loan_messages, raising=False)
    monkeypatch.setattr(
        selectors,
        "MESSAGE_SOURCES",
        [*selectors.MESSAGE_SOURCES, "tests.counties.mobile.test_home.loan_messages_for_test"],
    )
    consent = grant(li, county["partner"], CONSENTABLE)
    consent_pause(consent=consent, actor="farmer")

    assert [(m.key, m.level) for m in selectors.farmer_messages(li)] == [
        ("payment_overdue", "alert"),
        ("consent_paused", "info"),
    ]


def test_an_active_line_has_the_borrow_and_my_loans_buttons(client, assessed, li):
    active = get(client, "/m/").content.decode()
    consent_revoke(consent=assessed, actor="farmer")
    suspended = get(client, "/m/").content.decode()

    assert '<a class="btn huge" href="/m/borrow/">借款</a>' in active
    assert '<a class="btn secondary" href="/m/loans/">我的借款</a>' in active
    assert "/m/borrow/" not in suspended  # nothing to borrow from a frozen line
    assert '<a class="btn secondary" href="/m/loans/">我的借款</a>' in suspended


def test_success_messages_after_consent_show_on_home(client, county, li):
    log_in(client, li)

    response = post(client, "/m/consent/grant/", {"categories": ["land_contract"]}, follow=True)

    assert errors(response) == ["授权成功。额度将在今晚计算，明天来看。"]
