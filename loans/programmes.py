"""County programmes loan systems rarely model: interest subsidy (贴息), the risk compensation fund
(风险补偿基金) and the disaster pause of penalties (灾害暂停).

Writes are typed, keyword-only services, each in one transaction, refusing bad input with a
:class:`ProgrammeRefused` (a ``ValidationError`` with a machine-readable ``code``). Money is
``Decimal`` yuan to the fen, round half up.

Accounting:

- **Subsidy.** When an installment falls due, the county's share of its interest is posted to
  SUBSIDY_RECEIVABLE (drawdown fixed the share; the installment carries the amount). When the
  county pays, :func:`subsidy_receive` posts one entry outside any loan: Dr PARTNER_SETTLEMENT
  / Cr SUBSIDY_RECEIVABLE.
- **Write-off.** Only a loan classified 损失 (LOSS) is written off. The fund bears
  round(share × outstanding principal): Dr COMPENSATION_RECEIVABLE that claim, Dr
  WRITE_OFF_EXPENSE the rest of the principal plus the farmer's unpaid interest and penalty / Cr
  LOANS_RECEIVABLE, INTEREST_RECEIVABLE, PENALTY_RECEIVABLE. The subsidy receivable is **kept**:
  it is the county's debt for interest that fell due, not the farmer's, and the county still
  pays it; so ``subsidy_due`` stays on the loan (its ledger balance too). The fund pays only the
  principal share, never interest or penalty.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Max, Q, Sum, Value
from django.db.models.functions import ExtractMonth, Greatest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from counties.models import Township
from loans.ledger import journal_post
from loans.models import (
    Account,
    CreditLine,
    CreditOutcome,
    DisasterPause,
    FundMovement,
    InterestSubsidyProgramme,
    JournalEntry,
    JournalLine,
    Loan,
    LoanSettings,
    OutboxMessage,
    RiskCompensationFund,
)
from loans.scorecard import FEATURE_NAMES

FEN = Decimal("0.01")
SHARE_PLACES = Decimal("0.0001")
ZERO = Decimal("0.00")


class ProgrammeRefused(ValidationError):
    """A programme request the rules refuse; ``code`` is machine-readable."""


def _refuse(code: str, message) -> ProgrammeRefused:
    return ProgrammeRefused(message, code=code)


def _fen(value: Decimal) -> Decimal:
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


def _actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise _refuse("actor_required", _("必须注明操作人"))
    return actor[:150]


def _amount(value) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError) as error:
        raise _refuse("invalid_amount", _("请输入正确的金额")) from error
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(FEN):
        raise _refuse("invalid_amount", _("请输入正确的金额"))
    return amount


def _share(value) -> Decimal:
    try:
        share = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError) as error:
        raise _refuse("invalid_share", _("比例必须大于 0 且不超过 1")) from error
    if not share.is_finite() or not (0 < share <= 1):
        raise _refuse("invalid_share", _("比例必须大于 0 且不超过 1"))
    if share != share.quantize(SHARE_PLACES):
        raise _refuse("invalid_share", _("比例最多保留四位小数"))
    return share


def _date(value, field: str) -> dt.date:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError as error:
            raise _refuse("invalid_date", _("日期格式不正确：%(field)s") % {"field": field}) from error
    return value


# --- Interest subsidy (贴息) ------------------------------------------------------------------------


def subsidy_programme_create(
    *, name: str, share, eligibility: dict, starts_on: dt.date, ends_on: dt.date, actor: str
) -> InterestSubsidyProgramme:
    """A county interest-subsidy programme: the county pays ``share`` (0 < share ≤ 1) of the
    interest of loans drawn from ``starts_on`` to ``ends_on`` by farmers whose assessment
    features equal ``eligibility`` (e.g. ``{"poverty_monitored": 1}``; empty: everyone)."""
    actor = _actor(actor)
    name = (name or "").strip()
    if not name:
        raise _refuse("name_required", _("请填写项目名称"))
    share = _share(share)
    starts_on, ends_on = _date(starts_on, "starts_on"), _date(ends_on, "ends_on")
    if ends_on < starts_on:
        raise _refuse("invalid_dates", _("结束日期不能早于开始日期"))
    if not isinstance(eligibility, dict):
        raise _refuse("invalid_eligibility", _("适用条件格式不正确"))
    unknown = sorted(set(eligibility) - set(FEATURE_NAMES))
    if unknown:
        raise _refuse("invalid_eligibility", _("未知的适用条件：%(names)s") % {"names": "、".join(map(str, unknown))})
    for value in eligibility.values():
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise _refuse("invalid_eligibility", _("适用条件的取值必须是数字"))
        try:
            if not Decimal(str(value)).is_finite():
                raise InvalidOperation
        except InvalidOperation as error:
            raise _refuse("invalid_eligibility", _("适用条件的取值必须是数字")) from error
    with transaction.atomic():
        return InterestSubsidyProgramme.objects.create(
            name=name[:100],
            share=share,
            eligibility={
                key: str(value) if isinstance(value, Decimal) else value for key, value in eligibility.items()
            },
            starts_on=starts_on,
            ends_on=ends_on,
            created_by=actor,
        )


def _subsidy_lines():
    return JournalLine.objects.filter(account=Account.SUBSIDY_RECEIVABLE)


def subsidy_outstanding(*, on: dt.date | None = None) -> Decimal:
    """What the county owes for subsidised interest fallen due (by ``on``) and not yet paid."""
    lines = _subsidy_lines()
    if on is not None:
        lines = lines.filter(entry__business_date__lte=on)
    totals = lines.aggregate(debit=Sum("debit"), credit=Sum("credit"))
    return (totals["debit"] or ZERO) - (totals["credit"] or ZERO)


def subsidy_monthly_report(*, year: int) -> list[dict]:
    """Per calendar month of ``year`` (by the entries' business dates): subsidy accrued (fallen
    due), received from the county, outstanding at the month's end, and the loans that accrued
    subsidy in the month."""
    year = int(year)
    lines = _subsidy_lines().filter(entry__business_date__year=year)
    by_month = {
        row["month"]: row
        for row in lines.annotate(month=ExtractMonth("entry__business_date"))
        .values("month")
        .annotate(
            accrued=Sum("debit"),
            received=Sum("credit"),
            loans=Count("loan", distinct=True, filter=Q(debit__gt=0)),
        )
    }
    outstanding = subsidy_outstanding(on=dt.date(year - 1, 12, 31))
    report = []
    for month in range(1, 13):
        row = by_month.get(month, {})
        accrued, received = row.get("accrued") or ZERO, row.get("received") or ZERO
        outstanding += accrued - received
        report.append(
            {
                "month": month,
                "accrued": accrued,
                "received": received,
                "outstanding": outstanding,
                "loans": row.get("loans") or 0,
            }
        )
    return report


def subsidy_receive(*, amount, on: dt.date, actor: str) -> JournalEntry:
    """The county pays subsidy it owes to the partner: Dr partner settlement / Cr subsidy
    receivable, one entry outside any loan. More than is outstanding on ``on`` is refused."""
    actor = _actor(actor)
    amount = _amount(amount)
    on = _date(on, "on")
    with transaction.atomic():
        # The county's one settings row as a lock, so two receipts cannot both pass the check.
        LoanSettings.objects.get_or_create(pk=1)
        LoanSettings.objects.select_for_update().get(pk=1)
        # Owed by ``on``, and not already paid by a receipt dated later.
        outstanding = min(subsidy_outstanding(on=on), subsidy_outstanding())
        if amount > outstanding:
            raise _refuse(
                "exceeds_outstanding",
                _("到账金额 %(amount)s 元超过应收贴息余额 %(outstanding)s 元")
                % {"amount": f"{amount:,}", "outstanding": f"{outstanding:,}"},
            )
        return journal_post(
            kind=JournalEntry.Kind.SUBSIDY_RECEIVED,
            business_date=on,
            loan=None,
            debits={Account.PARTNER_SETTLEMENT: amount},
            credits={Account.SUBSIDY_RECEIVABLE: amount},
            memo=f"subsidy received, recorded by {actor}",
        )


# --- Risk compensation fund (风险补偿基金) ------------------------------------------------------------


def _fund_locked() -> RiskCompensationFund:
    RiskCompensationFund.objects.get_or_create(pk=1)
    return RiskCompensationFund.objects.select_for_update().get(pk=1)


def fund_share_set(*, share, actor: str) -> RiskCompensationFund:
    """The share (0 < share ≤ 1) of written-off principal the fund bears from now on."""
    _actor(actor)
    share = _share(share)
    with transaction.atomic():
        fund = _fund_locked()
        fund.share = share
        fund.save(update_fields=["share", "updated_at"])
    return fund


def fund_deposit(*, amount, on: dt.date, actor: str) -> FundMovement:
    """The county pays ``amount`` into the fund."""
    actor = _actor(actor)
    amount = _amount(amount)
    on = _date(on, "on")
    with transaction.atomic():
        fund = _fund_locked()
        fund.balance += amount
        fund.save(update_fields=["balance", "updated_at"])
        return FundMovement.objects.create(
            kind=FundMovement.Kind.DEPOSIT, amount=amount, balance_after=fund.balance, business_date=on, actor=actor
        )


def loan_write_off(*, loan: Loan, on: dt.date, actor: str) -> FundMovement:
    """Write off a loan classified 损失: the fund pays its share of the outstanding principal
    (refused if its balance is short), the rest is a loss; the loan is WRITTEN_OFF, the line's
    outstanding principal falls by the principal written off, and the farmer's credit history
    records a bad outcome. Returns the fund's claim movement."""
    actor = _actor(actor)
    on = _date(on, "on")
    with transaction.atomic():
        loan = Loan.objects.select_for_update().get(pk=loan.pk)
        if loan.status != Loan.Status.ACTIVE:
            raise _refuse("loan_not_active", _("只能核销还款中的借款"))
        if loan.classification != Loan.Classification.LOSS:
            raise _refuse(
                "not_loss",
                _("只能核销五级分类为损失类的借款（当前：%(classification)s）")
                % {"classification": Loan.Classification(loan.classification).label},
            )
        fund = _fund_locked()
        principal, interest, penalty = loan.outstanding_principal, loan.interest_due, loan.penalty_due
        claim = _fen(fund.share * principal)
        if fund.balance < claim:
            raise _refuse(
                "fund_insufficient",
                _("风险补偿基金余额 %(balance)s 元不足以承担本笔代偿 %(claim)s 元")
                % {"balance": f"{fund.balance:,}", "claim": f"{claim:,}"},
            )
        journal_post(
            kind=JournalEntry.Kind.WRITE_OFF,
            business_date=on,
            loan=loan,
            debits={
                Account.COMPENSATION_RECEIVABLE: claim,
                Account.WRITE_OFF_EXPENSE: principal - claim + interest + penalty,
            },
            credits={
                Account.LOANS_RECEIVABLE: principal,
                Account.INTEREST_RECEIVABLE: interest,
                Account.PENALTY_RECEIVABLE: penalty,
            },
            memo=f"write-off by {actor}",
        )
        fund.balance -= claim
        fund.save(update_fields=["balance", "updated_at"])
        movement = FundMovement.objects.create(
            kind=FundMovement.Kind.CLAIM,
            amount=claim,
            loan=loan,
            balance_after=fund.balance,
            business_date=on,
            actor=actor,
        )
        loan.status = Loan.Status.WRITTEN_OFF
        loan.closed_on = on
        loan.outstanding_principal = loan.interest_due = loan.penalty_due = ZERO
        loan.save(update_fields=["status", "closed_on", "outstanding_principal", "interest_due", "penalty_due"])
        if principal:
            CreditLine.objects.filter(pk=loan.line_id).update(
                outstanding_principal=Greatest(F("outstanding_principal") - principal, Value(ZERO)),
                updated_at=timezone.now(),
            )
        CreditOutcome.objects.create(
            farmer_id=loan.farmer_id,
            started_on=loan.start_date,
            closed_on=on,
            principal=loan.principal,
            max_days_past_due=loan.max_days_past_due,
            bad=True,
        )
        OutboxMessage.objects.create(
            topic="loan.written_off",
            partner_id=loan.partner_id,
            loan=loan,
            payload={
                "loan_id": loan.pk,
                "business_date": on.isoformat(),
                "principal": str(principal),
                "interest": str(interest),
                "penalty": str(penalty),
                "compensation": str(claim),
            },
        )
    return movement


def fund_statement() -> dict:
    """The fund: share, balance, totals of deposits and claims, and every movement (newest
    first)."""
    fund, _created = RiskCompensationFund.objects.get_or_create(pk=1)
    totals = FundMovement.objects.aggregate(
        deposits=Sum("amount", filter=Q(kind=FundMovement.Kind.DEPOSIT)),
        claims=Sum("amount", filter=Q(kind=FundMovement.Kind.CLAIM)),
        claims_count=Count("id", filter=Q(kind=FundMovement.Kind.CLAIM)),
    )
    return {
        "share": fund.share,
        "balance": fund.balance,
        "deposits": totals["deposits"] or ZERO,
        "claims": totals["claims"] or ZERO,
        "claims_count": totals["claims_count"],
        "movements": list(
            FundMovement.objects.order_by("-business_date", "-id").values(
                "id", "kind", "amount", "loan_id", "balance_after", "business_date", "actor", "created_at"
            )
        ),
    }


# --- Disaster pause (灾害暂停) ----------------------------------------------------------------------


def _first_open_day() -> dt.date | None:
    """The first day the nightly close has not closed yet (None before any loan)."""
    last = Loan.objects.aggregate(day=Max("last_closed_date"))["day"]
    return None if last is None else last + dt.timedelta(days=1)


def disaster_pause_create(
    *, township_ids, starts_on: dt.date, ends_on: dt.date, reason: str, actor: str
) -> DisasterPause:
    """Pause penalties and the advance of days past due (see :mod:`loans.close`) for the loans of
    farmers in ``township_ids`` from ``starts_on`` to ``ends_on``. A day the nightly close has
    already closed cannot be paused after the fact."""
    actor = _actor(actor)
    reason = (reason or "").strip()
    if not reason:
        raise _refuse("reason_required", _("请填写暂停原因"))
    starts_on, ends_on = _date(starts_on, "starts_on"), _date(ends_on, "ends_on")
    if ends_on < starts_on:
        raise _refuse("invalid_dates", _("结束日期不能早于开始日期"))
    try:
        ids = sorted({int(township_id) for township_id in township_ids or ()})
    except (TypeError, ValueError) as error:
        raise _refuse("invalid_townships", _("请选择乡镇")) from error
    if not ids:
        raise _refuse("invalid_townships", _("请选择乡镇"))
    with transaction.atomic():
        townships = list(Township.objects.filter(pk__in=ids))
        if len(townships) != len(ids):
            raise _refuse("invalid_townships", _("所选乡镇不存在"))
        first_open = _first_open_day()
        if first_open is not None and starts_on < first_open:
            raise _refuse(
                "day_closed",
                _("%(day)s 及以前的日终已完成，暂停最早从 %(first)s 开始")
                % {"day": first_open - dt.timedelta(days=1), "first": first_open},
            )
        pause = DisasterPause.objects.create(
            starts_on=starts_on, ends_on=ends_on, reason=reason[:200], created_by=actor
        )
        pause.townships.set(townships)
    return pause


def disaster_pause_lift(*, pause: DisasterPause, on: dt.date, actor: str) -> DisasterPause:
    """End a pause early: from ``on`` penalties and days past due run again. The pause is kept
    (with who lifted it and from when), never deleted."""
    actor = _actor(actor)
    on = _date(on, "on")
    with transaction.atomic():
        pause = DisasterPause.objects.select_for_update().get(pk=pause.pk)
        if pause.lifted_on is not None:
            raise _refuse("already_lifted", _("该暂停已于 %(day)s 解除") % {"day": pause.lifted_on})
        if on > pause.ends_on:
            raise _refuse("already_ended", _("该暂停已于 %(day)s 结束，无需解除") % {"day": pause.ends_on})
        first_open = _first_open_day()
        if first_open is not None and on < first_open:
            raise _refuse(
                "day_closed",
                _("%(day)s 及以前的日终已完成，最早从 %(first)s 起解除")
                % {"day": first_open - dt.timedelta(days=1), "first": first_open},
            )
        pause.lifted_on = on
        pause.lifted_by = actor
        pause.save(update_fields=["lifted_on", "lifted_by"])
    return pause
