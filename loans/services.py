"""The loan lifecycle's writes: drawdown, repayment, partial prepayment and payoff.

Each service runs in one transaction that changes the loan, its schedule, the credit line and
the ledger together, so their balances never disagree (tests check it after random
sequences). The credit line row is locked first, which serialises concurrent drawdowns of one
farmer: two of them can never together exceed the available amount.

Conventions: money is ``Decimal`` yuan to the fen, round half up; ``on`` is the business date
(default: today in Asia/Shanghai). Interest becomes receivable when its installment falls due;
a payoff or prepayment between due dates pays interest to the day (annual / 360).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from counties.models import Farmer
from data_sharing.consent_selectors import consent_allows_drawdown
from loans.ledger import journal_post
from loans.models import (
    Account,
    CreditLine,
    CreditOutcome,
    Installment,
    InterestSubsidyProgramme,
    JournalEntry,
    Loan,
    LoanSettings,
    OutboxMessage,
    Repayment,
)
from loans.policy import policy_active
from loans.schedule import (
    Method,
    PrepaymentMode,
    Schedule,
    interest_to_the_day,
    schedule_after_prepayment,
    schedule_build,
)

FEN = Decimal("0.01")
ZERO = Decimal("0.00")
MIN_DRAWDOWN = Decimal("1000.00")
BAD_DAYS_PAST_DUE = 90  # a loan that reached 90+ days past due is "bad" for the scorecard
OPEN_STATUSES = (Installment.Status.SCHEDULED, Installment.Status.DUE, Installment.Status.OVERDUE)


def fen(value: Decimal) -> Decimal:
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


class LoanRefused(ValidationError):
    """A request the rules refuse; ``code`` is machine-readable, the message is for people."""


def _refuse(code: str, message) -> LoanRefused:
    return LoanRefused(message, code=code)


def loan_settings() -> LoanSettings:
    settings, _created = LoanSettings.objects.get_or_create(pk=1)
    return settings


def business_today() -> dt.date:
    return timezone.localdate()


# --- Drawdown --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrawdownTerms:
    amount: Decimal
    term_months: int
    method: str


def drawdown_terms_checked(*, line: CreditLine, amount, term_months, method, settings: LoanSettings) -> DrawdownTerms:
    """Validate a drawdown request against the line and the county's products."""
    try:
        amount = Decimal(str(amount))
    except Exception as error:
        raise _refuse("invalid_amount", _("请输入正确的借款金额")) from error
    if not amount.is_finite() or amount != amount.quantize(FEN):
        raise _refuse("invalid_amount", _("请输入正确的借款金额"))
    amount = amount.quantize(FEN)
    if amount < MIN_DRAWDOWN:
        raise _refuse("amount_too_small", _("每笔借款至少 1,000 元"))
    if amount > line.available:
        raise _refuse(
            "amount_exceeds_available",
            _("借款金额超过可用额度 %(available)s 元") % {"available": f"{line.available:,}"},
        )
    try:
        term_months = int(term_months)
    except (TypeError, ValueError) as error:
        raise _refuse("invalid_term", _("请选择借款期限")) from error
    if term_months not in settings.terms:
        raise _refuse(
            "invalid_term", _("本县可选期限为 %(terms)s 个月") % {"terms": "、".join(map(str, settings.terms))}
        )
    if method not in settings.methods or method not in set(Method):
        raise _refuse("invalid_method", _("请选择本县提供的还款方式"))
    return DrawdownTerms(amount=amount, term_months=term_months, method=str(method))


def drawdown_quote(*, line: CreditLine, amount, term_months, method, on: dt.date | None = None) -> Schedule:
    """The schedule a drawdown would get today (the same figures the loan will have)."""
    terms = drawdown_terms_checked(
        line=line, amount=amount, term_months=term_months, method=method, settings=loan_settings()
    )
    return schedule_build(
        principal=terms.amount,
        annual_rate=line.annual_rate,
        months=terms.term_months,
        method=terms.method,
        start=on or business_today(),
    )


def loan_drawdown(
    *, farmer: Farmer, amount, term_months, method: str, on: dt.date | None = None, channel: str = "mobile"
) -> Loan:
    """Draw a loan from the farmer's line: an instant, automatic decision. On approval one
    transaction creates the loan, its schedule, its ledger entry and the disbursement
    instruction for the lending partner (outbox). Raises :class:`LoanRefused` otherwise."""
    on = on or business_today()
    settings = loan_settings()
    policy = policy_active()
    with transaction.atomic():
        line = (
            CreditLine.objects.select_for_update(of=("self",))
            .filter(farmer=farmer)
            .select_related("assessment")
            .first()
        )
        if line is None:
            raise _refuse("no_line", _("您还没有授信额度"))
        if line.status != CreditLine.Status.ACTIVE or line.valid_until < on:
            raise _refuse("line_not_active", _("您的额度目前不可用：%(reason)s") % {"reason": _line_state(line)})
        if policy is None or not consent_allows_drawdown(farmer=farmer, partner=policy.partner):
            raise _refuse("no_consent", _("您的数据授权已暂停、撤回或需要重新确认，暂不能借款"))
        if (
            Loan.objects.filter(farmer=farmer, status=Loan.Status.ACTIVE)
            .filter(Q(days_past_due__gt=0) | Q(installments__status=Installment.Status.OVERDUE))
            .exists()
        ):
            raise _refuse("overdue", _("您有逾期未还的借款，请先还款"))
        terms = drawdown_terms_checked(
            line=line, amount=amount, term_months=term_months, method=method, settings=settings
        )
        schedule = schedule_build(
            principal=terms.amount,
            annual_rate=line.annual_rate,
            months=terms.term_months,
            method=terms.method,
            start=on,
        )
        programme = subsidy_programme_for(line=line, on=on)
        share = programme.share if programme else Decimal("0")
        loan = Loan.objects.create(
            farmer=farmer,
            line=line,
            partner=policy.partner,
            principal=terms.amount,
            annual_rate=line.annual_rate,
            penalty_rate=_penalty_rate(line.annual_rate, settings),
            subsidy_share=share,
            subsidy_programme=programme,
            term_months=terms.term_months,
            method=terms.method,
            start_date=on,
            maturity_date=schedule.periods[-1].due_date,
            outstanding_principal=terms.amount,
            last_closed_date=on - dt.timedelta(days=1),
        )
        Installment.objects.bulk_create(_installments(loan, schedule, share=share))
        line.outstanding_principal += terms.amount
        line.save(update_fields=["outstanding_principal", "updated_at"])
        journal_post(
            kind=JournalEntry.Kind.DISBURSEMENT,
            business_date=on,
            loan=loan,
            debits={Account.LOANS_RECEIVABLE: terms.amount},
            credits={Account.PARTNER_SETTLEMENT: terms.amount},
        )
        OutboxMessage.objects.create(
            topic="drawdown.requested",
            partner=policy.partner,
            loan=loan,
            payload={
                "loan_id": loan.pk,
                "farmer_id": farmer.pk,
                "amount": str(terms.amount),
                "term_months": terms.term_months,
                "method": terms.method,
                "annual_rate": str(line.annual_rate),
                "start_date": on.isoformat(),
                "channel": channel,
            },
        )
    return loan


def _penalty_rate(annual_rate: Decimal, settings: LoanSettings) -> Decimal:
    return (annual_rate * (1 + settings.penalty_markup)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _line_state(line: CreditLine) -> str:
    if line.status == CreditLine.Status.SUSPENDED and line.suspension:
        return str(CreditLine.Suspension(line.suspension).label)
    if line.status == CreditLine.Status.SUSPENDED:
        return str(_("已冻结"))
    return str(_("额度已过期"))


def _installments(loan: Loan, schedule: Schedule, *, share: Decimal, first_number: int = 1) -> list[Installment]:
    return [
        Installment(
            loan=loan,
            number=first_number + index,
            due_date=period.due_date,
            principal=period.principal,
            interest=period.interest,
            subsidy=fen(period.interest * share),
        )
        for index, period in enumerate(schedule.periods)
    ]


def subsidy_programme_for(*, line: CreditLine, on: dt.date) -> InterestSubsidyProgramme | None:
    """The interest-subsidy programme in force on ``on`` that the farmer qualifies for (by the
    features of the line's assessment), the most generous first."""
    features = (line.assessment.features if line.assessment_id else None) or {}
    for programme in InterestSubsidyProgramme.objects.filter(starts_on__lte=on, ends_on__gte=on).order_by(
        "-share", "id"
    ):
        if all(_feature_matches(features.get(name), wanted) for name, wanted in programme.eligibility.items()):
            return programme
    return None


def _feature_matches(value, wanted) -> bool:
    if value is None:
        return False
    try:
        return Decimal(str(value)) == Decimal(str(wanted))
    except Exception:
        return str(value) == str(wanted)


# --- Falling due -----------------------------------------------------------------------------------


def installments_fall_due(*, loan: Loan, on: dt.date) -> int:
    """Installments of ``loan`` due on or before ``on`` become receivable: their interest is
    posted (the farmer's part to interest receivable, the county's subsidy to subsidy
    receivable). Idempotent; the nightly close does the same set-based for the county."""
    due = list(loan.installments.filter(status=Installment.Status.SCHEDULED, due_date__lte=on).order_by("due_date"))
    for installment in due:
        journal_post(
            kind=JournalEntry.Kind.INTEREST_DUE,
            business_date=on,
            loan=loan,
            debits={
                Account.INTEREST_RECEIVABLE: installment.farmer_interest,
                Account.SUBSIDY_RECEIVABLE: installment.subsidy,
            },
            credits={Account.INTEREST_INCOME: installment.interest},
            memo=f"installment {installment.number}",
        )
        loan.interest_due += installment.farmer_interest
        loan.subsidy_due += installment.subsidy
        installment.status = Installment.Status.DUE
        installment.save(update_fields=["status"])
    if due:
        loan.save(update_fields=["interest_due", "subsidy_due"])
    return len(due)


# --- Repayment -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AmountDue:
    penalty: Decimal
    interest: Decimal
    principal: Decimal

    @property
    def total(self) -> Decimal:
        return self.penalty + self.interest + self.principal


def amount_due(*, loan: Loan) -> AmountDue:
    """What the farmer owes now on installments that have fallen due (after
    :func:`installments_fall_due`)."""
    principal = sum(
        (
            i.principal - i.principal_paid
            for i in loan.installments.filter(status__in=(Installment.Status.DUE, Installment.Status.OVERDUE))
        ),
        ZERO,
    )
    return AmountDue(penalty=loan.penalty_due, interest=loan.interest_due, principal=principal)


def _locked_loan(loan: Loan) -> Loan:
    return Loan.objects.select_for_update().get(pk=loan.pk)


def _check_amount(amount) -> Decimal:
    try:
        amount = Decimal(str(amount))
    except Exception as error:
        raise _refuse("invalid_amount", _("请输入正确的还款金额")) from error
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(FEN):
        raise _refuse("invalid_amount", _("请输入正确的还款金额"))
    return amount.quantize(FEN)


def loan_repay(
    *, loan: Loan, amount, on: dt.date | None = None, channel: str = "mobile", partner_reference: str = ""
) -> Repayment:
    """Repay what has fallen due. The amount is allocated in the county's order (penalty →
    interest → principal by default), oldest installment first. More than is due is refused,
    not kept: for paying ahead use :func:`loan_prepay` or :func:`loan_payoff`."""
    on = on or business_today()
    amount = _check_amount(amount)
    with transaction.atomic():
        loan = _locked_loan(loan)
        _require_open(loan)
        installments_fall_due(loan=loan, on=on)
        due = amount_due(loan=loan)
        if due.total == 0:
            raise _refuse("nothing_due", _("目前没有到期应还的款项；如需提前还款，请选择提前还款"))
        if amount > due.total:
            raise _refuse("overpayment", _("还款金额超过应还金额 %(due)s 元") % {"due": f"{due.total:,}"})
        repayment = _allocate(
            loan,
            amount,
            on=on,
            channel=channel,
            partner_reference=partner_reference,
            kind=Repayment.Kind.SCHEDULED,
            order=loan_settings().allocation_order,
        )
        _after_payment(loan, on)
    return repayment


def _require_open(loan: Loan) -> None:
    if loan.status != Loan.Status.ACTIVE:
        raise _refuse("loan_closed", _("这笔借款已结清"))


def _allocate(loan: Loan, amount: Decimal, *, on, channel, partner_reference, kind, order) -> Repayment:
    """Allocate ``amount`` (≤ what is due) over penalty, interest and principal in ``order``;
    post the ledger; update installments and the loan; return the repayment."""
    left = amount
    parts = {"penalty": ZERO, "interest": ZERO, "principal": ZERO}
    open_installments = list(
        loan.installments.filter(status__in=(Installment.Status.DUE, Installment.Status.OVERDUE)).order_by(
            "due_date", "id"
        )
    )
    for component in order:
        if component == "penalty":
            take = min(left, loan.penalty_due)
            loan.penalty_due -= take
        else:
            take = ZERO
            for installment in open_installments:
                if component == "interest":
                    owed = installment.farmer_interest - installment.interest_paid
                    paid = min(left - take, owed)
                    installment.interest_paid += paid
                else:
                    owed = installment.principal - installment.principal_paid
                    paid = min(left - take, owed)
                    installment.principal_paid += paid
                take += paid
            if component == "interest":
                loan.interest_due -= take
            else:
                loan.outstanding_principal -= take
        parts[component] = take
        left -= take
    assert left == 0, "the caller checked amount <= due"
    for installment in open_installments:
        if (
            installment.principal_paid == installment.principal
            and installment.interest_paid == installment.farmer_interest
        ):
            installment.status = Installment.Status.PAID
            installment.paid_on = on
        installment.save(update_fields=["principal_paid", "interest_paid", "status", "paid_on"])
    repayment = Repayment.objects.create(
        loan=loan,
        kind=kind,
        amount=amount,
        to_penalty=parts["penalty"],
        to_interest=parts["interest"],
        to_principal=parts["principal"],
        business_date=on,
        channel=channel,
        partner_reference=partner_reference,
    )
    journal_post(
        kind=JournalEntry.Kind.REPAYMENT,
        business_date=on,
        loan=loan,
        debits={Account.PARTNER_SETTLEMENT: amount},
        credits={
            Account.PENALTY_RECEIVABLE: parts["penalty"],
            Account.INTEREST_RECEIVABLE: parts["interest"],
            Account.LOANS_RECEIVABLE: parts["principal"],
        },
        memo=f"repayment {repayment.pk}",
    )
    loan.save(update_fields=["penalty_due", "interest_due", "outstanding_principal"])
    if parts["principal"]:
        CreditLine.objects.filter(pk=loan.line_id).update(
            outstanding_principal=_minus_floor_zero("outstanding_principal", parts["principal"]),
            updated_at=timezone.now(),
        )
    return repayment


def _minus_floor_zero(field: str, minus: Decimal):
    return Greatest(F(field) - minus, Value(ZERO))


def _after_payment(loan: Loan, on: dt.date) -> None:
    """Clear the overdue state once nothing overdue is left, close the loan when all is paid,
    and let the line out of an ``overdue`` suspension when the farmer has nothing overdue."""
    # _allocate marks a fully paid installment PAID, so any OVERDUE one left is still unpaid.
    still_overdue = loan.penalty_due > 0 or loan.installments.filter(status=Installment.Status.OVERDUE).exists()
    if not still_overdue and loan.days_past_due:
        loan.days_past_due = 0
        loan.save(update_fields=["days_past_due"])
    if (
        loan.outstanding_principal == 0
        and loan.interest_due == 0
        and loan.penalty_due == 0
        and not loan.installments.filter(status__in=OPEN_STATUSES).exists()
    ):
        loan.status = Loan.Status.CLOSED
        loan.closed_on = on
        loan.days_past_due = 0
        loan.save(update_fields=["status", "closed_on", "days_past_due"])
        CreditOutcome.objects.create(
            farmer_id=loan.farmer_id,
            started_on=loan.start_date,
            closed_on=on,
            principal=loan.principal,
            max_days_past_due=loan.max_days_past_due,
            bad=loan.max_days_past_due >= BAD_DAYS_PAST_DUE,
        )
    line_release_if_current(farmer_id=loan.farmer_id, on=on)


def line_release_if_current(*, farmer_id: int, on: dt.date) -> bool:
    """A line suspended because of an overdue loan becomes active again once the farmer has no
    overdue loan (still within its validity; consent is checked again at drawdown)."""
    if Loan.objects.filter(farmer_id=farmer_id, status=Loan.Status.ACTIVE, days_past_due__gt=0).exists():
        return False
    if Loan.objects.filter(farmer_id=farmer_id, status=Loan.Status.WRITTEN_OFF).exists():
        return False  # a written-off loan keeps the line suspended for good
    return bool(
        CreditLine.objects.filter(
            farmer_id=farmer_id,
            status=CreditLine.Status.SUSPENDED,
            suspension=CreditLine.Suspension.OVERDUE,
            valid_until__gte=on,
        ).update(status=CreditLine.Status.ACTIVE, suspension=CreditLine.Suspension.NONE, updated_at=timezone.now())
    )


# --- Paying ahead ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PayoffQuote:
    """What paying the whole loan off on ``on`` costs: what has fallen due, plus the principal
    not yet due and its interest to the day (the farmer's part, after any subsidy)."""

    on: dt.date
    due: AmountDue
    principal_ahead: Decimal
    interest_to_day: Decimal  # the farmer's part
    subsidy_to_day: Decimal
    days: int

    @property
    def total(self) -> Decimal:
        return self.due.total + self.principal_ahead + self.interest_to_day


def _broken_period(loan: Loan, on: dt.date) -> tuple[Decimal, int, Decimal, Decimal]:
    """Principal not yet due, the days since the last due date (or the start), and the
    interest to the day on it split into the farmer's and the county's parts."""
    ahead = list(loan.installments.filter(status=Installment.Status.SCHEDULED).order_by("due_date", "id"))
    principal_ahead = sum((i.principal - i.principal_paid for i in ahead), ZERO)
    passed = loan.installments.filter(due_date__lte=on).exclude(status=Installment.Status.SUPERSEDED)
    last = max([loan.start_date, *(i.due_date for i in passed)])
    days = (on - last).days
    interest = interest_to_the_day(principal=principal_ahead, annual_rate=loan.annual_rate, days=days)
    subsidy = fen(interest * loan.subsidy_share)
    return principal_ahead, days, interest - subsidy, subsidy


def payoff_quote(*, loan: Loan, on: dt.date | None = None) -> PayoffQuote:
    """A read-only quote (installments falling due today are counted as due)."""
    on = on or business_today()
    with transaction.atomic():
        sid = transaction.savepoint()
        loan = _locked_loan(loan)
        installments_fall_due(loan=loan, on=on)
        due = amount_due(loan=loan)
        principal_ahead, days, interest, subsidy = _broken_period(loan, on)
        transaction.savepoint_rollback(sid)
    return PayoffQuote(
        on=on, due=due, principal_ahead=principal_ahead, interest_to_day=interest, subsidy_to_day=subsidy, days=days
    )


def loan_payoff(
    *, loan: Loan, amount, on: dt.date | None = None, channel: str = "mobile", partner_reference: str = ""
) -> Repayment:
    """Pay the whole loan off today with interest to the day. ``amount`` must equal the quote
    (a farmer confirms a figure they saw; a different figure is refused, never rounded)."""
    on = on or business_today()
    amount = _check_amount(amount)
    with transaction.atomic():
        loan = _locked_loan(loan)
        _require_open(loan)
        installments_fall_due(loan=loan, on=on)
        due = amount_due(loan=loan)
        principal_ahead, _days, interest, subsidy = _broken_period(loan, on)
        total = due.total + principal_ahead + interest
        if amount != total:
            raise _refuse(
                "amount_mismatch" if amount < total else "overpayment",
                _("提前结清应还 %(total)s 元") % {"total": f"{total:,}"},
            )
        order = loan_settings().allocation_order
        if due.total:
            _allocate(
                loan,
                due.total,
                on=on,
                channel=channel,
                partner_reference="",
                kind=Repayment.Kind.SCHEDULED,
                order=order,
            )
        repayment = _pay_ahead(
            loan,
            principal=principal_ahead,
            interest=interest,
            subsidy=subsidy,
            on=on,
            channel=channel,
            partner_reference=partner_reference,
            kind=Repayment.Kind.PAYOFF,
        )
        _after_payment(loan, on)
    return repayment


def loan_prepay(
    *,
    loan: Loan,
    principal,
    mode: str,
    on: dt.date | None = None,
    channel: str = "mobile",
    partner_reference: str = "",
) -> Repayment:
    """Prepay part of the principal (plus its interest to the day on the whole principal not
    yet due) and rebuild the rest of the schedule on the original due dates: a shorter term
    (same installment) or a smaller installment (same term). Refused while anything is due."""
    on = on or business_today()
    principal = _check_amount(principal)
    if mode not in set(PrepaymentMode):
        raise _refuse("invalid_mode", _("请选择缩短期限或减少月供"))
    with transaction.atomic():
        loan = _locked_loan(loan)
        _require_open(loan)
        installments_fall_due(loan=loan, on=on)
        if amount_due(loan=loan).total:
            raise _refuse("amount_due_first", _("请先还清已到期的款项，再提前还款"))
        principal_ahead, _days, interest, subsidy = _broken_period(loan, on)
        if principal >= principal_ahead:
            raise _refuse(
                "use_payoff",
                _("提前还本金额不能超过剩余本金 %(left)s 元；全部还清请选择提前结清")
                % {"left": f"{principal_ahead:,}"},
            )
        remaining = list(loan.installments.filter(status=Installment.Status.SCHEDULED).order_by("due_date", "id"))
        repayment = _pay_ahead(
            loan,
            principal=principal,
            interest=interest,
            subsidy=subsidy,
            on=on,
            channel=channel,
            partner_reference=partner_reference,
            kind=Repayment.Kind.PREPAYMENT,
            supersede=remaining,
        )
        repayment.prepayment_mode = mode
        repayment.save(update_fields=["prepayment_mode"])
        next_due = remaining[0].due_date
        schedule = schedule_after_prepayment(
            remaining_principal=principal_ahead - principal,
            annual_rate=loan.annual_rate,
            method=loan.method,
            next_due=next_due,
            remaining_periods=len(remaining),
            mode=mode,
            previous_payment=remaining[0].principal + remaining[0].interest if len(remaining) > 1 else None,
            previous_period_principal=remaining[0].principal if len(remaining) > 1 else None,
            anchor_start=loan.start_date,
            first_period_days=(next_due - on).days,
        )
        last_number = loan.installments.order_by("-number").values_list("number", flat=True).first()
        Installment.objects.bulk_create(
            _installments(loan, schedule, share=loan.subsidy_share, first_number=last_number + 1)
        )
        loan.maturity_date = schedule.periods[-1].due_date
        loan.save(update_fields=["maturity_date"])
    return repayment


def _pay_ahead(
    loan: Loan,
    *,
    principal: Decimal,
    interest: Decimal,
    subsidy: Decimal,
    on: dt.date,
    channel: str,
    partner_reference: str,
    kind: str,
    supersede: list[Installment] | None = None,
) -> Repayment:
    """Pay ``principal`` not yet due and the broken period's interest: the interest falls due
    now (posted), the scheduled periods are superseded by one paid period dated today."""
    journal_post(
        kind=JournalEntry.Kind.INTEREST_DUE,
        business_date=on,
        loan=loan,
        debits={Account.INTEREST_RECEIVABLE: interest, Account.SUBSIDY_RECEIVABLE: subsidy},
        credits={Account.INTEREST_INCOME: interest + subsidy},
        memo="interest to the day",
    )
    loan.subsidy_due += subsidy
    scheduled = (
        supersede if supersede is not None else list(loan.installments.filter(status=Installment.Status.SCHEDULED))
    )
    Installment.objects.filter(pk__in=[i.pk for i in scheduled]).update(status=Installment.Status.SUPERSEDED)
    last_number = loan.installments.order_by("-number").values_list("number", flat=True).first() or 0
    Installment.objects.create(
        loan=loan,
        number=last_number + 1,
        due_date=on,
        principal=principal,
        interest=interest + subsidy,
        subsidy=subsidy,
        principal_paid=principal,
        interest_paid=interest,
        status=Installment.Status.PAID,
        paid_on=on,
    )
    amount = principal + interest
    loan.outstanding_principal -= principal
    loan.save(update_fields=["outstanding_principal", "subsidy_due"])
    repayment = Repayment.objects.create(
        loan=loan,
        kind=kind,
        amount=amount,
        to_interest=interest,
        to_principal=principal,
        business_date=on,
        channel=channel,
        partner_reference=partner_reference,
    )
    journal_post(
        kind=JournalEntry.Kind.REPAYMENT,
        business_date=on,
        loan=loan,
        debits={Account.PARTNER_SETTLEMENT: amount},
        credits={Account.INTEREST_RECEIVABLE: interest, Account.LOANS_RECEIVABLE: principal},
        memo=f"repayment {repayment.pk}",
    )
    if principal:
        CreditLine.objects.filter(pk=loan.line_id).update(
            outstanding_principal=_minus_floor_zero("outstanding_principal", principal), updated_at=timezone.now()
        )
    return repayment


# --- The lending partner's side: disbursement and collected repayments ----------------------------

PARTNER_CHANNEL = "partner"
# Clock difference tolerated on a bank's disbursement time.
DISBURSED_AT_LEEWAY = dt.timedelta(minutes=5)


def loan_disbursement_confirm(*, loan_id: int, partner, partner_reference: str, disbursed_at: dt.datetime) -> Loan:
    """The bank paid the loan out: mark it disbursed (``Loan.DoesNotExist`` when the loan is not
    this partner's). Confirming again with the same reference
    changes nothing; with another reference it is refused (``disbursement_conflict``)."""
    if disbursed_at > timezone.now() + DISBURSED_AT_LEEWAY:
        raise LoanRefused(_("放款时间不能晚于当前时间"), code="invalid_disbursed_at")
    with transaction.atomic():
        loan = Loan.objects.select_for_update().filter(pk=loan_id, partner=partner).first()
        if loan is None:
            raise Loan.DoesNotExist(f"no loan {loan_id} of this partner")
        if loan.disbursement == Loan.Disbursement.CONFIRMED:
            if loan.partner_reference == partner_reference:
                return loan
            raise LoanRefused(
                _("这笔贷款已按流水号 %(reference)s 确认放款") % {"reference": loan.partner_reference},
                code="disbursement_conflict",
            )
        if timezone.localdate(disbursed_at) < loan.start_date - dt.timedelta(days=1):
            # A payout cannot precede the drawdown it pays (this also refuses year-60 dates).
            raise LoanRefused(_("放款时间不能早于借款日期"), code="invalid_disbursed_at")
        loan.disbursement = Loan.Disbursement.CONFIRMED
        loan.disbursed_at = disbursed_at
        loan.partner_reference = partner_reference
        loan.save(update_fields=["disbursement", "disbursed_at", "partner_reference"])
    return loan


def loan_partner_repayment(
    *, loan_id: int, partner, kind: str, amount: Decimal, partner_reference: str, prepayment_mode: str
) -> Repayment:
    """Post money the bank collected for a loan through the loan services (channel "partner")."""
    loan = Loan.objects.filter(pk=loan_id, partner=partner).first()
    if loan is None:
        raise Loan.DoesNotExist(f"no loan {loan_id} of this partner")
    if loan.disbursement != Loan.Disbursement.CONFIRMED:
        raise LoanRefused(_("这笔贷款尚未确认放款"), code="not_disbursed")
    if Repayment.objects.filter(loan=loan, partner_reference=partner_reference).exists():
        raise _duplicate_reference(partner_reference)
    common = {"loan": loan, "channel": PARTNER_CHANNEL, "partner_reference": partner_reference}
    try:
        if kind == Repayment.Kind.SCHEDULED:
            return loan_repay(amount=amount, **common)
        if kind == Repayment.Kind.PREPAYMENT:
            return loan_prepay(principal=amount, mode=prepayment_mode, **common)
        return loan_payoff(amount=amount, **common)
    except IntegrityError:
        # The same reference posted concurrently under another Idempotency-Key.
        raise _duplicate_reference(partner_reference) from None


def _duplicate_reference(reference: str) -> LoanRefused:
    return LoanRefused(
        _("流水号 %(reference)s 已入账，不能重复入账") % {"reference": reference}, code="duplicate_partner_reference"
    )
