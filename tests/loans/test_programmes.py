"""County programmes with worked examples: the interest subsidy (贴息) on a real schedule and its
monthly report, the county paying what it owes; the risk compensation fund (风险补偿基金)
bearing its share of a written-off loss; and every refusal writing nothing.

Subsidy example: 10,000.00 yuan, 12 months, 等额本息, 4.35 % a year, drawn 2026-01-15, 50 %
subsidised. r = 0.0435 / 12 = 0.003625; payment 10,000 × r(1+r)^12 / ((1+r)^12 − 1) = 853.10;
interest of period 1 = 10,000 × r = 36.25, the county's half 18.125 → 18.13, the farmer's 18.12.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from loans.close import loan_close_run
from loans.ledger import loan_ledger_balances, unbalanced_entries
from loans.models import (
    Account,
    CreditLine,
    CreditOutcome,
    FundMovement,
    InterestSubsidyProgramme,
    JournalEntry,
    JournalLine,
    Loan,
    LoanSettings,
    OutboxMessage,
    RiskCompensationFund,
)
from loans.programmes import (
    ProgrammeRefused,
    disaster_pause_create,
    fund_deposit,
    fund_share_set,
    fund_statement,
    loan_write_off,
    subsidy_monthly_report,
    subsidy_programme_create,
    subsidy_receive,
)
from loans.services import loan_drawdown

D = Decimal
START = dt.date(2026, 1, 15)


def programme(**overrides) -> InterestSubsidyProgramme:
    params = {
        "name": "2026 年春耕贴息",
        "share": "0.5",
        "eligibility": {},
        "starts_on": dt.date(2026, 1, 1),
        "ends_on": dt.date(2026, 12, 31),
        "actor": "official-zhao",
    }
    return subsidy_programme_create(**{**params, **overrides})


# --- Interest subsidy ------------------------------------------------------------------------------


def test_a_half_subsidy_on_an_equal_installment_loan_to_the_fen(lending):
    programme()
    farmer = lending.borrower(rate="0.0435")
    loan = loan_drawdown(farmer=farmer, amount="10000", term_months=12, method="equal_installment", on=START)

    assert loan.subsidy_share == D("0.5000")
    rows = list(loan.installments.order_by("number").values_list("interest", "subsidy"))
    assert rows == [
        (D("36.25"), D("18.13")),
        (D("33.29"), D("16.65")),  # 33.29 × 0.5 = 16.645 → 16.65 (half up)
        (D("30.32"), D("15.16")),
        (D("27.33"), D("13.67")),
        (D("24.34"), D("12.17")),
        (D("21.34"), D("10.67")),
        (D("18.32"), D("9.16")),
        (D("15.30"), D("7.65")),
        (D("12.26"), D("6.13")),
        (D("9.21"), D("4.61")),
        (D("6.15"), D("3.08")),
        (D("3.08"), D("1.54")),
    ]
    assert sum(interest for interest, _ in rows) == D("237.19")
    assert sum(subsidy for _, subsidy in rows) == D("118.62")
    # What the farmer is asked to pay in month 1: 853.10 − 18.13.
    loan_close_run(business_date=dt.date(2026, 2, 15))
    message = OutboxMessage.objects.get(loan=loan, topic="repayment.debit_requested")
    assert message.payload["amount"] == "834.97"


def test_the_monthly_report_shows_accrued_received_and_outstanding_subsidy(lending):
    programme()
    for _ in range(2):
        loan_drawdown(farmer=lending.borrower(), amount="10000", term_months=12, method="equal_installment", on=START)
    loan_close_run(business_date=dt.date(2026, 4, 15))  # three installments each have fallen due

    subsidy_receive(amount="50.00", on=dt.date(2026, 3, 20), actor="official-zhao")
    with pytest.raises(ProgrammeRefused) as refusal:  # only 2 × (18.13 + 16.65) − 50 = 19.56 owed by 03-20
        subsidy_receive(amount="19.57", on=dt.date(2026, 3, 20), actor="official-zhao")
    assert refusal.value.code == "exceeds_outstanding"

    report = subsidy_monthly_report(year=2026)

    assert len(report) == 12
    assert report[:5] == [
        {"month": 1, "accrued": D("0.00"), "received": D("0.00"), "outstanding": D("0.00"), "loans": 0},
        {"month": 2, "accrued": D("36.26"), "received": D("0.00"), "outstanding": D("36.26"), "loans": 2},
        {"month": 3, "accrued": D("33.30"), "received": D("50.00"), "outstanding": D("19.56"), "loans": 2},
        {"month": 4, "accrued": D("30.32"), "received": D("0.00"), "outstanding": D("49.88"), "loans": 2},
        {"month": 5, "accrued": D("0.00"), "received": D("0.00"), "outstanding": D("49.88"), "loans": 0},
    ]
    assert report[11]["outstanding"] == D("49.88")
    entry = JournalEntry.objects.get(kind=JournalEntry.Kind.SUBSIDY_RECEIVED)
    assert entry.loan_id is None
    assert list(entry.lines.order_by("id").values_list("account", "debit", "credit", "loan_id")) == [
        (Account.PARTNER_SETTLEMENT, D("50.00"), D("0.00"), None),
        (Account.SUBSIDY_RECEIVABLE, D("0.00"), D("50.00"), None),
    ]
    assert unbalanced_entries() == []
    assert [row["loans"] for row in subsidy_monthly_report(year=2025)] == [0] * 12


def test_only_eligible_farmers_get_the_subsidy(lending):
    programme(name="脱贫户贴息", share="1", eligibility={"poverty_monitored": 1})
    monitored = lending.borrower(features={"poverty_monitored": 1.0})
    other = lending.borrower(features={"poverty_monitored": 0.0})

    eligible = loan_drawdown(farmer=monitored, amount="3000", term_months=3, method="bullet", on=START)
    not_eligible = loan_drawdown(farmer=other, amount="3000", term_months=3, method="bullet", on=START)

    assert (eligible.subsidy_share, not_eligible.subsidy_share) == (D("1.0000"), D("0"))
    # Bullet: 3,000 × 0.003625 × 3 = 32.625 → 32.63, all of it the county's.
    assert list(eligible.installments.values_list("interest", "subsidy")) == [(D("32.63"), D("32.63"))]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"share": "0"}, "invalid_share"),
        ({"share": "1.01"}, "invalid_share"),
        ({"share": "-0.5"}, "invalid_share"),
        ({"share": "0.12345"}, "invalid_share"),
        ({"share": "half"}, "invalid_share"),
        ({"starts_on": dt.date(2026, 6, 1), "ends_on": dt.date(2026, 5, 31)}, "invalid_dates"),
        ({"eligibility": {"shoe_size": 42}}, "invalid_eligibility"),
        ({"eligibility": {"poverty_monitored": "yes"}}, "invalid_eligibility"),
        ({"name": " "}, "name_required"),
        ({"actor": ""}, "actor_required"),
    ],
)
def test_a_bad_programme_is_refused(lending, overrides, code):
    with pytest.raises(ProgrammeRefused) as refusal:
        programme(**overrides)
    assert refusal.value.code == code
    assert not InterestSubsidyProgramme.objects.exists()


def test_a_programme_is_recorded_with_who_created_it(lending):
    created = programme(share="0.35", eligibility={"poverty_monitored": 1})
    assert (created.share, created.eligibility, created.created_by) == (
        D("0.35"),
        {"poverty_monitored": 1},
        "official-zhao",
    )


# --- Risk compensation fund ------------------------------------------------------------------------


def loss_loan(lending, *, amount: str = "8000") -> Loan:
    """A 3-month bullet loan four days past its due date with the county's bands set so that
    four days is 损失: 3 months' interest 8,000 × 0.003625 × 3 = 87.00; penalty
    8,000 × 0.06525 / 360 = 1.45 a day, 5.80 for four days."""
    LoanSettings.objects.filter(pk=1).update(special_mention_from=1, substandard_from=2, doubtful_from=3, loss_from=4)
    loan = loan_drawdown(farmer=lending.borrower(), amount=amount, term_months=3, method="bullet", on=START)
    loan_close_run(business_date=loan.maturity_date + dt.timedelta(days=4))
    loan.refresh_from_db()
    assert (loan.classification, loan.outstanding_principal, loan.interest_due, loan.penalty_due) == (
        "loss",
        D(amount),
        D("87.00"),
        D("5.80"),
    )
    return loan


def test_writing_off_a_loss_loan_claims_the_funds_share(lending):
    fund_share_set(share="0.4", actor="official-zhao")
    fund_deposit(amount="100000", on=START, actor="official-zhao")
    loan = loss_loan(lending)
    day = loan.maturity_date + dt.timedelta(days=5)

    claim = loan_write_off(loan=loan, on=day, actor="official-qian")

    assert (claim.kind, claim.amount, claim.balance_after, claim.loan_id, claim.actor) == (
        "claim",
        D("3200.00"),
        D("96800.00"),
        loan.pk,
        "official-qian",
    )
    assert RiskCompensationFund.objects.get(pk=1).balance == D("96800.00")
    entry = JournalEntry.objects.get(loan=loan, kind=JournalEntry.Kind.WRITE_OFF)
    assert list(entry.lines.order_by("id").values_list("account", "debit", "credit")) == [
        (Account.COMPENSATION_RECEIVABLE, D("3200.00"), D("0.00")),
        (Account.WRITE_OFF_EXPENSE, D("4892.80"), D("0.00")),  # 4,800 + 87.00 + 5.80
        (Account.LOANS_RECEIVABLE, D("0.00"), D("8000.00")),
        (Account.INTEREST_RECEIVABLE, D("0.00"), D("87.00")),
        (Account.PENALTY_RECEIVABLE, D("0.00"), D("5.80")),
    ]
    assert unbalanced_entries() == []
    loan.refresh_from_db()
    assert (loan.status, loan.closed_on, loan.outstanding_principal, loan.interest_due, loan.penalty_due) == (
        "written_off",
        day,
        D("0.00"),
        D("0.00"),
        D("0.00"),
    )
    books = loan_ledger_balances(loan_ids=[loan.pk])[loan.pk]
    assert (books[Account.LOANS_RECEIVABLE], books[Account.INTEREST_RECEIVABLE], books[Account.PENALTY_RECEIVABLE]) == (
        D("0.00"),
        D("0.00"),
        D("0.00"),
    )
    assert CreditLine.objects.get(pk=loan.line_id).outstanding_principal == D("0.00")
    outcome = CreditOutcome.objects.get(farmer=loan.farmer)
    assert (outcome.bad, outcome.principal, outcome.closed_on, outcome.max_days_past_due) == (
        True,
        D("8000.00"),
        day,
        4,
    )
    assert OutboxMessage.objects.get(loan=loan, topic="loan.written_off").payload["compensation"] == "3200.00"
    statement = fund_statement()
    assert (statement["share"], statement["balance"], statement["deposits"], statement["claims"]) == (
        D("0.4000"),
        D("96800.00"),
        D("100000.00"),
        D("3200.00"),
    )
    assert [(m["kind"], m["amount"], m["balance_after"]) for m in statement["movements"]] == [
        ("claim", D("3200.00"), D("96800.00")),
        ("deposit", D("100000.00"), D("100000.00")),
    ]
    # A written-off loan is no longer closed nightly, and cannot be written off twice.
    before = JournalLine.objects.count()
    loan_close_run(business_date=day + dt.timedelta(days=3))
    assert JournalLine.objects.count() == before
    with pytest.raises(ProgrammeRefused) as refusal:
        loan_write_off(loan=loan, on=day, actor="official-qian")
    assert refusal.value.code == "loan_not_active"


def test_a_loan_not_classified_loss_cannot_be_written_off(lending):
    fund_deposit(amount="100000", on=START, actor="official-zhao")
    loan = loan_drawdown(farmer=lending.borrower(), amount="8000", term_months=3, method="bullet", on=START)
    loan_close_run(business_date=loan.maturity_date + dt.timedelta(days=3))  # default bands: 关注
    before = (JournalLine.objects.count(), FundMovement.objects.count())

    with pytest.raises(ProgrammeRefused) as refusal:
        loan_write_off(loan=loan, on=loan.maturity_date + dt.timedelta(days=4), actor="official-qian")

    assert refusal.value.code == "not_loss"
    assert "关注" in str(refusal.value.messages[0])
    assert (JournalLine.objects.count(), FundMovement.objects.count()) == before
    assert Loan.objects.get(pk=loan.pk).status == "active"


def test_a_write_off_the_fund_cannot_cover_is_refused(lending):
    fund_share_set(share="0.4", actor="official-zhao")
    fund_deposit(amount="3199.99", on=START, actor="official-zhao")
    loan = loss_loan(lending)
    before = (JournalLine.objects.count(), FundMovement.objects.count(), CreditOutcome.objects.count())

    with pytest.raises(ProgrammeRefused) as refusal:
        loan_write_off(loan=loan, on=loan.maturity_date + dt.timedelta(days=5), actor="official-qian")

    assert refusal.value.code == "fund_insufficient"
    assert "3,199.99" in str(refusal.value.messages[0]) and "3,200.00" in str(refusal.value.messages[0])
    assert (JournalLine.objects.count(), FundMovement.objects.count(), CreditOutcome.objects.count()) == before
    assert RiskCompensationFund.objects.get(pk=1).balance == D("3199.99")
    assert Loan.objects.get(pk=loan.pk).status == "active"


@pytest.mark.parametrize("share", ["0", "1.5", "-0.1", "0.00001", "x"])
def test_a_bad_fund_share_is_refused(lending, share):
    with pytest.raises(ProgrammeRefused) as refusal:
        fund_share_set(share=share, actor="official-zhao")
    assert refusal.value.code == "invalid_share"
    assert RiskCompensationFund.objects.get(pk=1).share == D("0.5000")


@pytest.mark.parametrize("amount", ["0", "-5", "1.001", "abc"])
def test_a_bad_deposit_is_refused(lending, amount):
    with pytest.raises(ProgrammeRefused) as refusal:
        fund_deposit(amount=amount, on=START, actor="official-zhao")
    assert refusal.value.code == "invalid_amount"
    assert not FundMovement.objects.exists()


# --- Disaster pause: validation (its effect on the close is in test_close) -------------------------


def test_a_pause_needs_townships_a_reason_and_ordered_dates(lending):
    from counties.models import Township

    township = Township.objects.create(code="410225102", name="东坝头乡")
    ok = {
        "township_ids": [township.pk],
        "starts_on": dt.date(2026, 7, 1),
        "ends_on": dt.date(2026, 7, 31),
        "reason": "洪水",
        "actor": "official-li",
    }
    for overrides, code in [
        ({"township_ids": []}, "invalid_townships"),
        ({"township_ids": [township.pk + 999]}, "invalid_townships"),
        ({"reason": ""}, "reason_required"),
        ({"ends_on": dt.date(2026, 6, 30)}, "invalid_dates"),
        ({"actor": " "}, "actor_required"),
    ]:
        with pytest.raises(ProgrammeRefused) as refusal:
            disaster_pause_create(**{**ok, **overrides})
        assert refusal.value.code == code
    pause = disaster_pause_create(**ok)
    assert (pause.created_by, pause.starts_on, pause.ends_on, pause.lifted_on) == (
        "official-li",
        dt.date(2026, 7, 1),
        dt.date(2026, 7, 31),
        None,
    )
