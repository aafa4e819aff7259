"""Reads of the loan book for the portals and the API: a farmer's loans, a loan's schedule
with paid/due/overdue marks, and what falls due next."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet

from counties.models import Farmer
from loans.models import Installment, Loan

ZERO = Decimal("0.00")


def farmer_loans(*, farmer: Farmer) -> QuerySet[Loan]:
    """The farmer's loans, open ones first, newest first."""
    return Loan.objects.filter(farmer=farmer).order_by("status", "-start_date", "-id")


def farmer_loan(*, farmer: Farmer, loan_id: int) -> Loan | None:
    """One of the farmer's own loans, or None (callers answer 404: never another's loan)."""
    return Loan.objects.filter(farmer=farmer, pk=loan_id).first()


@dataclass(frozen=True)
class ScheduleRow:
    number: int
    due_date: dt.date
    principal: Decimal
    interest: Decimal  # what the farmer pays (after any county subsidy)
    subsidy: Decimal
    payment: Decimal
    paid: Decimal
    status: str
    status_label: str
    paid_on: dt.date | None


def loan_schedule_rows(*, loan: Loan, on: dt.date) -> list[ScheduleRow]:
    """The loan's live schedule (superseded periods left out); a scheduled period whose date has
    come is shown as due even before tonight's close marks it."""
    rows = []
    for installment in loan.installments.exclude(status=Installment.Status.SUPERSEDED).order_by("due_date", "number"):
        status = installment.status
        if status == Installment.Status.SCHEDULED and installment.due_date <= on:
            status = Installment.Status.DUE
        rows.append(
            ScheduleRow(
                number=installment.number,
                due_date=installment.due_date,
                principal=installment.principal,
                interest=installment.farmer_interest,
                subsidy=installment.subsidy,
                payment=installment.payment,
                paid=installment.principal_paid + installment.interest_paid,
                status=status,
                status_label=str(Installment.Status(status).label),
                paid_on=installment.paid_on,
            )
        )
    return rows


def next_installment(*, loan: Loan) -> Installment | None:
    """The earliest period not yet paid."""
    return (
        loan.installments.filter(
            status__in=(Installment.Status.SCHEDULED, Installment.Status.DUE, Installment.Status.OVERDUE)
        )
        .order_by("due_date", "id")
        .first()
    )


def farmer_loan_messages(*, farmer: Farmer, on: dt.date) -> list[dict]:
    """Messages for the farmer's home page: an overdue loan, a payment due within 7 days."""
    messages = []
    for loan in Loan.objects.filter(farmer=farmer, status=Loan.Status.ACTIVE):
        upcoming = next_installment(loan=loan)
        if loan.days_past_due or (upcoming and upcoming.status == Installment.Status.OVERDUE):
            messages.append({"kind": "overdue", "loan_id": loan.pk, "days": loan.days_past_due})
        elif upcoming and upcoming.due_date <= on + dt.timedelta(days=7):
            owed = upcoming.payment - upcoming.principal_paid - upcoming.interest_paid
            messages.append({"kind": "due", "loan_id": loan.pk, "due_date": upcoming.due_date, "amount": owed})
    return messages
