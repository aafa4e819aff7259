"""Repayment schedules (还款计划): pure arithmetic on ``Decimal`` yuan, no database.

The conventions are those of Chinese bank loan calculators (房贷计算器):

- monthly rate r = annual rate / 12, daily rate = annual rate / 360;
- nothing is rounded but the per-period principal and interest, each to the fen, half up; the
  payment is their sum. Interest is computed as remaining × annual rate × months (or days),
  divided by 12 (or 360) last, so a result exactly on half a fen (1,000 × 1.63% × 3 / 12 =
  4.075) is seen as one and rounds up — dividing the rate first would leave 4.07499…;
  the level payment of equal installment is computed in exact rationals;
- each period's interest is round(remaining principal × r), so rounding never compounds;
- the last period pays whatever principal remains, absorbing the rounding of the others;
- due dates are start + n months on the start's day of the month, clamped to the month's end,
  always counted from the start (Jan 31 → Feb 28 → Mar 31, never Feb 28 → Mar 28).

:func:`schedule_build` makes a new loan's schedule; :func:`schedule_after_prepayment` rebuilds
the rest of one after part of its principal was paid early; :func:`interest_to_the_day` is the
interest for a number of days (prepayments, overdue days).

A loan so small that rounding pays it off before its term (1.00 yuan over 200 months: 0.01 a
month) has as many periods as it takes, not one per month with nothing to pay.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from enum import StrEnum
from fractions import Fraction

FEN = Decimal("0.01")
RATE_PLACES = Decimal("0.0001")
MAX_MONTHS = 360
# 40 significant digits: a product of a remaining principal and a rate is exact, and one
# division by 12 or 360 either terminates within them or cannot be a tie at half a fen.
_PRECISION = Context(prec=40, rounding=ROUND_HALF_UP)
_DAYS_PER_YEAR = 360
_DAYS_PER_MONTH = 30  # the same 30/360 convention, for an irregular first period's length in the APR


class Method(StrEnum):
    """Repayment methods; the values are the stable codes stored in the database and the API."""

    EQUAL_INSTALLMENT = "equal_installment"  # 等额本息
    EQUAL_PRINCIPAL = "equal_principal"  # 等额本金
    INTEREST_ONLY = "interest_only"  # 先息后本: monthly interest, principal at maturity
    BULLET = "bullet"  # 到期一次还本付息: one payment at maturity


METHOD_LABELS: dict[Method, tuple[str, str]] = {
    Method.EQUAL_INSTALLMENT: ("等额本息", "Equal installment"),
    Method.EQUAL_PRINCIPAL: ("等额本金", "Equal principal"),
    Method.INTEREST_ONLY: ("先息后本", "Interest only, principal at maturity"),
    Method.BULLET: ("到期一次还本付息", "Principal and interest at maturity"),
}


class PrepaymentMode(StrEnum):
    SHORTER_TERM = "shorter_term"  # 缩短期限: same installment, fewer periods
    SMALLER_INSTALLMENT = "smaller_installment"  # 减少月供: same periods, smaller installment


@dataclass(frozen=True)
class Period:
    number: int
    due_date: dt.date
    principal: Decimal
    interest: Decimal
    payment: Decimal
    remaining: Decimal  # principal still owed after this period's payment


@dataclass(frozen=True)
class Schedule:
    """A schedule and its totals.

    ``start`` is the day interest starts to accrue for period 1 under the monthly convention:
    the loan's start, or for a rebuilt schedule the start of its first period on the original
    dates. ``first_period_days``, when set, is how many days of interest period 1 bears instead.
    """

    periods: tuple[Period, ...]
    principal: Decimal
    total_interest: Decimal
    total_payment: Decimal
    annual_rate: Decimal
    method: Method
    start: dt.date
    first_period_days: int | None = None

    @property
    def apr(self) -> Decimal:
        """The annualised rate as a fraction to 4 places (年化利率).

        Monthly methods: the internal rate of return of the cash flows (+principal at ``start``,
        −payment at each due date) per month, × 12, the nominal rate Chinese lenders quote
        (APR, not the compounded effective rate). Periods are counted in whole months; an
        irregular first period counts first_period_days / 30 months. For equal installment this
        is the contract rate to 4 places: rounding to the fen moves it by less than 0.00005 from
        10,000 yuan up, though on a loan of about a thousand yuan over a few months a single fen
        can tip the fourth place (1,160.64 at 23.63% for one month pays 22.85: 23.62%).

        Bullet: simple interest, total interest / principal × 12 / months (× 360 / days with
        first_period_days), which is the contract rate: the interest is simple, so compounding
        it monthly would understate what the borrower pays.
        """
        if self.total_interest == 0:
            return Decimal("0.0000")
        with localcontext(_PRECISION):
            first = Decimal(self.first_period_days) / _DAYS_PER_MONTH if self.first_period_days is not None else None
            if self.method == Method.BULLET:
                months = first if first is not None else Decimal(_months_between(self.start, self.periods[-1].due_date))
                rate = self.total_interest / self.principal * 12 / months
            else:
                rate = _monthly_irr(self.principal, [period.payment for period in self.periods], first) * 12
        return rate.quantize(RATE_PLACES, rounding=ROUND_HALF_UP)

    def as_dict(self) -> dict:
        """JSON-ready: money and rates as strings ("1234.50"), dates ISO."""
        zh, en = METHOD_LABELS[self.method]
        return {
            "method": self.method.value,
            "method_label": {"zh": zh, "en": en},
            "principal": _money_text(self.principal),
            "annual_rate": format(self.annual_rate, "f"),
            "start": self.start.isoformat(),
            "first_period_days": self.first_period_days,
            "total_interest": _money_text(self.total_interest),
            "total_payment": _money_text(self.total_payment),
            "apr": format(self.apr, "f"),
            "periods": [
                {
                    "number": period.number,
                    "due_date": period.due_date.isoformat(),
                    "principal": _money_text(period.principal),
                    "interest": _money_text(period.interest),
                    "payment": _money_text(period.payment),
                    "remaining": _money_text(period.remaining),
                }
                for period in self.periods
            ],
        }


def due_date(start: dt.date, n: int) -> dt.date:
    """start + n months on start's day of the month, clamped to the end of a shorter month."""
    month_index = start.year * 12 + start.month - 1 + n
    year, month = divmod(month_index, 12)
    month += 1
    return dt.date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def interest_to_the_day(*, principal: Decimal, annual_rate: Decimal, days: int) -> Decimal:
    """principal × annual rate / 360 × days, to the fen."""
    principal = _amount(principal, allow_zero=True)
    annual_rate = _rate(annual_rate)
    days = _whole_number(days, minimum=0, message="天数不能为负 / days must be a whole number, not negative")
    return _interest_for_days(principal, annual_rate, days)


def schedule_build(
    *,
    principal: Decimal,
    annual_rate: Decimal,
    months: int,
    method: Method | str,
    start: dt.date,
    first_period_days: int | None = None,
) -> Schedule:
    """A new loan's schedule of ``months`` monthly periods from ``start``.

    - 等额本息 equal installment: level payment P·r·(1+r)^n / ((1+r)^n − 1) to the fen; each
      period's principal is the payment less its interest.
    - 等额本金 equal principal: round(P / n) of principal a period, plus its interest.
    - 先息后本 interest only: round(P × r) a month; the last period also repays P.
    - 到期一次还本付息 bullet: one period at start + months with interest round(P × r × months),
      the monthly convention (not actual days), as bank calculators quote it.

    ``first_period_days`` (a rebuild after a prepayment in mid-period) makes period 1's interest
    round(P × annual / 360 × days) instead of a month's; the level payment of equal installment
    is still the formula over n periods, and period 1 repays payment − interest of principal
    (none if the interest is larger). For a bullet, the days replace the whole term.
    """
    return _schedule(
        principal=_amount(principal),
        annual_rate=_rate(annual_rate),
        months=_months(months),
        method=_method(method),
        anchor=start,
        offset=0,
        first_period_days=_first_period_days(first_period_days),
    )


def schedule_after_prepayment(
    *,
    remaining_principal: Decimal,
    annual_rate: Decimal,
    method: Method | str,
    next_due: dt.date,
    remaining_periods: int,
    mode: PrepaymentMode | str,
    previous_payment: Decimal | None,
    previous_period_principal: Decimal | None,
    anchor_start: dt.date,
    first_period_days: int | None,
) -> Schedule:
    """The rest of a loan after part of its principal was prepaid.

    Due dates stay on the original anchor: ``next_due`` must be due_date(anchor_start, k) for
    some k, and rebuilt period j (numbered from 1 again) falls on due_date(anchor_start, k + j − 1).

    - SMALLER_INSTALLMENT (减少月供): the same ``remaining_periods``; equal installment gets a new
      level payment over them, equal principal a new round(remaining / periods) a period.
    - SHORTER_TERM (缩短期限): equal installment keeps ``previous_payment``, equal principal keeps
      ``previous_period_principal``, and the schedule takes as few periods as that needs (never
      more than ``remaining_periods``); the last pays the rest, so it is usually smaller.
    - Interest only and bullet repay principal only at maturity, so both modes give the same
      schedule: the same dates with less interest. A bullet has one period left (maturity); without
      ``first_period_days`` its interest runs over the whole term from ``anchor_start``.

    ``first_period_days`` is as in :func:`schedule_build`: the days of interest period 1 bears
    (from the prepayment to ``next_due``) when the rebuild starts in mid-period.
    """
    principal = _amount(remaining_principal)
    annual_rate = _rate(annual_rate)
    method = _method(method)
    periods = _months(remaining_periods)
    first_period_days = _first_period_days(first_period_days)
    try:
        mode = PrepaymentMode(mode)
    except ValueError:
        raise ValueError(
            f"未知的提前还款方式 {mode} / unknown prepayment mode {mode} (expected one of {', '.join(PrepaymentMode)})"
        ) from None
    k = _months_between(anchor_start, next_due)
    if k < 1 or due_date(anchor_start, k) != next_due:
        raise ValueError(
            f"下一还款日 {next_due} 不是 {anchor_start} 起贷款的还款日"
            f" / next_due {next_due} is not a due date of a loan started on {anchor_start}"
        )
    if method == Method.BULLET and periods != 1:
        raise ValueError("到期一次还本付息只有一期 / a bullet loan has exactly one period left")

    common = {
        "principal": principal,
        "annual_rate": annual_rate,
        "method": method,
        "anchor": anchor_start,
        "offset": k - 1,
        "first_period_days": first_period_days,
    }
    if mode == PrepaymentMode.SMALLER_INSTALLMENT or method in (Method.INTEREST_ONLY, Method.BULLET):
        return _schedule(months=periods, **common)
    if method == Method.EQUAL_INSTALLMENT:
        payment = _kept_amount(previous_payment, "previous_payment", "上期月供")
        return _schedule(months=periods, payment=payment, **common)
    period_principal = _kept_amount(previous_period_principal, "previous_period_principal", "每期本金")
    return _schedule(months=periods, period_principal=period_principal, **common)


# --- building ---


def _schedule(
    *,
    principal: Decimal,
    annual_rate: Decimal,
    months: int,
    method: Method,
    anchor: dt.date,
    offset: int,
    first_period_days: int | None,
    payment: Decimal | None = None,
    period_principal: Decimal | None = None,
) -> Schedule:
    """Periods offset + 1 … offset + months on ``anchor``'s dates (offset 0 for a new loan).

    ``payment`` / ``period_principal`` keep a level installment or principal instead of
    computing it over ``months`` (a shorter-term rebuild).
    """
    with localcontext(_PRECISION):
        due_dates = [due_date(anchor, offset + number) for number in range(1, months + 1)]
        if method == Method.BULLET:
            return _bullet(principal, annual_rate, months + offset, due_dates[-1], anchor, first_period_days)
        if method == Method.EQUAL_INSTALLMENT:
            level = payment if payment is not None else _level_payment(principal, annual_rate, months)

            def principal_due(interest: Decimal) -> Decimal:
                return level - interest

        elif method == Method.EQUAL_PRINCIPAL:
            level = period_principal if period_principal is not None else _fen(principal / months)

            def principal_due(interest: Decimal) -> Decimal:
                return level

        else:  # interest only

            def principal_due(interest: Decimal) -> Decimal:
                return Decimal("0.00")

        periods = _amortise(
            principal=principal,
            annual_rate=annual_rate,
            due_dates=due_dates,
            first_period_days=first_period_days,
            principal_due=principal_due,
        )
    return _totalled(periods, principal, annual_rate, method, due_date(anchor, offset), first_period_days)


def _level_payment(principal: Decimal, annual_rate: Decimal, months: int) -> Decimal:
    """P·r·(1+r)^n / ((1+r)^n − 1) to the fen, in exact rationals (a 1,600-digit fraction at
    360 months, microseconds), so no truncation of r can move a payment across half a fen."""
    rate = Fraction(annual_rate) / 12
    if rate == 0:
        return _fen(principal / months)
    growth = (1 + rate) ** months
    payment = Fraction(principal) * rate * growth / (growth - 1)
    fen, remainder = divmod(payment * 100, 1)
    return Decimal(fen + (remainder >= Fraction(1, 2))).scaleb(-2)


def _amortise(
    *,
    principal: Decimal,
    annual_rate: Decimal,
    due_dates: Sequence[dt.date],
    first_period_days: int | None,
    principal_due: Callable[[Decimal], Decimal],
) -> list[Period]:
    remaining = principal
    periods: list[Period] = []
    for number, day in enumerate(due_dates, start=1):
        if number == 1 and first_period_days is not None:
            interest = _interest_for_days(remaining, annual_rate, first_period_days)
        else:
            interest = _interest_for_months(remaining, annual_rate, 1)
        if number == len(due_dates):
            repaid = remaining
        else:
            repaid = min(max(principal_due(interest), Decimal("0.00")), remaining)
        remaining -= repaid
        periods.append(Period(number, day, repaid, interest, repaid + interest, remaining))
        if remaining == 0:
            break
    return periods


def _bullet(
    principal: Decimal,
    annual_rate: Decimal,
    months: int,
    maturity: dt.date,
    anchor: dt.date,
    first_period_days: int | None,
) -> Schedule:
    if first_period_days is not None:
        interest = _interest_for_days(principal, annual_rate, first_period_days)
    else:
        interest = _interest_for_months(principal, annual_rate, months)
    period = Period(1, maturity, principal, interest, principal + interest, Decimal("0.00"))
    return _totalled([period], principal, annual_rate, Method.BULLET, anchor, first_period_days)


def _totalled(
    periods: list[Period],
    principal: Decimal,
    annual_rate: Decimal,
    method: Method,
    start: dt.date,
    first_period_days: int | None,
) -> Schedule:
    return Schedule(
        periods=tuple(periods),
        principal=principal,
        total_interest=sum((period.interest for period in periods), Decimal("0.00")),
        total_payment=sum((period.payment for period in periods), Decimal("0.00")),
        annual_rate=annual_rate,
        method=method,
        start=start,
        first_period_days=first_period_days,
    )


def _interest_for_months(principal: Decimal, annual_rate: Decimal, months: int) -> Decimal:
    with localcontext(_PRECISION):
        return _fen(principal * annual_rate * months / 12)


def _interest_for_days(principal: Decimal, annual_rate: Decimal, days: int) -> Decimal:
    with localcontext(_PRECISION):
        return _fen(principal * annual_rate * days / _DAYS_PER_YEAR)


def _monthly_irr(principal: Decimal, payments: Sequence[Decimal], first_months: Decimal | None) -> Decimal:
    """The monthly rate i with principal = Σ payment_k / (1 + i)^t_k, t_k = t_1 + k − 1 months.

    The present value falls as i rises and is ≥ principal at i = 0 (payments total at least the
    principal), so bisection over [0, 1] finds the root; 100 halvings leave an error below 10^-30.
    """
    first = first_months if first_months is not None else Decimal(1)

    def present_value(rate: Decimal) -> Decimal:
        factor = 1 / (1 + rate)
        discount = factor**first
        total = Decimal(0)
        for payment in payments:
            total += payment * discount
            discount *= factor
        return total

    low, high = Decimal(0), Decimal(1)
    for _ in range(100):
        middle = (low + high) / 2
        if present_value(middle) > principal:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _months_between(start: dt.date, later: dt.date) -> int:
    return (later.year - start.year) * 12 + later.month - start.month


# --- validation and rounding ---


def _fen(value: Decimal) -> Decimal:
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


def _money_text(value: Decimal) -> str:
    return format(value, ".2f")


def _decimal(value: object, message: str) -> Decimal:
    """A finite Decimal from a Decimal or int; floats (binary fractions) and text are refused."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError(message)
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(message)
    return number


def _amount(value: object, *, allow_zero: bool = False) -> Decimal:
    if allow_zero:
        message = "本金不能为负 / principal must not be negative"
    else:
        message = "本金必须大于 0 / principal must be positive"
    amount = _decimal(value, message)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ValueError(message)
    if amount != amount.quantize(FEN):
        raise ValueError(
            "本金最多两位小数（精确到分） / principal must be in yuan to the fen (at most 2 decimal places)"
        )
    return amount.quantize(FEN)


def _kept_amount(value: object, name: str, label_zh: str) -> Decimal:
    if value is None:
        raise ValueError(f"缩短期限需要{label_zh} / shorter_term needs {name}")
    amount = _decimal(value, f"{label_zh}必须大于 0 / {name} must be positive")
    if amount <= 0:
        raise ValueError(f"{label_zh}必须大于 0 / {name} must be positive")
    return _fen(amount)


def _rate(value: object) -> Decimal:
    message = "年利率必须在 0 到 1 之间（不含 1） / annual rate must be a fraction from 0 up to, not including, 1"
    rate = _decimal(value, message)
    if not 0 <= rate < 1:
        raise ValueError(message)
    return rate


def _whole_number(value: object, *, minimum: int, maximum: int | None = None, message: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(message)
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(message)
    return value


def _months(value: object) -> int:
    return _whole_number(
        value,
        minimum=1,
        maximum=MAX_MONTHS,
        message=f"期数必须在 1 到 {MAX_MONTHS} 个月之间 / months must be from 1 to {MAX_MONTHS}",
    )


def _first_period_days(value: object) -> int | None:
    if value is None:
        return None
    return _whole_number(
        value, minimum=1, message="首期天数必须为正整数 / first_period_days must be a positive whole number"
    )


def _method(value: object) -> Method:
    try:
        return Method(value)
    except ValueError:
        raise ValueError(
            f"未知的还款方式 {value} / unknown repayment method {value} (expected one of {', '.join(Method)})"
        ) from None
