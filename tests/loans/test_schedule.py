"""Repayment schedules: hand-computed figures to the fen, cross-checked against an independent
reference in exact rational arithmetic (``fractions.Fraction``), month-end due dates, the
prepayment rebuild and a property test over every method. Pure arithmetic: no database."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from loans.schedule import (
    METHOD_LABELS,
    Method,
    PrepaymentMode,
    due_date,
    interest_to_the_day,
    schedule_after_prepayment,
    schedule_build,
)

JAN_15 = dt.date(2026, 1, 15)


# --- an independent reference: exact fractions, rounded half up to the fen only where the rules say ---


def fen_half_up(value: Fraction) -> Decimal:
    """A non-negative exact value rounded half up to the fen."""
    return Decimal(math.floor(value * 100 + Fraction(1, 2))) / 100


def reference_rows(principal: str, annual_rate: str, months: int, method: Method) -> list[tuple[Decimal, ...]]:
    """(principal, interest, payment, remaining) per period, computed without Decimal at all."""
    remaining = Fraction(principal)
    rate = Fraction(annual_rate) / 12
    if method == Method.BULLET:
        interest = fen_half_up(remaining * rate * months)
        return [(Decimal(principal), interest, Decimal(principal) + interest, Decimal(0))]
    if method == Method.EQUAL_INSTALLMENT:
        if rate:
            growth = (1 + rate) ** months
            level = Fraction(fen_half_up(remaining * rate * growth / (growth - 1)))
        else:
            level = Fraction(fen_half_up(remaining / months))
    elif method == Method.EQUAL_PRINCIPAL:
        level = Fraction(fen_half_up(remaining / months))
    rows = []
    for number in range(1, months + 1):
        interest = Fraction(fen_half_up(remaining * rate))
        if number == months:
            repaid = remaining
        elif method == Method.EQUAL_INSTALLMENT:
            repaid = min(max(level - interest, Fraction(0)), remaining)
        elif method == Method.EQUAL_PRINCIPAL:
            repaid = min(level, remaining)
        else:
            repaid = Fraction(0)
        remaining -= repaid
        rows.append(
            tuple(Decimal(x.numerator) / x.denominator for x in (repaid, interest, repaid + interest, remaining))
        )
        if remaining == 0:
            break
    return rows


def figures(period, fields: str = "principal interest payment remaining") -> tuple[str, ...]:
    """A period's fields as text ("4265.50", "2026-02-15"), to compare with figures written out."""
    return tuple(str(getattr(period, name)) for name in fields.split())


def rows(schedule) -> list[tuple[Decimal, ...]]:
    return [(p.principal, p.interest, p.payment, p.remaining) for p in schedule.periods]


def build(principal: str, annual_rate: str, months: int, method: Method, start: dt.date = JAN_15, **kwargs):
    return schedule_build(
        principal=Decimal(principal),
        annual_rate=Decimal(annual_rate),
        months=months,
        method=method,
        start=start,
        **kwargs,
    )


# --- equal installment 等额本息 ---


def test_equal_installment_50000_at_4_35_percent_over_12_months():
    # r = 0.0435 / 12 = 0.003625; (1 + r)^12 = 1.0443778468709260880…
    # payment = 50,000 × 0.003625 × 1.04437784… / 0.04437784… = 4,265.4950181769… → 4,265.50
    #   (not 4,265.00: the .495… rounds up).
    # row 1: interest 50,000 × 0.003625 = 181.25; principal 4,265.50 − 181.25 = 4,084.25;
    #        remaining 50,000 − 4,084.25 = 45,915.75
    # row 2: interest 45,915.75 × 0.003625 = 166.44459375 → 166.44; principal 4,099.06
    schedule = build("50000", "0.0435", 12, Method.EQUAL_INSTALLMENT)
    first, second, last = schedule.periods[0], schedule.periods[1], schedule.periods[-1]
    assert (first.number, first.due_date) == (1, dt.date(2026, 2, 15))
    assert figures(first) == ("4084.25", "181.25", "4265.50", "45915.75")
    assert figures(second, "principal interest remaining") == ("4099.06", "166.44", "41816.69")
    assert {p.payment for p in schedule.periods[:-1]} == {Decimal("4265.50")}
    # The last pays all that remains (4,250.03) with its interest 4,250.03 × 0.003625 = 15.41:
    # 4,265.44, six fen under the level payment — the rounding of the eleven before it.
    assert (last.number, last.due_date) == (12, dt.date(2027, 1, 15))
    assert figures(last) == ("4250.03", "15.41", "4265.44", "0.00")
    # Calculators quote 4,265.50 × 12 − 50,000 = 1,186.00; the interest actually charged is 1,185.94.
    assert schedule.total_interest == Decimal("1185.94")
    assert schedule.total_payment == Decimal("51185.94")
    assert schedule.apr == Decimal("0.0435")
    assert rows(schedule) == reference_rows("50000", "0.0435", 12, Method.EQUAL_INSTALLMENT)


def test_equal_installment_100000_at_4_9_percent_over_12_months():
    # r = 0.049 / 12 = 0.0040833…; (1 + r)^12 = 1.0501155753119689…
    # payment = 100,000 × r × 1.05011557… / 0.05011557… = 8,556.1662334140… → 8,556.17.
    # The figure 8,557.66 (total interest 2,691.92 = 8,557.66 × 12 − 100,000) that circulates for
    # this loan does not hold: it is the payment at about 4.9326%, not 4.9%. The exact reference
    # agrees with 8,556.17.
    exact = Fraction("0.049") / 12
    growth = (1 + exact) ** 12
    assert fen_half_up(100000 * exact * growth / (growth - 1)) == Decimal("8556.17")

    schedule = build("100000", "0.049", 12, Method.EQUAL_INSTALLMENT)
    assert {p.payment for p in schedule.periods[:-1]} == {Decimal("8556.17")}
    first, last = schedule.periods[0], schedule.periods[-1]
    # 100,000 × 0.0040833… = 408.333… → 408.33; principal 8,556.17 − 408.33 = 8,147.84
    assert figures(first, "principal interest remaining") == ("8147.84", "408.33", "91852.16")
    assert (last.principal, last.interest, last.payment) == (Decimal("8521.32"), Decimal("34.80"), Decimal("8556.12"))
    # Calculator convention 8,556.17 × 12 − 100,000 = 2,674.04; the last installment absorbs
    # the rounding (five fen under the level payment), so the interest charged is 2,673.99.
    assert schedule.total_interest == Decimal("2673.99")
    assert schedule.total_payment == Decimal("102673.99")
    assert schedule.apr == Decimal("0.0490")
    assert rows(schedule) == reference_rows("100000", "0.049", 12, Method.EQUAL_INSTALLMENT)


def test_equal_installment_200000_at_4_35_percent_over_36_months():
    # (1.003625)^36 = 1.1391291179…; payment = 200,000 × 0.003625 × 1.13912… / 0.13912… = 5,935.9868… → 5,935.99
    schedule = build("200000", "0.0435", 36, Method.EQUAL_INSTALLMENT)
    assert len(schedule.periods) == 36
    assert {p.payment for p in schedule.periods[:-1]} == {Decimal("5935.99")}
    first, last = schedule.periods[0], schedule.periods[-1]
    assert (first.principal, first.interest) == (Decimal("5210.99"), Decimal("725.00"))
    assert figures(last, "due_date principal interest payment") == ("2029-01-15", "5914.42", "21.44", "5935.86")
    # 5,935.99 × 36 − 200,000 = 13,695.64 by the calculator convention; 13 fen absorbed in the last.
    assert schedule.total_interest == Decimal("13695.51")
    assert schedule.total_payment == Decimal("213695.51")
    assert schedule.apr == Decimal("0.0435")
    assert rows(schedule) == reference_rows("200000", "0.0435", 36, Method.EQUAL_INSTALLMENT)


def test_equal_installment_a_million_at_4_9_percent_over_30_years():
    # The mortgage calculators' best-known figure: 1,000,000 at 4.9% over 360 months pays 5,307.27.
    schedule = build("1000000", "0.049", 360, Method.EQUAL_INSTALLMENT)
    assert {p.payment for p in schedule.periods[:-1]} == {Decimal("5307.27")}
    # 5,307.27 × 360 − 1,000,000 = 910,617.20 by the calculator convention; the last installment
    # (5,305.19) absorbs 2.08 of rounding over 359 periods, so 910,615.12 is charged.
    assert figures(schedule.periods[-1]) == ("5283.62", "21.57", "5305.19", "0.00")
    assert schedule.total_interest == Decimal("910615.12")
    assert schedule.apr == Decimal("0.0490")
    assert rows(schedule) == reference_rows("1000000", "0.049", 360, Method.EQUAL_INSTALLMENT)


def test_zero_rate_spreads_the_principal_and_the_last_takes_the_odd_fen():
    schedule = build("10000", "0", 3, Method.EQUAL_INSTALLMENT)
    assert [p.payment for p in schedule.periods] == [Decimal("3333.33"), Decimal("3333.33"), Decimal("3333.34")]
    assert schedule.total_interest == Decimal("0.00")
    assert schedule.apr == Decimal("0.0000")


# --- equal principal 等额本金, interest only 先息后本, bullet 到期一次还本付息 ---


def test_equal_principal_50000_at_4_35_percent_over_12_months():
    # principal 50,000 / 12 = 4,166.666… → 4,166.67 a period; the last 50,000 − 11 × 4,166.67 = 4,166.63
    # interest 1: 50,000 × 0.003625 = 181.25; 2: 45,833.33 × 0.003625 = 166.1458… → 166.15
    schedule = build("50000", "0.0435", 12, Method.EQUAL_PRINCIPAL)
    first, second, last = schedule.periods[0], schedule.periods[1], schedule.periods[-1]
    assert figures(first) == ("4166.67", "181.25", "4347.92", "45833.33")
    assert (second.interest, second.payment) == (Decimal("166.15"), Decimal("4332.82"))
    # 4,166.63 × 0.003625 = 15.1040… → 15.10
    assert (last.principal, last.interest, last.payment) == (Decimal("4166.63"), Decimal("15.10"), Decimal("4181.73"))
    # P × r × (n + 1) / 2 = 1,178.125 by the formula; per-period rounding charges 1,178.12.
    assert schedule.total_interest == Decimal("1178.12")
    assert schedule.apr == Decimal("0.0435")
    assert rows(schedule) == reference_rows("50000", "0.0435", 12, Method.EQUAL_PRINCIPAL)


def test_equal_principal_200000_at_4_35_percent_over_36_months():
    # 200,000 / 36 = 5,555.555… → 5,555.56; last 200,000 − 35 × 5,555.56 = 5,555.40
    schedule = build("200000", "0.0435", 36, Method.EQUAL_PRINCIPAL)
    first, last = schedule.periods[0], schedule.periods[-1]
    assert figures(first, "principal interest payment") == ("5555.56", "725.00", "6280.56")
    # 5,555.40 × 0.003625 = 20.138… → 20.14
    assert (last.principal, last.interest, last.payment) == (Decimal("5555.40"), Decimal("20.14"), Decimal("5575.54"))
    # = 200,000 × 0.003625 × 37 / 2 exactly
    assert schedule.total_interest == Decimal("13412.50")
    assert schedule.total_payment == Decimal("213412.50")
    assert rows(schedule) == reference_rows("200000", "0.0435", 36, Method.EQUAL_PRINCIPAL)


def test_interest_only_pays_the_principal_with_the_last_interest():
    # 50,000 × 0.003625 = 181.25 a month; 12 × 181.25 = 2,175.00
    schedule = build("50000", "0.0435", 12, Method.INTEREST_ONLY)
    assert [p.payment for p in schedule.periods[:-1]] == [Decimal("181.25")] * 11
    assert all(p.principal == 0 and p.remaining == Decimal("50000.00") for p in schedule.periods[:-1])
    last = schedule.periods[-1]
    assert figures(last) == ("50000.00", "181.25", "50181.25", "0.00")
    assert schedule.total_interest == Decimal("2175.00")
    assert schedule.apr == Decimal("0.0435")


def test_bullet_is_one_payment_with_interest_by_the_month():
    # 12,345.67 × 0.0435 / 12 × 5 = 223.7652… → 223.77
    schedule = build("12345.67", "0.0435", 5, Method.BULLET)
    assert len(schedule.periods) == 1
    period = schedule.periods[0]
    assert (period.number, period.due_date) == (1, dt.date(2026, 6, 15))
    assert figures(period) == ("12345.67", "223.77", "12569.44", "0.00")
    # Simple interest annualised: 223.77 / 12,345.67 × 12 / 5 = 0.04350… (not compounded monthly).
    assert schedule.apr == Decimal("0.0435")
    # 50,000 × 0.0435 × 12 / 12 = 2,175.00, due a year after the start.
    assert build("50000", "0.0435", 12, Method.BULLET).periods[0].payment == Decimal("52175.00")


def test_a_loan_that_rounding_pays_off_early_stops_there():
    # 1.00 over 200 months: round(1.00 / 200) = round(0.005) = 0.01 a month, paid off in 100.
    schedule = build("1.00", "0", 200, Method.EQUAL_PRINCIPAL)
    assert len(schedule.periods) == 100
    assert (schedule.periods[-1].principal, schedule.periods[-1].remaining) == (Decimal("0.01"), Decimal("0.00"))


# --- an irregular first period ---


def test_first_period_days_charges_period_one_by_the_day():
    # 50,000 × 0.0435 / 360 × 45 = 271.875 → 271.88; principal 4,265.50 − 271.88 = 3,993.62
    schedule = build("50000", "0.0435", 12, Method.EQUAL_INSTALLMENT, first_period_days=45)
    first, second = schedule.periods[0], schedule.periods[1]
    assert figures(first, "principal interest payment") == ("3993.62", "271.88", "4265.50")
    # period 2 is a month again: 46,006.38 × 0.003625 = 166.773… → 166.77
    assert (second.interest, second.payment) == (Decimal("166.77"), Decimal("4265.50"))
    assert sum(p.principal for p in schedule.periods) == Decimal("50000.00")
    assert schedule.first_period_days == 45


def test_first_period_interest_above_the_payment_repays_no_principal():
    # 10,000 at 24% over 12: payment 10,000 × 0.02 × 1.02^12 / (1.02^12 − 1) = 945.5959… → 945.60;
    # 150 days of interest 10,000 × 0.24 / 360 × 150 = 1,000.00 exceeds it: principal 0.
    schedule = build("10000", "0.24", 12, Method.EQUAL_INSTALLMENT, first_period_days=150)
    first = schedule.periods[0]
    assert figures(first) == ("0.00", "1000.00", "1000.00", "10000.00")
    assert schedule.periods[1].payment == Decimal("945.60")


def test_an_exact_half_fen_rounds_up_though_the_monthly_rate_does_not_terminate():
    # 1,000 × 0.0163 × 3 / 12 = 4.075 exactly → 4.08; with the rate divided first,
    # 1,000 × 0.00135833… × 3 = 4.07499… would round down (hypothesis found this one).
    assert build("1000", "0.0163", 3, Method.BULLET).total_interest == Decimal("4.08")
    # A month on 3,000: 3,000 × 0.0163 / 12 = 4.075 → 4.08; 90 days on 1,000: 1,000 × 0.0163 × 90 / 360 = 4.075.
    assert build("3000", "0.0163", 3, Method.INTEREST_ONLY).periods[0].interest == Decimal("4.08")
    assert interest_to_the_day(principal=Decimal("1000"), annual_rate=Decimal("0.0163"), days=90) == Decimal("4.08")


def test_interest_to_the_day():
    # 55,456.54 × 0.049 / 360 × 20 = 150.965025… → 150.97
    assert interest_to_the_day(principal=Decimal("55456.54"), annual_rate=Decimal("0.049"), days=20) == Decimal(
        "150.97"
    )
    # 100,000 × 0.0435 / 360 = 12.0833… → 12.08
    assert interest_to_the_day(principal=Decimal("100000"), annual_rate=Decimal("0.0435"), days=1) == Decimal("12.08")
    assert interest_to_the_day(principal=Decimal("100000"), annual_rate=Decimal("0.0435"), days=0) == Decimal("0.00")


# --- due dates ---


def test_due_dates_clamp_to_month_end_and_are_counted_from_the_start():
    start = dt.date(2026, 1, 31)
    assert [due_date(start, n) for n in range(1, 6)] == [
        dt.date(2026, 2, 28),
        dt.date(2026, 3, 31),
        dt.date(2026, 4, 30),
        dt.date(2026, 5, 31),
        dt.date(2026, 6, 30),
    ]
    schedule = build("6000", "0.06", 4, Method.EQUAL_PRINCIPAL, start=start)
    assert [p.due_date for p in schedule.periods] == [
        dt.date(2026, 2, 28),
        dt.date(2026, 3, 31),
        dt.date(2026, 4, 30),
        dt.date(2026, 5, 31),
    ]


def test_due_dates_cross_a_leap_february():
    start = dt.date(2027, 11, 30)
    assert [due_date(start, n) for n in (1, 2, 3, 4, 15)] == [
        dt.date(2027, 12, 30),
        dt.date(2028, 1, 30),
        dt.date(2028, 2, 29),
        dt.date(2028, 3, 30),
        dt.date(2029, 2, 28),
    ]
    assert due_date(dt.date(2028, 2, 29), 12) == dt.date(2029, 2, 28)
    assert due_date(dt.date(2028, 2, 29), 48) == dt.date(2032, 2, 29)


# --- validation ---


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"principal": Decimal("0")}, "本金必须大于 0 / principal must be positive"),
        ({"principal": Decimal("-100")}, "本金必须大于 0"),
        ({"principal": Decimal("100.001")}, "本金最多两位小数"),
        ({"principal": 100.5}, "本金必须大于 0"),  # a float is refused
        ({"principal": Decimal("NaN")}, "本金必须大于 0"),
        ({"annual_rate": Decimal("-0.01")}, "年利率必须在 0 到 1 之间"),
        ({"annual_rate": Decimal("1")}, "年利率必须在 0 到 1 之间"),
        ({"months": 0}, "期数必须在 1 到 360 个月之间"),
        ({"months": 361}, "期数必须在 1 到 360 个月之间"),
        ({"method": "balloon"}, "未知的还款方式 balloon / unknown repayment method"),
        ({"first_period_days": 0}, "首期天数必须为正整数"),
    ],
)
def test_bad_inputs_raise_value_error_in_chinese_and_english(overrides, message):
    arguments = {
        "principal": Decimal("10000"),
        "annual_rate": Decimal("0.05"),
        "months": 12,
        "method": Method.EQUAL_INSTALLMENT,
        "start": JAN_15,
    } | overrides
    with pytest.raises(ValueError, match=message):
        schedule_build(**arguments)


def test_methods_accept_their_codes_and_have_labels():
    assert build("1000", "0.05", 3, "equal_principal").method is Method.EQUAL_PRINCIPAL
    assert METHOD_LABELS[Method.EQUAL_INSTALLMENT] == ("等额本息", "Equal installment")
    assert set(METHOD_LABELS) == set(Method)


def test_as_dict_is_json_ready():
    data = build("1000", "0.0435", 2, Method.EQUAL_INSTALLMENT, start=dt.date(2026, 1, 31)).as_dict()
    # 1,000 × 0.003625 = 3.625 → 3.63; payment 1,000 × r × g / (g − 1) = 502.724… → 502.72
    assert data["periods"][0] == {
        "number": 1,
        "due_date": "2026-02-28",
        "principal": "499.09",
        "interest": "3.63",
        "payment": "502.72",
        "remaining": "500.91",
    }
    assert data["periods"][1]["due_date"] == "2026-03-31"
    assert (data["principal"], data["annual_rate"], data["start"]) == ("1000.00", "0.0435", "2026-01-31")
    assert (data["total_interest"], data["total_payment"], data["method"]) == ("5.45", "1005.45", "equal_installment")
    # One fen of rounding on 1,000 yuan over two months tips the APR's fourth place (see Schedule.apr).
    assert data["apr"] == "0.0436"


# --- prepayment: 100,000 at 4.9% over 12 from 2026-01-15; after the 3rd installment 75,456.54
# remains; 20,000 prepaid on 2026-04-15 leaves 55,456.54 with 9 periods from 2026-05-15. ---

PREPAID = {
    "remaining_principal": Decimal("55456.54"),
    "annual_rate": Decimal("0.049"),
    "method": Method.EQUAL_INSTALLMENT,
    "next_due": dt.date(2026, 5, 15),
    "remaining_periods": 9,
    "previous_payment": Decimal("8556.17"),
    "previous_period_principal": None,
    "anchor_start": JAN_15,
    "first_period_days": None,
}


def test_the_prepayment_example_starts_where_the_original_schedule_is():
    original = build("100000", "0.049", 12, Method.EQUAL_INSTALLMENT)
    assert original.periods[2].remaining - Decimal("20000") == PREPAID["remaining_principal"]


def test_prepayment_equal_installment_smaller_installment():
    # New level payment over 9: 55,456.54 × r × (1 + r)^9 / ((1 + r)^9 − 1) = 6,288.3254… → 6,288.33
    # row 1: 55,456.54 × 0.0040833… = 226.4475… → 226.45; principal 6,061.88
    schedule = schedule_after_prepayment(**PREPAID, mode=PrepaymentMode.SMALLER_INSTALLMENT)
    assert len(schedule.periods) == 9
    assert [p.number for p in schedule.periods] == list(range(1, 10))
    assert [p.due_date for p in schedule.periods] == [due_date(JAN_15, k) for k in range(4, 13)]
    first, last = schedule.periods[0], schedule.periods[-1]
    assert figures(first) == ("6061.88", "226.45", "6288.33", "49394.66")
    assert figures(last, "due_date principal interest payment") == ("2027-01-15", "6262.72", "25.57", "6288.29")
    assert schedule.total_interest == Decimal("1138.39")
    assert schedule.start == dt.date(2026, 4, 15)
    assert schedule.apr == Decimal("0.0490")


def test_prepayment_equal_installment_shorter_term():
    # Keep 8,556.17 a month: 7 periods instead of 9; the 7th pays the 4,965.22 left
    # + 4,965.22 × 0.0040833… = 20.2746… → 20.27.
    schedule = schedule_after_prepayment(**PREPAID, mode=PrepaymentMode.SHORTER_TERM)
    assert len(schedule.periods) == 7
    assert {p.payment for p in schedule.periods[:-1]} == {Decimal("8556.17")}
    first, last = schedule.periods[0], schedule.periods[-1]
    assert figures(first, "principal interest remaining") == ("8329.72", "226.45", "47126.82")
    assert (last.number, last.due_date) == (7, dt.date(2026, 11, 15))
    assert figures(last) == ("4965.22", "20.27", "4985.49", "0.00")
    assert schedule.total_interest == Decimal("865.97")  # against 1,138.39 for the smaller installment


def test_prepayment_in_mid_period_charges_the_first_period_by_the_day():
    # Prepaid 20 days before 2026-05-15: 55,456.54 × 0.049 / 360 × 20 = 150.965… → 150.97
    arguments = PREPAID | {"first_period_days": 20}
    shorter = schedule_after_prepayment(**arguments, mode=PrepaymentMode.SHORTER_TERM)
    assert (shorter.periods[0].principal, shorter.periods[0].interest) == (Decimal("8405.20"), Decimal("150.97"))
    assert (len(shorter.periods), shorter.total_interest) == (7, Decimal("788.63"))
    smaller = schedule_after_prepayment(**arguments, mode=PrepaymentMode.SMALLER_INSTALLMENT)
    assert (smaller.periods[0].principal, smaller.periods[0].payment) == (Decimal("6137.36"), Decimal("6288.33"))
    assert (len(smaller.periods), smaller.total_interest) == (9, Decimal("1060.43"))


# 120,000 at 6% over 12 equal principal from 2026-01-31 (10,000 a month, r = 0.005); after 4 periods
# 80,000 remains; 30,000 prepaid leaves 50,000 with 8 periods from due_date(2026-01-31, 5) = 2026-06-30.
PREPAID_EQUAL_PRINCIPAL = {
    "remaining_principal": Decimal("50000"),
    "annual_rate": Decimal("0.06"),
    "method": Method.EQUAL_PRINCIPAL,
    "next_due": dt.date(2026, 6, 30),
    "remaining_periods": 8,
    "previous_payment": None,
    "previous_period_principal": Decimal("10000"),
    "anchor_start": dt.date(2026, 1, 31),
    "first_period_days": None,
}


def test_prepayment_equal_principal_smaller_installment():
    # 50,000 / 8 = 6,250 a period; interest 250.00, 218.75, 187.50, … 31.25 (remaining × 0.005)
    schedule = schedule_after_prepayment(**PREPAID_EQUAL_PRINCIPAL, mode=PrepaymentMode.SMALLER_INSTALLMENT)
    assert [p.principal for p in schedule.periods] == [Decimal("6250.00")] * 8
    assert [p.interest for p in schedule.periods] == [
        Decimal(x) for x in ("250.00", "218.75", "187.50", "156.25", "125.00", "93.75", "62.50", "31.25")
    ]
    assert [p.due_date for p in schedule.periods] == [
        dt.date(2026, 6, 30),
        dt.date(2026, 7, 31),
        dt.date(2026, 8, 31),
        dt.date(2026, 9, 30),
        dt.date(2026, 10, 31),
        dt.date(2026, 11, 30),
        dt.date(2026, 12, 31),
        dt.date(2027, 1, 31),
    ]
    assert schedule.total_interest == Decimal("1125.00")
    assert schedule.start == dt.date(2026, 5, 31)


def test_prepayment_equal_principal_shorter_term():
    # Keep 10,000 a period: 5 periods, interest 250, 200, 150, 100, 50.
    schedule = schedule_after_prepayment(**PREPAID_EQUAL_PRINCIPAL, mode=PrepaymentMode.SHORTER_TERM)
    assert [(p.number, p.due_date, p.principal, p.interest, p.payment) for p in schedule.periods] == [
        (1, dt.date(2026, 6, 30), Decimal("10000.00"), Decimal("250.00"), Decimal("10250.00")),
        (2, dt.date(2026, 7, 31), Decimal("10000.00"), Decimal("200.00"), Decimal("10200.00")),
        (3, dt.date(2026, 8, 31), Decimal("10000.00"), Decimal("150.00"), Decimal("10150.00")),
        (4, dt.date(2026, 9, 30), Decimal("10000.00"), Decimal("100.00"), Decimal("10100.00")),
        (5, dt.date(2026, 10, 31), Decimal("10000.00"), Decimal("50.00"), Decimal("10050.00")),
    ]
    assert schedule.total_interest == Decimal("750.00")
    assert schedule.apr == Decimal("0.0600")


def test_prepayment_interest_only_and_bullet_are_the_same_in_both_modes():
    # Interest only, 30,000 left with 7 periods: 30,000 × 0.003625 = 108.75 a month.
    interest_only = {
        "remaining_principal": Decimal("30000"),
        "annual_rate": Decimal("0.0435"),
        "method": Method.INTEREST_ONLY,
        "next_due": dt.date(2026, 7, 15),
        "remaining_periods": 7,
        "previous_payment": None,
        "previous_period_principal": None,
        "anchor_start": JAN_15,
        "first_period_days": None,
    }
    shorter, smaller = (schedule_after_prepayment(**interest_only, mode=mode) for mode in PrepaymentMode)
    assert shorter == smaller
    assert [p.interest for p in shorter.periods] == [Decimal("108.75")] * 7
    assert shorter.periods[-1].payment == Decimal("30108.75")
    assert shorter.periods[-1].due_date == dt.date(2027, 1, 15)

    # Bullet: 20,000 of 50,000 prepaid 180 days before maturity; 30,000 × 0.0435 / 360 × 180 = 652.50.
    bullet = interest_only | {
        "method": Method.BULLET,
        "next_due": dt.date(2027, 1, 15),
        "remaining_periods": 1,
        "first_period_days": 180,
    }
    shorter, smaller = (schedule_after_prepayment(**bullet, mode=mode) for mode in PrepaymentMode)
    assert shorter == smaller
    assert (shorter.periods[0].interest, shorter.periods[0].payment) == (Decimal("652.50"), Decimal("30652.50"))


def test_prepayment_rejects_dates_off_the_anchor_and_missing_kept_amounts():
    with pytest.raises(ValueError, match="不是 2026-01-15 起贷款的还款日"):
        schedule_after_prepayment(**PREPAID | {"next_due": dt.date(2026, 5, 16)}, mode=PrepaymentMode.SHORTER_TERM)
    with pytest.raises(ValueError, match="缩短期限需要上期月供 / shorter_term needs previous_payment"):
        schedule_after_prepayment(**PREPAID | {"previous_payment": None}, mode=PrepaymentMode.SHORTER_TERM)
    with pytest.raises(ValueError, match="未知的提前还款方式"):
        schedule_after_prepayment(**PREPAID, mode="sooner")


# --- every method, any principal ---


@settings(max_examples=300, deadline=None)
@example(fen=100_000, rate_bp=163, months=3, method=Method.BULLET)  # 4.075 exactly: see the half-fen test
@given(
    fen=st.integers(min_value=100_000, max_value=20_000_000),
    rate_bp=st.integers(min_value=0, max_value=2400),  # 0 … 24% in hundredths of a percent
    months=st.sampled_from([3, 6, 9, 12, 24, 36]),
    method=st.sampled_from(list(Method)),
)
def test_every_schedule_repays_exactly_the_principal(fen, rate_bp, months, method):
    principal, annual_rate = Decimal(fen) / 100, Decimal(rate_bp) / 10000
    schedule = schedule_build(principal=principal, annual_rate=annual_rate, months=months, method=method, start=JAN_15)

    assert sum(p.principal for p in schedule.periods) == principal
    assert schedule.periods[-1].remaining == 0
    assert all(p.remaining >= 0 and p.principal >= 0 and p.interest >= 0 for p in schedule.periods)
    assert all(p.payment == p.principal + p.interest for p in schedule.periods)
    assert len(schedule.periods) == (1 if method == Method.BULLET else months)
    assert schedule.total_payment == principal + schedule.total_interest
    assert rows(schedule) == reference_rows(str(principal), str(annual_rate), months, method)
    # Within a unit of the fourth place always; exact from 10,000 yuan up (see Schedule.apr).
    assert abs(schedule.apr - annual_rate) <= Decimal("0.0001")
    if principal >= 10000:
        assert schedule.apr == annual_rate
