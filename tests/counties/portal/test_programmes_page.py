"""County programmes in the portal: interest subsidy programmes and their monthly report, the
risk compensation fund (deposit, write-off of a 损失 loan from the loans page), disaster pauses
(create, refused for a closed day, lift) — and who may do what."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from counties.models import Official
from loans.ledger import journal_post
from loans.models import (
    Account,
    DisasterPause,
    FundMovement,
    InterestSubsidyProgramme,
    JournalEntry,
    Loan,
    RiskCompensationFund,
)
from loans.programmes import subsidy_monthly_report, subsidy_outstanding

R = Official.Role
HOST = "lankao.localhost"


def _follow(portal, path: str, data: dict):
    return portal.client.post(path, data, HTTP_HOST=HOST, follow=True)


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_a_subsidy_programme_is_created_and_the_monthly_report_shown(portal, book):
    portal.login(R.RISK_OFFICER, username="risk-a")
    response = _follow(portal, "/portal/programmes/", {
        "action": "subsidy_create", "subsidy-name": "脱贫户贴息", "subsidy-share": "0.5", "subsidy-starts_on": "2026-01-01",
        "subsidy-ends_on": "2026-12-31", "subsidy-feature": "poverty_monitored", "subsidy-value": "1",
    })
    programme = InterestSubsidyProgramme.objects.get()
    assert (programme.name, programme.share, programme.eligibility, programme.created_by) == (
        "脱贫户贴息", Decimal("0.5000"), {"poverty_monitored": 1}, "risk-a"
    )
    assert any("已创建贴息项目" in message for message in _messages(response))

    # Subsidy falling due in two months, then the county paying part of it through the page.
    loan = book.loans["a1"]
    for day, amount in ((dt.date(2026, 3, 20), "12.34"), (dt.date(2026, 4, 20), "20.00")):
        journal_post(kind=JournalEntry.Kind.INTEREST_DUE, business_date=day, loan=loan,
                     debits={Account.SUBSIDY_RECEIVABLE: Decimal(amount)}, credits={Account.INTEREST_INCOME: Decimal(amount)})
    paid = _follow(portal, "/portal/programmes/?year=2026", {"action": "subsidy_receive", "receive-amount": "30.00", "receive-on": "2026-04-30"})
    too_much = portal.post("/portal/programmes/", {"action": "subsidy_receive", "receive-amount": "5.00", "receive-on": "2026-04-30"})

    assert any("30.00" in message for message in _messages(paid))
    assert "超过应收贴息余额" in too_much.content.decode() and too_much.status_code == 200
    page = portal.get("/portal/programmes/", year="2026")
    assert page.context["report"] == subsidy_monthly_report(year=2026)
    april = page.context["report"][3]
    assert (april["accrued"], april["received"], april["outstanding"]) == (Decimal("20.00"), Decimal("30.00"), Decimal("2.34"))
    assert page.context["subsidy_outstanding"] == subsidy_outstanding() == Decimal("2.34")
    assert '<tr data-month="4"><td>2026-04</td>' in page.content.decode()


def test_a_deposit_then_a_write_off_from_the_loans_page(portal, book):
    portal.login(R.COUNTY_ADMIN, username="admin-a")
    _follow(portal, "/portal/programmes/", {"action": "fund_deposit", "deposit-amount": "10000.00", "deposit-on": str(book.today)})
    loss = book.loans["c1"]  # 损失, 5,000.00 outstanding; the fund bears half

    loans_page = portal.get("/portal/loans/", classification="loss").content.decode()
    assert f'action="/portal/programmes/loans/{loss.pk}/write-off"' in loans_page
    normal_form = f'action="/portal/programmes/loans/{book.loans["a1"].pk}/write-off"'
    assert normal_form not in portal.get("/portal/loans/").content.decode()  # only 损失 loans get the button

    response = _follow(portal, f"/portal/programmes/loans/{loss.pk}/write-off", {"next": "/portal/loans/?classification=loss"})
    loss.refresh_from_db()
    fund = RiskCompensationFund.objects.get()
    assert response.redirect_chain[-1][0] == "/portal/loans/?classification=loss"
    assert loss.status == Loan.Status.WRITTEN_OFF
    assert fund.balance == Decimal("7500.00")
    assert list(FundMovement.objects.order_by("id").values_list("kind", "amount", "actor")) == [
        ("deposit", Decimal("10000.00"), "admin-a"), ("claim", Decimal("2500.00"), "admin-a"),
    ]
    assert any("2,500.00" in message for message in _messages(response))

    # A loan not classified 损失 is refused, with the reason.
    refused = _follow(portal, f"/portal/programmes/loans/{book.loans['a1'].pk}/write-off", {})
    assert any("只能核销五级分类为损失类的借款" in message for message in _messages(refused))
    assert Loan.objects.get(pk=book.loans["a1"].pk).status == Loan.Status.ACTIVE

    page = portal.get("/portal/programmes/")
    assert (page.context["fund"]["balance"], page.context["fund"]["claims"], page.context["fund"]["deposits"]) == (
        Decimal("7500.00"), Decimal("2500.00"), Decimal("10000.00")
    )
    assert [loan.pk for loan in page.context["loss_loans"]] == []


def test_a_disaster_pause_is_created_for_chosen_townships_and_lifted(portal, book):
    portal.login(R.RISK_OFFICER, username="risk-a")
    east, west = portal.townships["east"], portal.townships["west"]
    first_open = book.today + dt.timedelta(days=1)  # the book's loans are closed up to today
    closed = portal.post("/portal/programmes/", {
        "action": "pause_create", "pause-townships": [east.pk], "pause-starts_on": str(book.today),
        "pause-ends_on": str(book.today + dt.timedelta(days=5)), "pause-reason": "暴雨",
    })
    assert "日终已完成" in closed.content.decode() and not DisasterPause.objects.exists()

    _follow(portal, "/portal/programmes/", {
        "action": "pause_create", "pause-townships": [east.pk, west.pk], "pause-starts_on": str(first_open),
        "pause-ends_on": str(first_open + dt.timedelta(days=10)), "pause-reason": "7 月暴雨洪涝",
    })
    pause = DisasterPause.objects.get()
    assert (sorted(t.code for t in pause.townships.all()), pause.reason, pause.created_by) == (
        ["410225801", "410225802"], "7 月暴雨洪涝", "risk-a"
    )
    lift_on = first_open + dt.timedelta(days=2)
    lifted = _follow(portal, f"/portal/programmes/pauses/{pause.pk}/lift", {"on": str(lift_on)})
    pause.refresh_from_db()
    assert (pause.lifted_on, pause.lifted_by) == (lift_on, "risk-a")
    assert any("已解除暂停" in message for message in _messages(lifted))
    html = portal.get("/portal/programmes/").content.decode()
    assert "东坝头镇、西坝头镇" in html and "由 risk-a 解除" in html


def test_the_auditor_reads_the_programmes_and_changes_nothing(portal, book):
    pause = DisasterPause.objects.create(starts_on=book.today + dt.timedelta(days=1), ends_on=book.today + dt.timedelta(days=9),
                                         reason="旱灾", created_by="x")
    portal.login(R.AUDITOR)
    page = portal.get("/portal/programmes/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "data-deposit-form" not in html and "data-write-off" not in html and "旱灾" in html
    posts = {
        "/portal/programmes/": {"action": "fund_deposit", "deposit-amount": "100.00", "deposit-on": str(book.today)},
        f"/portal/programmes/loans/{book.loans['c1'].pk}/write-off": {},
        f"/portal/programmes/pauses/{pause.pk}/lift": {"on": str(book.today + dt.timedelta(days=2))},
    }
    assert {path: portal.post(path, data).status_code for path, data in posts.items()} == dict.fromkeys(posts, 403)
    assert not FundMovement.objects.exists()
    assert Loan.objects.get(pk=book.loans["c1"].pk).status == Loan.Status.ACTIVE
    assert DisasterPause.objects.get().lifted_on is None
    assert "data-write-off" not in portal.get("/portal/loans/").content.decode()


@pytest.mark.parametrize("role", [R.DATA_OFFICER, R.TOWNSHIP_OFFICER])
def test_other_roles_cannot_open_or_use_the_programmes(portal, book, role):
    portal.login(role)
    assert portal.get("/portal/programmes/").status_code == 403
    assert portal.post("/portal/programmes/", {"action": "fund_deposit", "deposit-amount": "1.00", "deposit-on": str(book.today)}).status_code == 403
    assert portal.post(f"/portal/programmes/loans/{book.loans['c1'].pk}/write-off").status_code == 403
    assert not FundMovement.objects.exists()
