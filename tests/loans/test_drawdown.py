"""Drawdown: the instant decision, what one transaction writes, every refusal writing
nothing, and two concurrent drawdowns on two real connections never exceeding the line."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connections

from data_sharing.models import Consent
from data_sharing.services import consent_revoke
from loans.models import Account, CreditLine, Installment, InterestSubsidyProgramme, JournalLine, Loan, OutboxMessage
from loans.services import LoanRefused, drawdown_quote, loan_drawdown
from tests.conftest import in_county

D = Decimal


def written() -> tuple[int, int, int, int]:
    return Loan.objects.count(), Installment.objects.count(), JournalLine.objects.count(), OutboxMessage.objects.count()


def test_an_approved_drawdown_writes_loan_schedule_ledger_and_instruction_together(lending):
    farmer = lending.borrower(line="50000.00", rate="0.0435")
    day = dt.date(2026, 3, 31)

    loan = loan_drawdown(farmer=farmer, amount="12000", term_months=12, method="equal_principal", on=day)

    assert (loan.principal, loan.annual_rate, loan.penalty_rate, loan.term_months) == (
        D("12000.00"),
        D("0.0435"),
        D("0.06525"),
        12,
    )
    assert (loan.start_date, loan.maturity_date, loan.status, loan.disbursement) == (
        day,
        dt.date(2027, 3, 31),
        "active",
        "requested",
    )
    rows = list(loan.installments.order_by("number").values_list("number", "due_date", "principal", "interest"))
    # 12,000 / 12 = 1,000 a month; interest = remaining × 0.0435 / 12 = remaining × 0.003625.
    assert rows[:3] == [
        (1, dt.date(2026, 4, 30), D("1000.00"), D("43.50")),  # month-end clamp: 31 Mar → 30 Apr
        (2, dt.date(2026, 5, 31), D("1000.00"), D("39.88")),  # 11,000 × 0.003625 = 39.875 → 39.88
        (3, dt.date(2026, 6, 30), D("1000.00"), D("36.25")),
    ]
    assert rows[-1] == (12, dt.date(2027, 3, 31), D("1000.00"), D("3.63"))  # 1,000 × 0.003625 = 3.625
    line = CreditLine.objects.get(farmer=farmer)
    assert (line.outstanding_principal, line.available) == (D("12000.00"), D("38000.00"))
    assert list(JournalLine.objects.filter(loan=loan).order_by("id").values_list("account", "debit", "credit")) == [
        (Account.LOANS_RECEIVABLE, D("12000.00"), D("0.00")),
        (Account.PARTNER_SETTLEMENT, D("0.00"), D("12000.00")),
    ]
    message = OutboxMessage.objects.get(loan=loan)
    assert (message.topic, message.payload["amount"], message.payload["term_months"]) == (
        "drawdown.requested",
        "12000.00",
        12,
    )
    quote = drawdown_quote(line=line, amount="12000", term_months=12, method="equal_principal", on=day)
    assert [(p.due_date, p.principal, p.interest) for p in quote.periods] == [(r[1], r[2], r[3]) for r in rows]


@pytest.mark.parametrize(
    ("amount", "term", "method", "code"),
    [
        ("999.99", 12, "equal_installment", "amount_too_small"),
        ("50000.01", 12, "equal_installment", "amount_exceeds_available"),
        ("1000.001", 12, "equal_installment", "invalid_amount"),
        ("abc", 12, "equal_installment", "invalid_amount"),
        ("5000", 24, "equal_installment", "invalid_term"),
        ("5000", 12, "balloon", "invalid_method"),
    ],
)
def test_bad_requests_are_refused_with_a_code_and_write_nothing(lending, amount, term, method, code):
    farmer = lending.borrower(line="50000.00")
    before = written()
    with pytest.raises(LoanRefused) as refusal:
        loan_drawdown(farmer=farmer, amount=amount, term_months=term, method=method)
    assert refusal.value.code == code
    assert written() == before
    assert CreditLine.objects.get(farmer=farmer).outstanding_principal == D("0.00")


def test_the_available_amount_shrinks_with_each_drawdown(lending):
    farmer = lending.borrower(line="10000.00")
    loan_drawdown(farmer=farmer, amount="6000", term_months=6, method="bullet")
    with pytest.raises(LoanRefused) as refusal:
        loan_drawdown(farmer=farmer, amount="4000.01", term_months=6, method="bullet")
    assert refusal.value.code == "amount_exceeds_available"
    loan_drawdown(farmer=farmer, amount="4000", term_months=6, method="bullet")
    assert CreditLine.objects.get(farmer=farmer).available == D("0.00")


def test_no_line_a_suspended_line_an_expired_line_and_revoked_consent_are_refused(lending):
    nobody = lending.borrower()
    CreditLine.objects.filter(farmer=nobody).delete()
    suspended = lending.borrower()
    CreditLine.objects.filter(farmer=suspended).update(status="suspended", suspension="ineligible")
    expired = lending.borrower(valid_days=-1)
    revoked = lending.borrower()
    consent_revoke(consent=Consent.objects.get(farmer=revoked), actor="farmer")

    codes = {}
    for name, farmer in {"none": nobody, "suspended": suspended, "expired": expired, "revoked": revoked}.items():
        with pytest.raises(LoanRefused) as refusal:
            loan_drawdown(farmer=farmer, amount="1000", term_months=3, method="bullet")
        codes[name] = refusal.value.code
    # Revoking suspends the line at once (consent handlers), so the line check answers first.
    assert codes == {
        "none": "no_line",
        "suspended": "line_not_active",
        "expired": "line_not_active",
        "revoked": "line_not_active",
    }


def test_consent_checked_even_when_the_line_is_still_active(lending):
    farmer = lending.borrower()
    consent = Consent.objects.get(farmer=farmer)
    Consent.objects.filter(pk=consent.pk).update(status="paused")  # as if paused between two nightly runs
    with pytest.raises(LoanRefused) as refusal:
        loan_drawdown(farmer=farmer, amount="1000", term_months=3, method="bullet")
    assert refusal.value.code == "no_consent"


def test_an_overdue_loan_blocks_new_drawdowns(lending):
    farmer = lending.borrower()
    loan = loan_drawdown(farmer=farmer, amount="1000", term_months=3, method="bullet")
    Loan.objects.filter(pk=loan.pk).update(days_past_due=3)
    with pytest.raises(LoanRefused) as refusal:
        loan_drawdown(farmer=farmer, amount="1000", term_months=3, method="bullet")
    assert refusal.value.code == "overdue"


def test_interest_subsidy_is_fixed_at_drawdown_for_eligible_farmers(lending):
    day = lending.day
    InterestSubsidyProgramme.objects.create(
        name="脱贫户贴息",
        share=D("0.5"),
        eligibility={"poverty_monitored": 1},
        starts_on=day,
        ends_on=day,
        created_by="officer",
    )
    eligible = lending.borrower(features={"poverty_monitored": 1})
    other = lending.borrower(features={"poverty_monitored": 0})
    subsidised = loan_drawdown(farmer=eligible, amount="12000", term_months=12, method="equal_principal", on=day)
    plain = loan_drawdown(farmer=other, amount="12000", term_months=12, method="equal_principal", on=day)
    assert (subsidised.subsidy_share, plain.subsidy_share) == (D("0.5000"), D("0"))
    first = subsidised.installments.get(number=1)
    expected_interest = (D("12000") * D("0.0435") / 12).quantize(D("0.01"))  # 43.50
    assert (first.interest, first.subsidy, first.farmer_interest) == (expected_interest, D("21.75"), D("21.75"))
    assert plain.installments.get(number=1).subsidy == D("0.00")


def test_two_concurrent_drawdowns_never_exceed_the_available_amount(committed_lending):
    county, lending = committed_lending
    with in_county(county):
        farmer = lending.borrower(line="10000.00")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def draw() -> None:
        try:
            with in_county(county):
                barrier.wait(timeout=10)
                loan_drawdown(farmer=farmer, amount="7000", term_months=6, method="bullet")
                outcomes.append("approved")
        except LoanRefused as refusal:
            outcomes.append(refusal.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=draw) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["amount_exceeds_available", "approved"]
    with in_county(county):
        assert Loan.objects.filter(farmer=farmer).count() == 1
        assert CreditLine.objects.get(farmer=farmer).outstanding_principal == D("7000.00")
