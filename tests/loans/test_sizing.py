"""Line sizing: PD → grade, income proxy × multiplier, caps, rounding down, the minimum, the
outstanding-principal floor — hand-computed amounts, exact to the fen, vectorised."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from loans.models import CreditPolicy
from loans.sizing import (
    NO_GRADE,
    NO_LINE,
    SizingPolicy,
    area_centimu,
    fen_to_decimal,
    grade_index,
    line_fen,
    pd_millionths,
)

GRADES = [
    {"grade": "A", "max_pd": "0.01", "multiplier": "1.2", "cap": "200000.00", "annual_rate": "0.0435"},
    {"grade": "B", "max_pd": "0.03", "multiplier": "1", "cap": "50000.00", "annual_rate": "0.06"},
    {"grade": "C", "max_pd": "0.08", "multiplier": "0.45", "cap": "10000.00", "annual_rate": "0.08"},
    {"grade": "D", "max_pd": "1", "multiplier": "0", "cap": "0.00", "annual_rate": "0.12"},
]


def sizing(**overrides) -> SizingPolicy:
    values = {
        "grades": GRADES, "min_line": Decimal("1000.00"), "max_line": Decimal("200000.00"),
        "rounding_unit": Decimal("100.00"), "base_income": Decimal("345.67"), "income_per_mu": Decimal("1200.00"),
    } | overrides
    return SizingPolicy.of(CreditPolicy(**values))  # unsaved: only its numbers are read


def lines(policy: SizingPolicy, rows: list[tuple[int, float, str]]) -> list[Decimal | None]:
    """(grade index, area in mu, outstanding principal) per farmer → lines in yuan."""
    grade = np.asarray([row[0] for row in rows])
    area = np.asarray([row[1] for row in rows], dtype=float)
    outstanding = np.asarray([int(Decimal(row[2]) * 100) for row in rows], dtype=np.int64)
    fen = line_fen(policy, grade=grade, area_cmu=area_centimu(area), outstanding_fen=outstanding)
    return [None if value == NO_LINE else fen_to_decimal(value) for value in fen]


def test_income_proxy_times_multiplier_is_rounded_down_to_the_unit():
    # 345.67 + 1,200 × 10 = 12,345.67 → × 1 (B) → 12,300.00;  × 1.2 (A) = 14,814.804 → 14,800.00;
    # × 0.45 (C) = 5,555.5515 → 5,500.00.
    assert lines(sizing(), [(1, 10.0, "0"), (0, 10.0, "0"), (2, 10.0, "0")]) == [
        Decimal("12300.00"), Decimal("14800.00"), Decimal("5500.00"),
    ]


def test_amounts_exactly_on_a_unit_are_kept_where_floats_would_lose_one():
    # 1,500 × 8.2 = 12,300 exactly; in binary floating point 12,299.999999999998.
    assert 1500 * 8.2 < 12300
    policy = sizing(base_income=Decimal("0.00"), income_per_mu=Decimal("1500.00"))
    assert lines(policy, [(1, 8.2, "0"), (1, 4.6, "0"), (1, 16.4, "0")]) == [
        Decimal("12300.00"), Decimal("6900.00"), Decimal("24600.00"),
    ]


def test_caps_the_minimum_and_the_maximum():
    policy = sizing(base_income=Decimal("20000.00"), income_per_mu=Decimal("1500.00"))
    assert lines(policy, [
        (1, 30.0, "0"),     # B: 20,000 + 45,000 = 65,000 → B's cap 50,000.00
        (2, 0.0, "0"),      # C: 20,000 × 0.45 = 9,000.00 (under C's cap of 10,000)
        (2, 100.0, "0"),    # C: 170,000 × 0.45 = 76,500 → cap 10,000.00
        (0, 500.0, "0"),    # A: 770,000 × 1.2 = 924,000 → max_line 200,000.00 (A's cap too)
        (0, 10**9, "0"),    # an absurd area still ends at the maximum, without overflow
    ]) == [Decimal("50000.00"), Decimal("9000.00"), Decimal("10000.00"), Decimal("200000.00"), Decimal("200000.00")]
    low = sizing(base_income=Decimal("1000.00"), income_per_mu=Decimal("100.00"))
    # C: (1,000 + 100 × 2.5) × 0.45 = 562.50 → 500 → raised to the minimum 1,000.00.
    assert lines(low, [(2, 2.5, "0")]) == [Decimal("1000.00")]
    tighter = sizing(max_line=Decimal("12000.00"))
    assert lines(tighter, [(1, 10.0, "0"), (0, 100.0, "0")]) == [Decimal("12000.00"), Decimal("12000.00")]


def test_a_lower_line_never_goes_below_the_outstanding_principal():
    # The new line would be 12,300.00; the farmer owes 15,432.10 → the line is 15,432.10
    # (nothing left to draw); owing less than the line changes nothing.
    assert lines(sizing(), [(1, 10.0, "15432.10"), (1, 10.0, "12299.99"), (1, 10.0, "12300.01")]) == [
        Decimal("15432.10"), Decimal("12300.00"), Decimal("12300.01"),
    ]


def test_no_line_for_a_zero_multiplier_or_no_grade_and_missing_area_counts_as_none():
    policy = sizing()
    assert lines(policy, [(3, 50.0, "0"), (NO_GRADE, 50.0, "0"), (1, float("nan"), "0"), (1, -3.0, "0")]) == [
        None, None, Decimal("1000.00"), Decimal("1000.00"),  # 345.67 → 300 → minimum 1,000
    ]
    # ... and a line that exists is still at least the debt, a missing one stays missing.
    assert lines(policy, [(3, 50.0, "9999.00")]) == [None]


def test_grades_follow_the_pd_as_stored_with_six_places():
    policy = sizing()
    pd = np.asarray([0.0, 0.01, 0.0100004, 0.0100006, 0.03, 0.0300001, 0.08, 0.5, 1.0])
    micro = pd_millionths(pd)
    assert micro.tolist() == [0, 10000, 10000, 10001, 30000, 30000, 80000, 500000, 1000000]
    assert [policy.grade_codes[i] for i in grade_index(policy, micro)] == ["A", "A", "A", "B", "B", "B", "C", "D", "D"]
    # Without a catch-all grade, a PD above every bound gets none.
    no_catch_all = sizing(grades=GRADES[:3])
    assert grade_index(no_catch_all, pd_millionths(np.asarray([0.08, 0.09]))).tolist() == [2, NO_GRADE]


def test_decimal_results_and_policy_checks():
    assert fen_to_decimal(1234567) == Decimal("12345.67")
    assert str(fen_to_decimal(100)) == "1.00"
    assert sizing().annual_rates == [Decimal("0.0435"), Decimal("0.06"), Decimal("0.08"), Decimal("0.12")]
    with pytest.raises(ValueError, match="non-decreasing"):
        sizing(grades=[GRADES[1], GRADES[0]])
    with pytest.raises(ValueError, match="decimal places"):
        sizing(grades=[{**GRADES[0], "multiplier": "1.23456"}])
