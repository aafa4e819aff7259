"""Reads for the farmer portal's borrowing and repayment pages: what the farmer may borrow (terms,
methods in plain words, a sensible amount), a drawdown quote laid out for a phone, the farmer's
loans with their state in plain words, and a loan's schedule with paid/due/overdue marks.

Figures come from :mod:`loans.services` and :mod:`loans.selectors` (the same functions the loan
itself is made and repaid with), so what the farmer reads is what they get. Texts are chosen
for the current language here, so templates only lay them out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from django.utils import timezone
from django.utils.translation import gettext as _

from counties.mobile.selectors import _day, _pick, percent, yuan
from counties.models import Farmer
from data_sharing.pii import decrypt, mask_phone
from loans import selectors as loan_selectors
from loans import services as loan_services
from loans.models import CreditLine, Installment, Loan, LoanSettings, Repayment
from loans.schedule import METHOD_LABELS, Method, PrepaymentMode, Schedule

ZERO = Decimal("0.00")
FEN = Decimal("0.01")
# The amount the borrow screen starts with: this much, or all that is available if less.
DEFAULT_AMOUNT = Decimal("10000")
# Quick picks under the amount field (those within the available amount), then "all of it".
QUICK_PICKS = (Decimal("3000"), Decimal("5000"), Decimal("10000"), Decimal("20000"), Decimal("50000"))
MAX_PICKS = 3


def masked_phone(farmer: Farmer) -> str:
    return mask_phone(decrypt(farmer.phone_encrypted)) if farmer.phone_encrypted else ""


def method_label(method: str) -> str:
    zh, en = METHOD_LABELS.get(method, (method, method))
    return _pick(zh, en)


def method_explanation(method: str) -> str:
    """One plain sentence on how a method repays."""
    return {
        Method.EQUAL_INSTALLMENT: _("每个月还一样多，好记好安排。"),
        Method.EQUAL_PRINCIPAL: _("每个月还一样多的本金，利息越还越少，总利息最少。"),
        Method.INTEREST_ONLY: _("每个月只还利息，到期再一次还本金。"),
        Method.BULLET: _("中间不用还，到期一次还清本金和利息。"),
    }.get(method, "")


def months_label(months: int) -> str:
    return _("%(months)s 个月") % {"months": months}


# --- What the farmer may borrow ----------------------------------------------------------------


@dataclass
class BorrowOffer:
    line: CreditLine
    available: Decimal
    default_amount: str
    picks: list[dict]  # {"value": "5000", "label": "5,000"}
    terms: list[dict]  # {"value": 12, "label": "12 个月"}
    methods: list[dict]  # {"value": "equal_installment", "label": …, "help": …}
    default_term: int
    default_method: str

    @property
    def figures(self) -> dict[str, str]:
        return {"available": yuan(self.available), "rate": percent(self.line.annual_rate)}


def plain(amount: Decimal) -> str:
    """An amount as typed in a field: ``10000`` or ``10000.50`` (no grouping, no ``.00``)."""
    return format(amount.quantize(Decimal("1")) if amount == amount.to_integral_value() else amount, "f")


def _whole_hundreds(amount: Decimal) -> Decimal:
    return (amount / 100).to_integral_value(rounding=ROUND_DOWN) * 100


def borrow_offer(*, line: CreditLine) -> BorrowOffer:
    settings: LoanSettings = loan_services.loan_settings()
    available = line.available
    default = min(DEFAULT_AMOUNT, _whole_hundreds(available))
    if default < loan_services.MIN_DRAWDOWN:
        default = available
    picks = [
        {"value": plain(pick), "label": yuan(pick)}
        for pick in QUICK_PICKS
        if loan_services.MIN_DRAWDOWN <= pick < available
    ][:MAX_PICKS]
    if available >= loan_services.MIN_DRAWDOWN:
        picks.append({"value": plain(available), "label": _("全部 %(amount)s") % {"amount": yuan(available)}})
    terms = sorted(settings.terms)
    methods = [method for method in settings.methods if method in set(Method)]
    return BorrowOffer(
        line=line,
        available=available,
        default_amount=plain(default),
        picks=picks,
        terms=[{"value": months, "label": months_label(months)} for months in terms],
        methods=[
            {"value": method, "label": method_label(method), "help": method_explanation(method)} for method in methods
        ],
        default_term=12 if 12 in terms else (terms[-1] if terms else 0),
        default_method=Method.EQUAL_INSTALLMENT if Method.EQUAL_INSTALLMENT in methods else (methods or [""])[0],
    )


# --- A drawdown quote --------------------------------------------------------------------------


@dataclass
class QuoteView:
    """A quote as the farmer reads it: money as text; when the county pays part of the
    interest (贴息), interest and payments are what the farmer pays after it."""

    amount: str
    months: int
    method: str
    method_label: str
    apr: str
    total_interest: str
    total_payment: str
    first_due: dt.date
    first_payment: str
    periods: list[dict] = field(default_factory=list)  # {"number", "due_date", "payment"}
    subsidy_share: str = ""  # "30%" when a subsidy programme applies


def quote_view(*, schedule: Schedule, line: CreditLine, on: dt.date | None = None) -> QuoteView:
    programme = loan_services.subsidy_programme_for(line=line, on=on or timezone.localdate())
    share = programme.share if programme else Decimal("0")

    def farmer_interest(interest: Decimal) -> Decimal:
        # As the loan will have it: the county's part rounded to the fen per period.
        return interest - (interest * share).quantize(FEN, rounding=ROUND_HALF_UP)

    periods = [
        {"number": p.number, "due_date": p.due_date, "payment": yuan2(p.principal + farmer_interest(p.interest))}
        for p in schedule.periods
    ]
    total_interest = sum((farmer_interest(p.interest) for p in schedule.periods), ZERO)
    return QuoteView(
        amount=yuan(schedule.principal),
        months=len(schedule.periods),
        method=schedule.method.value,
        method_label=method_label(schedule.method),
        apr=percent(schedule.apr),
        total_interest=yuan2(total_interest),
        total_payment=yuan2(schedule.principal + total_interest),
        first_due=schedule.periods[0].due_date,
        first_payment=periods[0]["payment"],
        periods=periods,
        subsidy_share=percent(share) if share else "",
    )


def yuan2(amount: Decimal) -> str:
    """Money to the fen, grouped: ``1,043.50`` (payments, interest — never rounded away)."""
    return f"{amount:,.2f}"


# --- The farmer's loans ------------------------------------------------------------------------

# Marks of a schedule period: a symbol and a word, never colour alone.
MARKS = {
    Installment.Status.PAID: "✓",
    Installment.Status.DUE: "●",
    Installment.Status.OVERDUE: "!",
    Installment.Status.SCHEDULED: "○",
}


def _state(loan: Loan, *, owed_now: Decimal) -> tuple[str, str]:
    """(state, words): ``closed`` · ``overdue`` · ``due`` (to pay today) · ``active``."""
    if loan.status == Loan.Status.CLOSED:
        if loan.closed_on:
            return "closed", _("已于 %(day)s 还清") % {"day": _day(loan.closed_on)}
        return "closed", str(Loan.Status.CLOSED.label)
    if loan.status != Loan.Status.ACTIVE:
        return loan.status, str(Loan.Status(loan.status).label)
    if loan.days_past_due:
        return "overdue", _("已逾期 %(days)s 天，请尽快还款") % {"days": loan.days_past_due}
    if loan.installments.filter(status=Installment.Status.OVERDUE).exists():
        return "overdue", _("有一期已逾期，请尽快还款")
    if owed_now > 0:
        return "due", _("今天要还 %(amount)s 元") % {"amount": yuan2(owed_now)}
    return "active", _("还款中，没有逾期")


def _classification(loan: Loan) -> str:
    label = str(Loan.Classification(loan.classification).label)
    if loan.classification == Loan.Classification.NORMAL:
        return label
    return _("%(label)s（有逾期）") % {"label": label}


def _disbursement(loan: Loan) -> str:
    if loan.disbursement == Loan.Disbursement.CONFIRMED:
        return _("已到账")
    return _("钱正在路上")


@dataclass
class LoanCard:
    loan: Loan
    amount: str
    method: str
    months: str
    rate: str
    outstanding: str
    state: str
    state_text: str
    classification: str
    disbursement: str
    next_due: dt.date | None = None
    next_payment: str = ""


def _owed_today(loan: Loan, today: dt.date) -> Decimal:
    """What the farmer owes today on periods whose date has come (read only: no writes)."""
    owed = loan.penalty_due
    for installment in loan.installments.filter(
        status__in=(Installment.Status.SCHEDULED, Installment.Status.DUE, Installment.Status.OVERDUE),
        due_date__lte=today,
    ):
        owed += installment.payment - installment.principal_paid - installment.interest_paid
    return owed


def loan_card(*, loan: Loan, today: dt.date | None = None, owed_now: Decimal | None = None) -> LoanCard:
    today = today or timezone.localdate()
    if owed_now is None:
        owed_now = _owed_today(loan, today) if loan.status == Loan.Status.ACTIVE else ZERO
    state, words = _state(loan, owed_now=owed_now)
    card = LoanCard(
        loan=loan,
        amount=yuan(loan.principal),
        method=method_label(loan.method),
        months=months_label(loan.term_months),
        rate=percent(loan.annual_rate),
        outstanding=yuan2(loan.outstanding_principal),
        state=state,
        state_text=words,
        classification=_classification(loan),
        disbursement=_disbursement(loan),
    )
    upcoming = loan_selectors.next_installment(loan=loan) if loan.status == Loan.Status.ACTIVE else None
    if upcoming is not None:
        card.next_due = upcoming.due_date
        card.next_payment = yuan2(upcoming.payment - upcoming.principal_paid - upcoming.interest_paid)
    return card


def loan_cards(*, farmer: Farmer) -> list[LoanCard]:
    today = timezone.localdate()
    return [loan_card(loan=loan, today=today) for loan in loan_selectors.farmer_loans(farmer=farmer)]


# --- One loan ----------------------------------------------------------------------------------


@dataclass
class LoanPage:
    card: LoanCard
    rows: list[dict]
    due_now: Decimal = ZERO  # what "repay now" pays: what has fallen due by today
    payoff: loan_services.PayoffQuote | None = None
    payoff_figures: dict[str, str] = field(default_factory=dict)
    can_prepay: bool = False
    prepay_modes: list[dict] = field(default_factory=list)
    repayments: list[dict] = field(default_factory=list)


def _schedule_rows(loan: Loan, today: dt.date) -> list[dict]:
    """The live schedule, numbered as the farmer reads it: the periods 1, 2, 3 … in date order,
    and a paid early repayment (payoff or prepayment, which the services book as a paid period
    dated that day) called that instead of a period number."""
    early = set(
        loan.repayments.filter(kind__in=(Repayment.Kind.PAYOFF, Repayment.Kind.PREPAYMENT)).values_list(
            "business_date", "to_principal"
        )
    )
    rows, number = [], 0
    for row in loan_selectors.loan_schedule_rows(loan=loan, on=today):
        paid_early = row.status == Installment.Status.PAID and (row.due_date, row.principal) in early
        if not paid_early:
            number += 1
        if row.status == Installment.Status.DUE and row.due_date == today:
            label = _("今天要还")
        else:
            label = row.status_label
        rows.append(
            {
                "title": _("提前还款") if paid_early else _("第 %(number)s 期") % {"number": number},
                "due_date": row.due_date,
                "payment": yuan2(row.payment),
                "paid_on": row.paid_on,
                "status": row.status,
                "mark": MARKS.get(row.status, ""),
                "label": label,
            }
        )
    return rows


def loan_page(*, loan: Loan) -> LoanPage:
    today = timezone.localdate()
    rows = _schedule_rows(loan, today)
    page = LoanPage(card=loan_card(loan=loan, today=today), rows=rows)
    if loan.status == Loan.Status.ACTIVE:
        # The payoff quote counts what falls due today as due (in a savepoint it rolls back),
        # so its ``due`` is exactly what "repay now" pays.
        quote = loan_services.payoff_quote(loan=loan, on=today)
        page.payoff = quote
        page.due_now = quote.due.total
        page.card = loan_card(loan=loan, today=today, owed_now=quote.due.total)
        page.payoff_figures = {
            "due": yuan2(quote.due.total),
            "principal": yuan2(quote.principal_ahead),
            "interest": yuan2(quote.interest_to_day),
            "total": yuan2(quote.total),
            "days": str(quote.days),
        }
        page.can_prepay = quote.due.total == 0 and quote.principal_ahead > 0
        page.prepay_modes = [
            {
                "value": PrepaymentMode.SHORTER_TERM.value,
                "label": _("缩短期限"),
                "help": _("每期还的不变，早几期还完。"),
            },
            {
                "value": PrepaymentMode.SMALLER_INSTALLMENT.value,
                "label": _("减少每期还款"),
                "help": _("期数不变，以后每期少还一些。"),
            },
        ]
    page.repayments = [
        {"on": repayment.business_date, "amount": yuan2(repayment.amount), "kind": repayment.get_kind_display()}
        for repayment in loan.repayments.order_by("-business_date", "-id")[:20]
    ]
    return page
