"""Repayment, partial prepayment and payoff on worked examples, the allocation order, refusals
of overpayment, and the loan's balances against its ledger."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from loans.ledger import loan_ledger_balances, unbalanced_entries
from loans.models import Account, CreditLine, CreditOutcome, Installment, JournalLine, Loan, LoanSettings, Repayment
from loans.services import (
    LoanRefused,
    installments_fall_due,
    loan_drawdown,
    loan_payoff,
    loan_prepay,
    loan_repay,
    payoff_quote,
)

D = Decimal
START = dt.date(2026, 3, 31)


def ledger_matches(loan: Loan) -> None:
    """The loan row's balances equal its ledger balances, and every entry balances."""
    loan.refresh_from_db()
    balances = loan_ledger_balances(loan_ids=[loan.pk])[loan.pk]
    assert balances[Account.LOANS_RECEIVABLE] == loan.outstanding_principal
    assert balances[Account.INTEREST_RECEIVABLE] == loan.interest_due
    assert balances[Account.PENALTY_RECEIVABLE] == loan.penalty_due
    assert unbalanced_entries() == []
    live = loan.installments.exclude(status=Installment.Status.SUPERSEDED)
    assert sum(i.principal for i in live) == loan.principal
    assert sum(i.principal - i.principal_paid for i in live) == loan.outstanding_principal
    repaid = Repayment.objects.filter(loan=loan)
    assert sum(r.to_principal for r in repaid) == loan.principal - loan.outstanding_principal


@pytest.fixture
def loan(lending):
    farmer = lending.borrower(line="50000.00", rate="0.0435")
    # 12,000 equal principal: 1,000 a month plus remaining × 0.003625 (43.50, 39.88, 36.25, …).
    return loan_drawdown(farmer=farmer, amount="12000", term_months=12, method="equal_principal", on=START)


def test_paying_the_first_installment_on_its_due_date(loan):
    repayment = loan_repay(loan=loan, amount="1043.50", on=dt.date(2026, 4, 30))

    assert (repayment.to_penalty, repayment.to_interest, repayment.to_principal) == (
        D("0.00"),
        D("43.50"),
        D("1000.00"),
    )
    first = loan.installments.get(number=1)
    assert (first.status, first.paid_on, first.principal_paid, first.interest_paid) == (
        "paid",
        dt.date(2026, 4, 30),
        D("1000.00"),
        D("43.50"),
    )
    assert list(
        JournalLine.objects.filter(loan=loan, entry__kind__in=["interest_due", "repayment"])
        .order_by("id")
        .values_list("entry__kind", "account", "debit", "credit")
    ) == [
        ("interest_due", "interest_receivable", D("43.50"), D("0.00")),
        ("interest_due", "interest_income", D("0.00"), D("43.50")),
        ("repayment", "partner_settlement", D("1043.50"), D("0.00")),
        ("repayment", "interest_receivable", D("0.00"), D("43.50")),
        ("repayment", "loans_receivable", D("0.00"), D("1000.00")),
    ]
    assert CreditLine.objects.get(pk=loan.line_id).outstanding_principal == D("11000.00")
    ledger_matches(loan)


def test_overpayment_and_paying_when_nothing_is_due_are_refused(loan):
    with pytest.raises(LoanRefused) as early:
        loan_repay(loan=loan, amount="100", on=dt.date(2026, 4, 29))
    assert early.value.code == "nothing_due"
    with pytest.raises(LoanRefused) as over:
        loan_repay(loan=loan, amount="1043.51", on=dt.date(2026, 4, 30))
    assert over.value.code == "overpayment"
    assert Repayment.objects.filter(loan=loan).count() == 0
    ledger_matches(loan)


def test_a_partial_payment_is_allocated_interest_first_then_principal(loan):
    loan_repay(loan=loan, amount="500", on=dt.date(2026, 4, 30))
    first = loan.installments.get(number=1)
    assert (first.status, first.interest_paid, first.principal_paid) == ("due", D("43.50"), D("456.50"))
    ledger_matches(loan)


def test_the_allocation_order_is_configurable(loan):
    LoanSettings.objects.filter(pk=1).update(allocation_order=["principal", "interest", "penalty"])
    repayment = loan_repay(loan=loan, amount="1000", on=dt.date(2026, 4, 30))
    assert (repayment.to_principal, repayment.to_interest) == (D("1000.00"), D("0.00"))
    ledger_matches(loan)


def test_payoff_quote_and_payoff_with_interest_to_the_day(loan):
    loan_repay(loan=loan, amount="1043.50", on=dt.date(2026, 4, 30))
    day = dt.date(2026, 5, 15)
    quote = payoff_quote(loan=loan, on=day)
    # 11,000 × 0.0435 / 360 × 15 days = 19.9375 → 19.94
    assert (quote.principal_ahead, quote.days, quote.interest_to_day, quote.total) == (
        D("11000.00"),
        15,
        D("19.94"),
        D("11019.94"),
    )
    with pytest.raises(LoanRefused) as wrong:
        loan_payoff(loan=loan, amount="11019.95", on=day)
    assert wrong.value.code == "overpayment"

    loan_payoff(loan=loan, amount="11019.94", on=day)

    loan.refresh_from_db()
    assert (loan.status, loan.closed_on, loan.outstanding_principal) == ("closed", day, D("0.00"))
    assert loan.installments.filter(status="scheduled").count() == 0
    assert CreditOutcome.objects.filter(farmer_id=loan.farmer_id, bad=False, principal=D("12000.00")).count() == 1
    assert CreditLine.objects.get(pk=loan.line_id).available == D("50000.00")
    ledger_matches(loan)


def test_payoff_of_an_overdue_loan_pays_what_is_due_first(loan):
    day = dt.date(2026, 5, 10)  # installment 1 (1,043.50) unpaid since 30 April
    quote = payoff_quote(loan=loan, on=day)
    # 11,000 not yet due × 0.0435 / 360 × 10 days = 13.2916… → 13.29
    assert (quote.due.total, quote.principal_ahead, quote.interest_to_day) == (D("1043.50"), D("11000.00"), D("13.29"))
    loan_payoff(loan=loan, amount=quote.total, on=day)
    loan.refresh_from_db()
    assert loan.status == "closed"
    ledger_matches(loan)


def test_prepayment_shorter_term_keeps_the_installment(lending):
    farmer = lending.borrower(line="50000.00", rate="0.0435")
    loan = loan_drawdown(farmer=farmer, amount="12000", term_months=12, method="equal_installment", on=START)
    payment = loan.installments.get(number=1)
    level = payment.principal + payment.interest
    loan_repay(loan=loan, amount=level, on=dt.date(2026, 4, 30))

    repayment = loan_prepay(loan=loan, principal="5000", mode="shorter_term", on=dt.date(2026, 5, 15))

    loan.refresh_from_db()
    # Level payment 1,023.72 (12,000 at 4.35% over 12 months); after the first, 11,019.78 is left.
    # Interest to the day: 11,019.78 × 0.0435 / 360 × 15 = 19.973… → 19.97.
    assert (level, repayment.to_principal, repayment.to_interest) == (D("1023.72"), D("5000.00"), D("19.97"))
    remaining = list(
        loan.installments.filter(status="scheduled")
        .order_by("due_date")
        .values_list("due_date", "principal", "interest")
    )
    # 6,019.78 left at the same 1,023.72 a month: six periods instead of ten; the first period
    # runs 16 days from the prepayment: 6,019.78 × 0.0435 / 360 × 16 = 11.638… → 11.64.
    assert remaining == [
        (dt.date(2026, 5, 31), D("1012.08"), D("11.64")),
        (dt.date(2026, 6, 30), D("1005.57"), D("18.15")),
        (dt.date(2026, 7, 31), D("1009.21"), D("14.51")),
        (dt.date(2026, 8, 31), D("1012.87"), D("10.85")),
        (dt.date(2026, 9, 30), D("1016.54"), D("7.18")),
        (dt.date(2026, 10, 31), D("963.51"), D("3.49")),
    ]
    assert loan.maturity_date == dt.date(2026, 10, 31)
    ledger_matches(loan)


def test_prepayment_smaller_installment_keeps_the_term(lending):
    farmer = lending.borrower(line="50000.00", rate="0.0435")
    loan = loan_drawdown(farmer=farmer, amount="12000", term_months=12, method="equal_installment", on=START)
    loan_prepay(loan=loan, principal="6000", mode="smaller_installment", on=dt.date(2026, 4, 10))
    loan.refresh_from_db()
    remaining = list(loan.installments.filter(status="scheduled").order_by("due_date"))
    assert len(remaining) == 12
    assert (remaining[0].due_date, remaining[-1].due_date) == (dt.date(2026, 4, 30), dt.date(2027, 3, 31))
    assert loan.maturity_date == dt.date(2027, 3, 31)
    ledger_matches(loan)


def test_prepayment_is_refused_while_something_is_due_or_beyond_the_balance(loan):
    with pytest.raises(LoanRefused) as due:
        loan_prepay(loan=loan, principal="1000", mode="shorter_term", on=dt.date(2026, 5, 1))
    assert due.value.code == "amount_due_first"
    with pytest.raises(LoanRefused) as too_much:
        loan_prepay(loan=loan, principal="12000", mode="shorter_term", on=dt.date(2026, 4, 10))
    assert too_much.value.code == "use_payoff"
    with pytest.raises(LoanRefused) as mode:
        loan_prepay(loan=loan, principal="100", mode="faster", on=dt.date(2026, 4, 10))
    assert mode.value.code == "invalid_mode"
    ledger_matches(loan)


def test_falling_due_is_idempotent(loan):
    assert installments_fall_due(loan=loan, on=dt.date(2026, 5, 31)) == 2
    assert installments_fall_due(loan=loan, on=dt.date(2026, 5, 31)) == 0
    loan.refresh_from_db()
    assert loan.interest_due == D("83.38")  # 43.50 + 39.88
    ledger_matches(loan)
