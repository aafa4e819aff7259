"""The what-if sandbox's figures (loans.simulation.policy_simulate) against the same figures
computed here independently — plain Python and Decimal, bin by bin, farmer by farmer — for a
handful of farmers whose stored features put them in every grade and every exclusion."""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

import pytest

from loans.models import CreditAssessment, CreditLine
from loans.policy import policy_create_draft
from loans.simulation import policy_simulate, simulation_business_date
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import GRADES, SPEC, activate_policy, activate_scorecard

DAY = dt.date(2026, 11, 27)
FEN = Decimal("0.01")

# The draft: C's multiplier up (0.45 → 0.6), B's cap down (50,000 → 30,000), farmers up to 70.
DRAFT_GRADES = [
    {**GRADES[0]},
    {**GRADES[1], "cap": "30000.00"},
    {**GRADES[2], "multiplier": "0.6"},
    {**GRADES[3]},
]
NO_RECORDS = {
    "operated_area_mu": 0, "insured_share": 0, "subsidy_yuan": 0, "social_insurance_years": 0, "organized": 0,
    "poverty_monitored": 0, "repaid_loans": 0, "max_days_past_due": 0, "age": 40,
}
# key → (features, exclusions, outstanding principal on the farmer's line or None for no line)
FARMERS = {
    "large": ({**NO_RECORDS, "operated_area_mu": 30, "insured_share": 0.8, "subsidy_yuan": 600, "social_insurance_years": 10,
               "organized": 1, "repaid_loans": 2}, [], None),
    "plain": (NO_RECORDS, [], None),
    "old": ({**NO_RECORDS, "age": 70}, ["age"], None),
    "listed": (NO_RECORDS, ["dishonest_debtor"], None),
    "middle": ({**NO_RECORDS, "operated_area_mu": 10}, [], None),
    "owing": (NO_RECORDS, [], Decimal("12000.00")),
    "overdue": ({**NO_RECORDS, "operated_area_mu": 30}, ["overdue"], Decimal("5000.00")),
    "missing_area": ({**NO_RECORDS, "operated_area_mu": None}, [], None),
}


def _score(features: dict) -> int:
    total = SPEC["intercept_points"]
    for spec in SPEC["features"]:
        value = features[spec["name"]]
        if value is None:
            total += spec["missing_points"]
            continue
        index = sum(1 for edge in spec["edges"] if value >= edge)  # a value on an edge is in the upper bin
        total += spec["points"][index]
    return round(total)


def _pd(score: int) -> Decimal:
    factor = 20 / math.log(2)
    offset = 600 - factor * math.log(50)
    return Decimal(str(1 / (1 + math.exp((score - offset) / factor)))).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _line(policy_values: dict, grades: list[dict], features: dict, exclusions: list[str], outstanding) -> tuple:
    """(grade code, PD, line in yuan or None) by DESIGN.md's rule, written out."""
    pd = _pd(_score(features))
    grade = next(row for row in grades if pd <= Decimal(row["max_pd"]))
    age = features["age"]
    if not policy_values["min_age"] <= age <= policy_values["max_age"] or "dishonest_debtor" in exclusions or "overdue" in exclusions:
        return grade["grade"], pd, None
    if Decimal(grade["multiplier"]) == 0:
        return grade["grade"], pd, None
    income = Decimal(policy_values["base_income"]) + Decimal(policy_values["income_per_mu"]) * Decimal(str(features["operated_area_mu"] or 0))
    bound = min(income * Decimal(grade["multiplier"]), Decimal(grade["cap"]), Decimal(policy_values["max_line"]))
    unit = Decimal(policy_values["rounding_unit"])
    line = (bound / unit).to_integral_value(rounding=ROUND_FLOOR) * unit
    line = max(line, Decimal(policy_values["min_line"]), outstanding or Decimal(0))
    return grade["grade"], pd, line.quantize(FEN)


def _figures(policy_values: dict, grades: list[dict]) -> dict:
    results = {key: _line(policy_values, grades, *spec) for key, spec in FARMERS.items()}
    lined = {key: result for key, result in results.items() if result[2] is not None}
    per_grade = {}
    for row in grades:
        code = row["grade"]
        in_grade = [result for result in results.values() if result[0] == code]
        granted = [result for result in in_grade if result[2] is not None]
        per_grade[code] = {
            "grade": code, "farmers": len(in_grade), "lined": len(granted),
            "amount": sum((line for _g, _pd, line in granted), Decimal("0.00")),
            "expected_loss": sum((pd * line for _g, pd, line in granted), Decimal(0)).quantize(FEN, rounding=ROUND_HALF_UP),
        }
    total = sum((result[2] for result in lined.values()), Decimal("0.00"))
    return {
        "lines": {key: result[2] for key, result in results.items()},
        "lined": len(lined),
        "coverage": (Decimal(len(lined)) / len(FARMERS)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP),
        "total": total,
        "expected_loss": sum((pd * line for _g, pd, line in lined.values()), Decimal(0)).quantize(FEN, rounding=ROUND_HALF_UP),
        "grades": per_grade,
    }


@pytest.fixture
def night(lankao):
    with in_county(lankao):
        partner = credit_partner("sim-bank")
        active = activate_policy(partner)
        activate_scorecard()
        farmers = {}
        for seq, (key, (features, exclusions, outstanding)) in enumerate(FARMERS.items(), start=1):
            farmer = make_farmer(name=f"模拟{seq}", id_number=valid_id_number(seq=900 + seq))
            farmers[key] = farmer
            CreditAssessment.objects.create(
                business_date=DAY, farmer=farmer, eligible=not exclusions, exclusions=exclusions, score=0,
                pd=Decimal("0.5"), grade="X", line_amount=None, features=features, scorecard_version=1, policy_version=1,
            )
            if outstanding is not None:
                CreditLine.objects.create(
                    farmer=farmer, amount=outstanding, outstanding_principal=outstanding, grade="C",
                    annual_rate=Decimal("0.08"), valid_until=DAY + dt.timedelta(days=300), business_date=DAY,
                )
        # An older night and a farmer assessed only then: not the night the sandbox replays.
        stale = make_farmer(name="旧", id_number=valid_id_number(seq=990))
        for farmer in (stale, farmers["plain"]):
            CreditAssessment.objects.create(
                business_date=DAY - dt.timedelta(days=1), farmer=farmer, eligible=True, exclusions=[], score=0,
                pd=Decimal("0.5"), grade="X", features={**NO_RECORDS, "operated_area_mu": 400}, scorecard_version=1,
                policy_version=1,
            )
        draft = policy_create_draft(partner=partner, actor="officer-a", grades=DRAFT_GRADES, max_age=70)
        yield {"active": active, "draft": draft, "farmers": farmers}


def _values(policy) -> dict:
    return {name: getattr(policy, name) for name in ("min_age", "max_age", "base_income", "income_per_mu", "max_line", "min_line", "rounding_unit")}


def test_the_simulation_matches_an_independent_computation(night):
    result = policy_simulate(draft=night["draft"], business_date=DAY)
    active = _figures(_values(night["active"]), GRADES)
    draft = _figures(_values(night["draft"]), DRAFT_GRADES)

    assert simulation_business_date() == DAY
    assert (result["business_date"], result["assessed"]) == (DAY, len(FARMERS))
    for side, expected in (("active", active), ("draft", draft)):
        got = result[side]
        assert (got["lined"], got["coverage"], got["total"], got["expected_loss"]) == (
            expected["lined"], expected["coverage"], expected["total"], expected["expected_loss"]
        ), side
        assert {grade["grade"]: grade for grade in got["grades"]} == expected["grades"], side
    moves = [(active["lines"][key] or 0, draft["lines"][key] or 0) for key in FARMERS]
    assert result["moves"] == {
        "up": sum(after > before for before, after in moves),
        "down": sum(after < before for before, after in moves),
        "unchanged": sum(after == before for before, after in moves),
        "gained": sum(active["lines"][k] is None and draft["lines"][k] is not None for k in FARMERS),
        "lost": sum(active["lines"][k] is not None and draft["lines"][k] is None for k in FARMERS),
    }


def test_the_hand_checked_farmers(night):
    """The independent figures themselves, for the farmers checked by hand (see
    tests/loans/test_nightly_batch.py: no records at 40 → 582 points → PD 0.035979 → C)."""
    active = _figures(_values(night["active"]), GRADES)["lines"]
    draft = _figures(_values(night["draft"]), DRAFT_GRADES)["lines"]
    assert _score(NO_RECORDS) == 582 and _pd(582) == Decimal("0.035979")
    assert (active["plain"], draft["plain"]) == (Decimal("9000.00"), Decimal("10000.00"))  # 20,000 × 0.6 capped at 10,000
    assert (active["owing"], draft["owing"]) == (Decimal("12000.00"), Decimal("12000.00"))  # never below what is owed
    assert (active["old"], draft["old"]) == (None, Decimal("10000.00"))  # 70 is allowed by the draft
    assert (active["middle"], draft["middle"]) == (Decimal("35000.00"), Decimal("30000.00"))  # B's cap
    assert active["listed"] is None and draft["listed"] is None and draft["overdue"] is None
    assert active["missing_area"] == Decimal("9000.00")  # a missing area sizes as none


def test_nothing_is_written_and_the_page_shows_the_figures(night, portal):
    before = (CreditAssessment.objects.count(), list(CreditLine.objects.values_list("id", "amount").order_by("id")))
    portal.login("risk_officer")
    response = portal.get(f"/portal/policy/{night['draft'].version}/")
    after = (CreditAssessment.objects.count(), list(CreditLine.objects.values_list("id", "amount").order_by("id")))

    assert before == after
    simulation = response.context["simulation"]
    expected = _figures(_values(night["draft"]), DRAFT_GRADES)
    summary = {row["key"]: row["values"] for row in simulation["summary"]}
    assert summary["total"][1] == expected["total"]
    assert summary["lined"] == (_figures(_values(night["active"]), GRADES)["lined"], expected["lined"])
    html = response.content.decode()
    assert 'id="whatif"' in html
    assert f'<td class="num" data-side="draft">{expected["total"]}</td>' in html
