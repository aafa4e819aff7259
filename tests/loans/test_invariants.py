"""Property-based: any sequence of drawdowns, repayments, prepayments, payoffs and nightly
closes keeps the ledger's invariants — every journal balances; each loan's outstanding
principal, interest and penalty equal its ledger balances; repayments equal what was
allocated; the line's outstanding principal equals the sum over its open loans."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loans.ledger import loan_ledger_balances, unbalanced_entries
from loans.models import Account, CreditLine, Installment, Loan, Repayment
from loans.services import LoanRefused, amount_due, loan_drawdown, loan_payoff, loan_prepay, loan_repay, payoff_quote

D = Decimal
START = dt.date(2026, 1, 31)
METHODS = ["equal_installment", "equal_principal", "interest_only", "bullet"]

draw = st.tuples(st.just("draw"), st.integers(1000, 20000), st.sampled_from([3, 6, 12]), st.sampled_from(METHODS))
repay = st.tuples(st.just("repay"), st.floats(0.05, 1.0))
prepay = st.tuples(st.just("prepay"), st.floats(0.05, 0.95), st.sampled_from(["shorter_term", "smaller_installment"]))
payoff = st.tuples(st.just("payoff"))
advance = st.tuples(st.just("advance"), st.integers(1, 45))
operations = st.lists(st.one_of(draw, repay, prepay, payoff, advance), min_size=3, max_size=14)


def close(day: dt.date) -> None:
    from loans.close import loan_close_run

    loan_close_run(business_date=day)


def check_invariants(farmer) -> None:
    assert unbalanced_entries() == []
    loans = list(Loan.objects.filter(farmer=farmer))
    balances = loan_ledger_balances(loan_ids=[loan.pk for loan in loans])
    for loan in loans:
        ledger = balances.get(loan.pk, {})
        assert ledger.get(Account.LOANS_RECEIVABLE, D("0")) == loan.outstanding_principal
        assert ledger.get(Account.INTEREST_RECEIVABLE, D("0")) == loan.interest_due
        assert ledger.get(Account.PENALTY_RECEIVABLE, D("0")) == loan.penalty_due
        assert ledger.get(Account.SUBSIDY_RECEIVABLE, D("0")) == loan.subsidy_due
        live = loan.installments.exclude(status=Installment.Status.SUPERSEDED)
        assert sum((i.principal for i in live), D("0")) == loan.principal
        assert sum((i.principal - i.principal_paid for i in live), D("0")) == loan.outstanding_principal
        repaid = Repayment.objects.filter(loan=loan).aggregate(
            amount=Sum("amount"), penalty=Sum("to_penalty"), interest=Sum("to_interest"), principal=Sum("to_principal")
        )
        if repaid["amount"] is not None:
            assert repaid["amount"] == repaid["penalty"] + repaid["interest"] + repaid["principal"]
            assert repaid["principal"] == loan.principal - loan.outstanding_principal
        if loan.status == Loan.Status.CLOSED:
            assert (loan.outstanding_principal, loan.interest_due, loan.penalty_due) == (D("0"), D("0"), D("0"))
    line = CreditLine.objects.get(farmer=farmer)
    open_principal = sum((loan.outstanding_principal for loan in loans if loan.status == Loan.Status.ACTIVE), D("0"))
    assert line.outstanding_principal == open_principal


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(steps=operations)
def test_any_sequence_keeps_the_ledger_invariants(lending, steps):
    farmer = lending.borrower(line="60000.00", rate="0.06")
    day = START
    for step in steps:
        open_loan = Loan.objects.filter(farmer=farmer, status=Loan.Status.ACTIVE).order_by("id").first()
        try:
            if step[0] == "draw":
                loan_drawdown(farmer=farmer, amount=D(step[1]), term_months=step[2], method=step[3], on=day)
            elif step[0] == "repay" and open_loan:
                due = payoff_quote(loan=open_loan, on=day).due.total
                if due:
                    part = max(D("0.01"), (due * D(str(step[1]))).quantize(D("0.01")))
                    loan_repay(loan=open_loan, amount=min(part, due), on=day)
            elif step[0] == "prepay" and open_loan:
                ahead = payoff_quote(loan=open_loan, on=day).principal_ahead
                part = (ahead * D(str(step[1]))).quantize(D("0.01"))
                if D("0.01") <= part < ahead:
                    loan_prepay(loan=open_loan, principal=part, mode=step[2], on=day)
            elif step[0] == "payoff" and open_loan:
                loan_payoff(loan=open_loan, amount=payoff_quote(loan=open_loan, on=day).total, on=day)
            elif step[0] == "advance":
                for _ in range(step[1]):
                    close(day)
                    day += dt.timedelta(days=1)
        except LoanRefused as refusal:
            # Only the rules' own refusals are acceptable here.
            assert refusal.code in {
                "amount_exceeds_available",
                "overdue",
                "amount_due_first",
                "line_not_active",
                "nothing_due",
            }, refusal.code
        check_invariants(farmer)
    for loan in Loan.objects.filter(farmer=farmer, status=Loan.Status.ACTIVE):
        assert amount_due(loan=loan).total >= 0
