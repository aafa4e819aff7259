"""Demo loan history for `make demo`: some farmers with lines borrowed over the last months,
most paid on time, a few fell behind. It runs the real services day by day — drawdowns,
repayments on due dates and the nightly close — so every figure the portals show comes from
the same code a county runs."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from loans.close import loan_close_run
from loans.models import CreditLine, Installment, Loan
from loans.services import LoanRefused, amount_due, installments_fall_due, loan_drawdown, loan_repay

METHODS = ("equal_installment", "equal_principal", "interest_only", "bullet")
# The share of farmers who pay each installment on its due date; the rest fall behind.
ON_TIME = 0.9


def demo_loans_generate(*, count: int, until: dt.date, days_back: int = 120, seed: int = 0) -> dict[str, int]:
    """Draw ``count`` loans from active lines on dates over the ``days_back`` days before
    ``until``, pay due installments on time with probability ``ON_TIME`` per farmer, and close
    every day up to ``until``. Refuses to run twice (a county that has loans keeps them)."""
    if Loan.objects.exists():
        return {"loans": 0, "skipped": 1}
    rng = random.Random(seed)
    lines = list(
        CreditLine.objects.filter(status=CreditLine.Status.ACTIVE, valid_until__gte=until)
        .order_by("id")
        .values_list("farmer_id", "amount")
    )
    picked = rng.sample(lines, min(count, len(lines)))
    first = until - dt.timedelta(days=days_back)
    plan: dict[dt.date, list[tuple[int, Decimal]]] = {}
    for farmer_id, line_amount in picked:
        day = first + dt.timedelta(days=rng.randrange(days_back))
        plan.setdefault(day, []).append((farmer_id, line_amount))
    late = {farmer_id for farmer_id, _amount in picked if rng.random() > ON_TIME}
    drawn = refused = repaid = 0
    day = first
    while day <= until:
        for farmer_id, line_amount in plan.get(day, []):
            amount = max(Decimal("1000"), (line_amount * Decimal(rng.choice(("0.3", "0.5", "0.8", "1"))) // 100) * 100)
            try:
                loan_drawdown(
                    farmer=_farmer(farmer_id),
                    amount=min(amount, line_amount),
                    term_months=rng.choice((3, 6, 12)),
                    method=rng.choice(METHODS),
                    on=day,
                    channel="demo",
                )
                drawn += 1
            except LoanRefused:
                refused += 1
        due_today = (
            Installment.objects.filter(due_date=day, status=Installment.Status.SCHEDULED, loan__status="active")
            .exclude(loan__farmer_id__in=late)
            .values_list("loan_id", flat=True)
        )
        for loan in Loan.objects.filter(pk__in=list(due_today)):
            installments_fall_due(loan=loan, on=day)
            owed = amount_due(loan=loan).total
            if owed:
                loan_repay(loan=loan, amount=owed, on=day, channel="demo")
                repaid += 1
        loan_close_run(business_date=day)
        day += dt.timedelta(days=1)
    return {"loans": drawn, "refused": refused, "repayments": repaid, "late_farmers": len(late)}


def _farmer(farmer_id: int):
    from counties.models import Farmer

    return Farmer.objects.get(pk=farmer_id)
