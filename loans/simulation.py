"""The what-if sandbox of a credit policy: last night's farmers sized by the active policy and by
a draft, side by side, without writing anything.

The population is every farmer assessed on the business date (``CreditAssessment`` rows of
that date: the farmers the consent gate admitted that night), with the features stored on
their assessment — so no government data is read again and nothing goes through the gate.
Both policies are applied with :func:`loans.nightly.assess` and the **active scorecard**, so
the two sides differ by the policy alone. What the night read besides the features comes from
the assessment and the line as they stand now:

* the court's list and an overdue loan — the assessment's exclusions ``dishonest_debtor`` and
  ``overdue``;
* the outstanding principal a line may not fall below — the farmer's line now.

Figures per side: coverage (farmers with a line ÷ farmers assessed), the total of lines, per
grade the farmers graded, lines granted, their amount and expected loss (Σ PD × line, PD as
the scorecard gives it), and the farmers whose line would move up or down.

Cost: the read is one binary COPY of 15 float columns (~140 bytes a farmer); scoring and
sizing both sides of 300,000 synthetic farmers measured 4 s and 140 MB at peak (tracemalloc)
on this machine — the page computes it on every view of a draft, so a county of a million
farmers waits about 15 s for it.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
from django.db import connection
from django.db.models import Max

from loans.features import EXTRA_COLUMNS, _parse_binary
from loans.models import AssessmentRun, CreditAssessment, CreditPolicy, Scorecard
from loans.nightly import assess
from loans.policy import policy_active
from loans.scorecard import FEATURE_NAMES
from loans.scorecards import scorecard_active
from loans.sizing import NO_GRADE, NO_LINE, SizingPolicy

FEN = Decimal("0.01")
RATIO_PLACES = Decimal("0.0001")

# The columns assess() reads besides the features, from the stored assessment and the line now.
_EXTRA_SQL = {
    "dishonest_listed": "('dishonest_debtor' = ANY(a.exclusions))::int",
    "line_exists": "(l.id IS NOT NULL)::int",
    "line_amount_fen": "COALESCE(l.amount * 100, -1)",
    "outstanding_fen": "COALESCE(l.outstanding_principal * 100, 0)",
    "line_active": "COALESCE(l.status = 'active', false)::int",
    "overdue": "('overdue' = ANY(a.exclusions))::int",
}


def simulation_business_date() -> dt.date | None:
    """The newest business date with assessments: the night the sandbox replays."""
    return CreditAssessment.objects.aggregate(day=Max("business_date"))["day"]


def simulation_columns(*, business_date: dt.date) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(farmer ids ascending, {column: float array}) of the farmers assessed on
    ``business_date``: the stored features and what :func:`loans.nightly.assess` reads besides
    them (see the module docstring). A missing feature is NaN, as on the night."""
    names = FEATURE_NAMES + EXTRA_COLUMNS
    expressions = {
        **{name: f"(a.features->>'{name}')::float8" for name in FEATURE_NAMES},
        **_EXTRA_SQL,
    }
    selected = ",\n".join(f"COALESCE(({expressions[name]})::float8, 'NaN')" for name in names)
    sql = f"""
        COPY (
            SELECT a.farmer_id::int8, {selected}
              FROM {CreditAssessment._meta.db_table} a
              LEFT JOIN loans_creditline l ON l.farmer_id = a.farmer_id
             WHERE a.business_date = %(day)s
             ORDER BY a.farmer_id
        ) TO STDOUT (FORMAT binary)
    """
    with connection.cursor() as cursor:
        # COPY takes no bind parameters: psycopg merges them client-side.
        statement = cursor.cursor.mogrify(sql, {"day": business_date})
        buffer = bytearray()
        with cursor.cursor.copy(statement) as copy:
            for block in copy:
                buffer += block
    return _parse_binary(bytes(buffer), names)


def _scorecard_for(business_date: dt.date) -> Scorecard | None:
    active = scorecard_active()
    if active is not None:
        return active
    run = AssessmentRun.objects.select_related("scorecard").filter(business_date=business_date).first()
    return run.scorecard if run else None


def policy_simulate(*, draft: CreditPolicy, business_date: dt.date | None = None) -> dict:
    """Size ``business_date``'s assessed farmers (default: the newest night) by the active
    policy and by ``draft`` (any policy, saved or not; nothing is written).

    Returns ``{"business_date", "assessed", "scorecard_version", "active", "draft", "moves",
    "grades"}``: ``active``/``draft`` are :func:`_side` figures (``active`` None when the county
    has no policy in force), ``moves`` counts farmers whose line goes up, down, is gained, lost
    or stays (None without an active policy), ``grades`` the grade codes of both sides in order.
    Money is Decimal yuan; coverage a Decimal ratio to 4 places."""
    business_date = business_date or simulation_business_date()
    empty = {
        "business_date": business_date, "assessed": 0, "scorecard_version": None,
        "active": None, "draft": None, "moves": None, "grades": [],
    }
    if business_date is None:
        return empty
    scorecard = _scorecard_for(business_date)
    if scorecard is None:
        return empty
    _farmer_ids, columns = simulation_columns(business_date=business_date)
    assessed = len(columns["age"])
    active_policy = policy_active()
    draft_assessed = assess(policy=draft, scorecard=scorecard, columns=columns)
    draft_side = _side(draft, draft_assessed)
    result = {**empty, "assessed": assessed, "scorecard_version": scorecard.version, "draft": draft_side}
    sides = [draft_side]
    if active_policy is not None:
        active_assessed = assess(policy=active_policy, scorecard=scorecard, columns=columns)
        result["active"] = _side(active_policy, active_assessed)
        result["moves"] = _moves(active_assessed["line_fen"], draft_assessed["line_fen"])
        sides.insert(0, result["active"])
    codes: list[str] = []
    for side in sides:
        codes += [grade["grade"] for grade in side["grades"] if grade["grade"] not in codes]
    result["grades"] = codes
    return result


def _side(policy: CreditPolicy, assessed: dict[str, np.ndarray]) -> dict:
    """The figures of one policy over the assessed farmers."""
    sizing = SizingPolicy.of(policy)
    line = assessed["line_fen"]
    lined = line != NO_LINE
    grade = assessed["grade"]
    pd_micro = assessed["pd_micro"].astype(np.int64)
    size = len(line)
    grades = []
    for index, code in enumerate(sizing.grade_codes):
        in_grade = grade == index
        granted = in_grade & lined
        grades.append(
            {
                "grade": code,
                "farmers": int(in_grade.sum()),
                "lined": int(granted.sum()),
                "amount": _yuan(_exact_sum(line[granted])),
                "expected_loss": _expected_loss(pd_micro[granted], line[granted]),
            }
        )
    ungraded = int((grade == NO_GRADE).sum())
    lined_count = int(lined.sum())
    return {
        "policy_version": policy.version,
        "lined": lined_count,
        "coverage": _ratio(lined_count, size),
        "total": _yuan(_exact_sum(line[lined])),
        "average": _yuan(_exact_sum(line[lined]) // lined_count) if lined_count else None,
        "expected_loss": _expected_loss(pd_micro[lined], line[lined]),
        "grades": grades,
        "ungraded": ungraded,
    }


def _moves(active_line: np.ndarray, draft_line: np.ndarray) -> dict[str, int]:
    before = np.where(active_line == NO_LINE, 0, active_line)
    after = np.where(draft_line == NO_LINE, 0, draft_line)
    return {
        "up": int((after > before).sum()),
        "down": int((after < before).sum()),
        "unchanged": int((after == before).sum()),
        "gained": int(((active_line == NO_LINE) & (draft_line != NO_LINE)).sum()),
        "lost": int(((active_line != NO_LINE) & (draft_line == NO_LINE)).sum()),
    }


def _exact_sum(values: np.ndarray) -> int:
    # Python integers: a county's total in fen, or Σ PD-millionths × fen, can pass int64.
    return sum(int(value) for value in values.tolist())


def _expected_loss(pd_micro: np.ndarray, line_fen: np.ndarray) -> Decimal:
    """Σ PD × line in yuan, exact until the one rounding to the fen (half up)."""
    products = [int(pd) * int(fen) for pd, fen in zip(pd_micro.tolist(), line_fen.tolist(), strict=True)]
    return (Decimal(sum(products)) / Decimal(10**8)).quantize(FEN, rounding=ROUND_HALF_UP)


def _yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(FEN)


def _ratio(numerator: int, denominator: int) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(RATIO_PLACES, rounding=ROUND_HALF_UP)
