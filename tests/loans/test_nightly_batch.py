"""The nightly credit assessment: each eligibility rule, lines (bounds, rounding, the
outstanding-principal floor, suspension, expiry), reasons and the hint of a hand-checked
farmer, idempotent reruns, resuming after a crash, revoked consent, the PSI warning, the purge
of derived data — and the Celery path on a real worker, where one county's failure leaves the
others alone.

Scores are hand-checkable: the scorecard below gives a farmer with no records, aged 40,
50 + 40 + 55 + 50 + 45 + 70 + 62 + 75 + 75 = 522 points + 60 intercept = 582 → PD 0.035979 →
grade C (multiplier 0.45) → 20,000 × 0.45 = 9,000.00 yuan.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from django_tenants.utils import schema_context

from data_sharing.models import AccessLog, Consent
from data_sharing.services import consent_grant, consent_revoke
from loans import nightly
from loans.models import AssessmentChunk, AssessmentRun, CreditAssessment, CreditLine, CreditPolicy, Scorecard
from loans.nightly import (
    CreditAssessmentError,
    add_months,
    credit_assessment_run,
    credit_lines_follow_consent,
)
from loans.policy import policy_approve, policy_create_draft, policy_submit
from loans.purge import derived_credit_data_purge
from platform.celery import app
from platform.models import County, LendingPartner
from tests.conftest import COUNTY_ADMIN_PASSWORD, in_county
from tests.data_sharing.test_consent import grant, make_agreement, make_partner
from tests.loans.test_features import (
    CONSENTABLE,
    CREDIT_CATEGORIES,
    add_outcome,
    add_record,
    born,
    credit_partner,
    farmer_born,
)

GRADES = [
    {"grade": "A", "max_pd": "0.01", "multiplier": "1.2", "cap": "200000.00", "annual_rate": "0.0435"},
    {"grade": "B", "max_pd": "0.03", "multiplier": "1", "cap": "50000.00", "annual_rate": "0.06"},
    {"grade": "C", "max_pd": "0.08", "multiplier": "0.45", "cap": "10000.00", "annual_rate": "0.08"},
    {"grade": "D", "max_pd": "1", "multiplier": "0", "cap": "0.00", "annual_rate": "0.12"},
]


def bins(name: str, edges: list[float], points: list[float], missing: float) -> dict:
    return {"name": name, "edges": edges, "points": points, "missing_points": missing}


SPEC = {
    "scaling": {"points": 600, "odds": 50, "pdo": 20},
    "intercept_points": 60.0,
    "features": [
        bins("operated_area_mu", [5, 20], [50, 75, 90], 50),
        bins("insured_share", [0.5], [40, 60], 40),
        bins("subsidy_yuan", [500], [55, 60], 55),
        bins("social_insurance_years", [5], [50, 65], 50),
        bins("organized", [0.5], [45, 70], 45),
        bins("poverty_monitored", [0.5], [70, 40], 40),
        bins("repaid_loans", [1], [62, 80], 62),
        bins("max_days_past_due", [30], [75, 20], 20),
        bins("age", [30, 56], [60, 75, 65], 60),
    ],
}
BASELINE = {"edges": [580.0, 600.0], "shares": [0.3, 0.4, 0.3]}
BASE_LINE = Decimal("9000.00")  # a consenting farmer with no records, aged 18–65 (see above)


def activate_scorecard(*, spec: dict = SPEC, baseline: dict = BASELINE) -> Scorecard:
    Scorecard.objects.update(is_active=False)
    version = (Scorecard.objects.aggregate(top=Max("version"))["top"] or 0) + 1
    return Scorecard.objects.create(
        version=version, source="trained", spec=spec, metrics={}, baseline=baseline, is_active=True,
        trained_at=timezone.now(),
    )


def activate_policy(partner, **params) -> CreditPolicy:
    draft = policy_create_draft(partner=partner, actor="officer-a", grades=GRADES, **params)
    policy_submit(policy=draft, actor="officer-a")
    return policy_approve(policy=draft, actor="officer-b")


def consenting(partner, *, seq: int, name: str = "农户", age: int = 40, days: int = 0, day: dt.date):
    farmer = farmer_born(born(day, years=age, days=days), seq, name)
    grant(farmer, partner, CONSENTABLE)
    return farmer


def add_wang(farmer, day: dt.date) -> None:
    """The hand-checked farmer's records: 8.23 mu, 2 of them insured, 600 yuan of subsidies, 10
    years of pension, under poverty monitoring, not organised, no loans yet."""
    year = day.year
    add_record(farmer, "land_contract", "W1", {"contract_no": "W1", "parcels": 4, "area_mu": "8.23"}, as_of=day)
    add_record(farmer, "agri_insurance", "WP", {"policy_no": "WP", "year": year, "crop": "corn", "insured_area_mu": "2.00", "sum_insured_yuan": "1600.00"}, as_of=day)
    add_record(farmer, "agri_subsidy", f"{year}|grain", {"year": year, "kind": "grain", "amount_yuan": "600.00"}, as_of=day)
    add_record(farmer, "social_insurance", "resident_pension", {"scheme": "resident_pension", "enrolled": True, "contribution_years": 10}, as_of=day)
    add_record(farmer, "poverty_monitoring", "monitored", {"status": "monitored", "since_year": year}, as_of=day)


def line_of(farmer) -> CreditLine | None:
    return CreditLine.objects.filter(farmer=farmer).first()


def assessment_of(farmer, day: dt.date) -> CreditAssessment | None:
    return CreditAssessment.objects.filter(farmer=farmer, business_date=day).first()


def snapshot(day: dt.date) -> tuple[list, list]:
    """Every assessment of ``day`` and every line, without ids and timestamps."""
    assessments = list(
        CreditAssessment.objects.filter(business_date=day).order_by("farmer_id").values_list(
            "farmer_id", "eligible", "exclusions", "score", "pd", "grade", "line_amount", "features", "reasons", "hint",
            "scorecard_version", "policy_version",
        )
    )
    lines = list(
        CreditLine.objects.order_by("farmer_id").values_list(
            "farmer_id", "amount", "outstanding_principal", "grade", "annual_rate", "valid_until", "status", "suspension",
            "business_date", "assessment__farmer_id", "assessment__business_date",
        )
    )
    return assessments, lines


@pytest.fixture
def world(lankao):
    with in_county(lankao):
        day = timezone.localdate()
        partner = credit_partner()
        policy = activate_policy(partner)
        scorecard = activate_scorecard()
        yield {"day": day, "partner": partner, "policy": policy, "scorecard": scorecard}


# --- Eligibility ---------------------------------------------------------------------------------


def test_each_eligibility_rule_excludes_exactly_whom_it_should(world):
    day, partner = world["day"], world["partner"]
    court = {"court": "兰考县人民法院"}
    consenting(partner, seq=801, name="十七", age=18, days=1, day=day)  # turns 18 tomorrow
    consenting(partner, seq=802, name="十八", age=18, day=day)  # turns 18 today
    consenting(partner, seq=803, name="六十五", age=66, days=1, day=day)  # turns 66 tomorrow
    consenting(partner, seq=804, name="六十六", age=66, day=day)
    listed = consenting(partner, seq=805, name="失信", day=day)
    add_record(listed, "dishonest_debtor", "L", {**court, "case_no": "L", "listed_on": (day - dt.timedelta(days=30)).isoformat()}, as_of=day)
    removed = consenting(partner, seq=806, name="移出", day=day)
    add_record(removed, "dishonest_debtor", "R", {**court, "case_no": "R", "listed_on": "2020-01-01", "removed_on": day.isoformat()}, as_of=day)
    overdue = consenting(partner, seq=807, name="逾期", day=day)
    CreditLine.objects.create(
        farmer=overdue, amount=Decimal("5000.00"), outstanding_principal=Decimal("3000.00"), grade="B",
        annual_rate=Decimal("0.06"), valid_until=day + dt.timedelta(days=100), status="suspended", suspension="overdue",
        business_date=day - dt.timedelta(days=1),
    )
    grade_d = consenting(partner, seq=808, name="低分", day=day)
    add_outcome(grade_d, closed_on=day - dt.timedelta(days=100), max_days_past_due=60)  # 582 − 55 = 527 → PD 0.2 → D
    both = consenting(partner, seq=809, name="双重", age=66, day=day)
    add_record(both, "dishonest_debtor", "B", {**court, "case_no": "B", "listed_on": "2021-01-01"}, as_of=day)
    no_consent = farmer_born(born(day, years=40), 810, "未授权")
    add_record(no_consent, "land_contract", "N", {"contract_no": "N", "parcels": 1, "area_mu": "30.00"}, as_of=day)
    CreditLine.objects.create(
        farmer=no_consent, amount=Decimal("8000.00"), grade="C", annual_rate=Decimal("0.08"),
        valid_until=day + dt.timedelta(days=100), business_date=day - dt.timedelta(days=1),
    )
    stale = farmer_born(born(day, years=40), 811, "过期")
    CreditLine.objects.create(
        farmer=stale, amount=Decimal("8000.00"), grade="C", annual_rate=Decimal("0.08"), valid_until=day - dt.timedelta(days=1),
        status="suspended", suspension="no_consent", business_date=day - dt.timedelta(days=365),
    )

    summary = credit_assessment_run(business_date=day, chunk_size=4)

    decisions = {
        a.farmer.name: (a.eligible, a.exclusions, a.score, a.grade, a.line_amount)
        for a in CreditAssessment.objects.filter(business_date=day).select_related("farmer")
    }
    assert decisions == {
        "十七": (False, ["age"], 567, "C", None),
        "十八": (True, [], 567, "C", BASE_LINE),
        "六十五": (True, [], 572, "C", BASE_LINE),
        "六十六": (False, ["age"], 572, "C", None),
        "失信": (False, ["dishonest_debtor"], 582, "C", None),
        "移出": (True, [], 582, "C", BASE_LINE),
        "逾期": (False, ["overdue"], 582, "C", None),
        "低分": (False, ["grade"], 527, "D", None),
        "双重": (False, ["age", "dishonest_debtor"], 572, "C", None),
    }  # no assessment at all for 未授权 and 过期: their data may not be read
    lines = {line.farmer.name: (line.amount, line.status, line.suspension) for line in CreditLine.objects.select_related("farmer")}
    assert lines == {
        "十八": (BASE_LINE, "active", ""),
        "六十五": (BASE_LINE, "active", ""),
        "移出": (BASE_LINE, "active", ""),
        "逾期": (Decimal("5000.00"), "suspended", "overdue"),
        "未授权": (Decimal("8000.00"), "suspended", "no_consent"),
        "过期": (Decimal("8000.00"), "expired", "no_consent"),
    }
    assert line_of(overdue).assessment == assessment_of(overdue, day)
    assert set(summary.pop("phase_seconds")) == {"gate", "features", "score", "stage", "write", "suspend"}
    assert summary == {
        "run_id": AssessmentRun.objects.get(business_date=day).pk, "status": "succeeded", "chunks": 3, "chunks_done": 3,
        "roster": 11, "gated": 9, "records": 3, "scored": 9, "eligible": 3,
        "lines_new": 3, "lines_up": 0, "lines_down": 0, "lines_unchanged": 0, "frozen": 1, "expired": 1,
        "excluded": {"no_consent": 2, "age": 3, "dishonest_debtor": 2, "overdue": 1, "grade": 1},
        "attempts": 1, "psi": summary["psi"], "psi_warning": summary["psi_warning"],
    }
    # One access-log row per chunk, naming the job and the farmers admitted in it.
    logs = AccessLog.objects.filter(accessor=nightly.JOB, business_date=day).order_by("id")
    assert [(log.accessor_type, log.farmer_count, log.categories) for log in logs] == [
        ("job", 4, CREDIT_CATEGORIES), ("job", 4, CREDIT_CATEGORIES), ("job", 1, CREDIT_CATEGORIES),
    ]


# --- Lines ---------------------------------------------------------------------------------------


def test_lines_are_sized_capped_rounded_and_never_below_the_outstanding_principal(world):
    day, partner = world["day"], world["partner"]
    wang = consenting(partner, seq=821, name="王", day=day)
    add_wang(wang, day)
    large = consenting(partner, seq=822, name="大户", day=day)
    year = day.year
    add_record(large, "land_contract", "BIG", {"contract_no": "BIG", "parcels": 30, "area_mu": "100.00"}, as_of=day)
    add_record(large, "agri_insurance", "BP", {"policy_no": "BP", "year": year, "crop": "wheat", "insured_area_mu": "100.00", "sum_insured_yuan": "80000.00"}, as_of=day)
    add_record(large, "agri_subsidy", f"{year}|grain", {"year": year, "kind": "grain", "amount_yuan": "9000.00"}, as_of=day)
    add_record(large, "social_insurance", "resident_pension", {"scheme": "resident_pension", "enrolled": True, "contribution_years": 12}, as_of=day)
    add_record(large, "business_entity", "FF", {"registration_no": "FF", "entity_type": "family_farm", "entity_name": "大户家庭农场", "registered_on": "2020-03-01"}, as_of=day)
    owing = consenting(partner, seq=823, name="欠款", day=day)
    add_wang(owing, day)
    CreditLine.objects.create(
        farmer=owing, amount=Decimal("40000.00"), outstanding_principal=Decimal("35000.50"), grade="B",
        annual_rate=Decimal("0.06"), valid_until=day + dt.timedelta(days=30), business_date=day - dt.timedelta(days=1),
    )
    raised = consenting(partner, seq=824, name="提额", day=day)
    CreditLine.objects.create(
        farmer=raised, amount=Decimal("5000.00"), grade="C", annual_rate=Decimal("0.08"),
        valid_until=day + dt.timedelta(days=30), business_date=day - dt.timedelta(days=1),
    )

    summary = credit_assessment_run(business_date=day)

    valid_until = add_months(day, 12)
    lines = {
        line.farmer.name: (line.amount, line.grade, line.annual_rate, line.valid_until, line.status, line.available)
        for line in CreditLine.objects.select_related("farmer")
    }
    assert lines == {
        # 20,000 + 1,500 × 8.23 = 32,345 × 1 (B) → 32,300.00
        "王": (Decimal("32300.00"), "B", Decimal("0.060000"), valid_until, "active", Decimal("32300.00")),
        # 20,000 + 1,500 × 100 = 170,000 × 1.2 (A) = 204,000 → capped at 200,000.00
        "大户": (Decimal("200000.00"), "A", Decimal("0.043500"), valid_until, "active", Decimal("200000.00")),
        # 32,300 would be below the 35,000.50 owed: the line stays at what is owed, nothing to draw
        "欠款": (Decimal("35000.50"), "B", Decimal("0.060000"), valid_until, "active", Decimal("0.00")),
        "提额": (BASE_LINE, "C", Decimal("0.080000"), valid_until, "active", BASE_LINE),
    }
    assert assessment_of(owing, day).line_amount == Decimal("35000.50")
    assert (summary["lines_new"], summary["lines_up"], summary["lines_down"]) == (2, 1, 1)


def test_reasons_and_hint_of_a_hand_checked_farmer(world):
    day, partner = world["day"], world["partner"]
    wang = consenting(partner, seq=831, name="王", day=day)
    add_wang(wang, day)

    credit_assessment_run(business_date=day)

    assessment = assessment_of(wang, day)
    # Points: area 75 (best 90), insured 2/8.23 = 0.243 → 40 (60), subsidy 60, pension 65,
    # organised 45 (70), monitored 40 (70), repaid 62 (80), delay 75, age 75: 537 + 60 = 597.
    assert (assessment.score, assessment.pd, assessment.grade) == (597, Decimal("0.021710"), "B")
    assert assessment.features == {
        "operated_area_mu": 8.23, "insured_share": 0.243, "subsidy_yuan": 600.0, "social_insurance_years": 10.0,
        "organized": 0.0, "poverty_monitored": 1.0, "repaid_loans": 0.0, "max_days_past_due": 0.0, "age": 40.0,
    }
    # Lost: monitored 30, organised 25, insured 20, repaid 18, area 15.
    assert assessment.reasons == [
        {"feature": "poverty_monitored", "points_lost": 30.0,
         "text_zh": "家庭处于防返贫监测中", "text_en": "Your household is under poverty-relapse monitoring"},
        {"feature": "organized", "points_lost": 25.0,
         "text_zh": "未加入合作社或登记家庭农场", "text_en": "Not in a cooperative or a registered family farm"},
        {"feature": "insured_share", "points_lost": 20.0,
         "text_zh": "土地的农业保险覆盖不足", "text_en": "Little of your land is insured"},
    ]
    # Monitoring costs the most but is nothing the farmer can change: the hint is the next one.
    assert assessment.hint == {
        "feature": "organized", "points_lost": 25.0,
        "text_zh": "加入农民专业合作社或登记家庭农场", "text_en": "Join a cooperative or register a family farm",
    }
    assert (assessment.scorecard_version, assessment.policy_version) == (world["scorecard"].version, world["policy"].version)


def test_a_farmer_with_nothing_to_improve_has_no_reasons_and_no_hint(world):
    day, partner = world["day"], world["partner"]
    best = consenting(partner, seq=832, name="满分", day=day)
    year = day.year
    add_record(best, "land_contract", "X", {"contract_no": "X", "parcels": 9, "area_mu": "25.00"}, as_of=day)
    add_record(best, "agri_insurance", "XP", {"policy_no": "XP", "year": year, "crop": "rice", "insured_area_mu": "25.00", "sum_insured_yuan": "20000.00"}, as_of=day)
    add_record(best, "agri_subsidy", f"{year}|grain", {"year": year, "kind": "grain", "amount_yuan": "2500.00"}, as_of=day)
    add_record(best, "social_insurance", "resident_pension", {"scheme": "resident_pension", "enrolled": True, "contribution_years": 15}, as_of=day)
    add_record(best, "coop_membership", "C", {"cooperative_code": "C", "cooperative_name": "合作社", "joined_on": "2019-01-01"}, as_of=day)
    add_outcome(best, closed_on=day - dt.timedelta(days=30), max_days_past_due=0)

    credit_assessment_run(business_date=day)

    assessment = assessment_of(best, day)
    assert (assessment.score, assessment.reasons, assessment.hint) == (645 + 60, [], {})


# --- Reruns and crashes ----------------------------------------------------------------------------


def test_running_a_date_again_changes_nothing_and_recomputing_it_gives_the_same_lines(world):
    day, partner = world["day"], world["partner"]
    farmers = [consenting(partner, seq=840 + i, name=f"甲{i}", day=day) for i in range(5)]
    add_wang(farmers[0], day)

    first = credit_assessment_run(business_date=day, chunk_size=2)
    before = snapshot(day)
    ids = sorted(CreditAssessment.objects.values_list("id", flat=True))
    second = credit_assessment_run(business_date=day, chunk_size=2)

    assert second == first
    assert snapshot(day) == before
    assert AccessLog.objects.filter(accessor=nightly.JOB).count() == 3  # nothing read again

    recomputed = credit_assessment_run(business_date=day, chunk_size=3, recompute=True)
    assert snapshot(day) == before
    assert sorted(CreditAssessment.objects.values_list("id", flat=True)) == ids  # updated in place
    assert CreditLine.objects.count() == 5
    assert (recomputed["chunks"], recomputed["scored"], recomputed["eligible"]) == (2, 5, 5)
    # Against tonight's lines, nothing is new or moved the second time.
    assert (first["lines_new"], recomputed["lines_new"], recomputed["lines_unchanged"]) == (5, 0, 5)


def test_a_run_that_crashed_resumes_with_the_missing_chunks_and_ends_as_a_clean_run(world, monkeypatch):
    day, partner = world["day"], world["partner"]
    farmers = [consenting(partner, seq=850 + i, name=f"乙{i}", day=day) for i in range(5)]
    add_wang(farmers[2], day)
    real = nightly._assess_chunk
    crashes = []

    def crash_once_in_chunk_two(chunk):
        if chunk.number == 2 and not crashes:
            crashes.append(chunk.number)
            real(chunk)  # the chunk's writes happen, then the worker dies before commit
            raise RuntimeError("worker killed")
        return real(chunk)

    monkeypatch.setattr(nightly, "_assess_chunk", crash_once_in_chunk_two)

    with pytest.raises(RuntimeError, match="worker killed"):
        credit_assessment_run(business_date=day, chunk_size=2)

    run = AssessmentRun.objects.get(business_date=day)
    assert (run.status, run.chunks_total, run.chunks_done) == ("failed", 3, 1)
    assert "chunk 2" in run.error and "worker killed" in run.error
    assert list(run.chunks.order_by("number").values_list("number", "done")) == [(1, True), (2, False), (3, False)]
    # Only chunk 1's farmers were written; nothing of chunk 2 survived.
    assert sorted(CreditAssessment.objects.values_list("farmer_id", flat=True)) == [farmers[0].pk, farmers[1].pk]
    chunk_one = AssessmentChunk.objects.get(run=run, number=1)

    processed = []
    monkeypatch.setattr(nightly, "_assess_chunk", lambda chunk: processed.append(chunk.number) or real(chunk))
    summary = credit_assessment_run(business_date=day, chunk_size=2)

    assert processed == [2, 3]
    assert AssessmentChunk.objects.get(pk=chunk_one.pk).counts == chunk_one.counts
    run.refresh_from_db()
    assert (run.status, run.chunks_done, run.error, summary["attempts"]) == ("succeeded", 3, "", 2)
    assert (summary["scored"], summary["eligible"], summary["lines_new"]) == (5, 5, 5)
    resumed = snapshot(day)

    # The same date computed from scratch ends in exactly the same rows.
    clean = credit_assessment_run(business_date=day, chunk_size=2, recompute=True)
    assert snapshot(day) == resumed
    assert (clean["scored"], clean["eligible"]) == (5, 5)


# --- Consent -----------------------------------------------------------------------------------------


def test_revoked_consent_suspends_the_line_at_once_and_stops_assessments(world):
    day, partner = world["day"], world["partner"]
    wang = consenting(partner, seq=861, name="王", day=day)
    add_wang(wang, day)
    other = consenting(partner, seq=862, name="邻居", day=day)
    credit_assessment_run(business_date=day)
    assert line_of(wang).status == "active"

    # The revocation itself suspends the line (settings.CONSENT_CHANGE_HANDLERS), in its own
    # transaction; following consent again afterwards finds nothing left to do.
    consent_revoke(consent=Consent.objects.get(farmer=wang), actor=f"farmer:{wang.pk}", channel="self")
    assert (line_of(wang).status, line_of(wang).suspension) == ("suspended", "no_consent")
    assert credit_lines_follow_consent(farmer_ids=[wang.pk, other.pk]) == {"suspended": 0, "reactivated": 0}
    assert (line_of(wang).status, line_of(wang).suspension, line_of(wang).available) == ("suspended", "no_consent", Decimal("0.00"))
    assert line_of(other).status == "active"

    tomorrow = day + dt.timedelta(days=1)
    summary = credit_assessment_run(business_date=tomorrow)

    assert assessment_of(wang, tomorrow) is None  # nothing read about them, nothing derived
    assert assessment_of(other, tomorrow) is not None
    assert (line_of(wang).status, line_of(wang).suspension, line_of(wang).business_date) == ("suspended", "no_consent", day)
    assert (summary["scored"], summary["excluded"]["no_consent"], summary["frozen"]) == (1, 1, 0)

    # Consenting again reactivates the line at once; the next run reassesses it.
    grant(wang, partner, CONSENTABLE)
    assert (line_of(wang).status, line_of(wang).suspension) == ("active", "")
    assert credit_lines_follow_consent(farmer_ids=[wang.pk]) == {"suspended": 0, "reactivated": 0}


def test_the_court_list_must_be_covered_or_the_run_stops(lankao):
    with in_county(lankao):
        day = timezone.localdate()
        partner = make_partner("landonly", "只有土地")
        make_agreement(partner, categories=["land_contract"])
        activate_policy(partner)
        activate_scorecard()
        farmer = farmer_born(born(day, years=40), 871)
        consent_grant(farmer=farmer, partner=partner, categories=["land_contract"], channel="self", sms_confirmed=False, actor="farmer")

        with pytest.raises(CreditAssessmentError, match="dishonest_debtor"):
            credit_assessment_run(business_date=day)
        run = AssessmentRun.objects.get(business_date=day)
        assert run.status == "failed" and "dishonest_debtor" in run.error
        assert CreditAssessment.objects.count() == 0


def test_a_county_without_an_active_policy_is_skipped(lankao):
    with in_county(lankao):
        assert credit_assessment_run(business_date=timezone.localdate()) == {"skipped": "no_active_policy"}
        assert AssessmentRun.objects.count() == 0


# --- Monitoring ----------------------------------------------------------------------------------


def test_psi_is_recorded_and_a_shift_raises_the_warning(world):
    day, partner = world["day"], world["partner"]
    wang = consenting(partner, seq=881, name="王", day=day)  # 597
    add_wang(wang, day)
    consenting(partner, seq=882, name="平", day=day)  # 582

    # Both scores sit in the baseline's middle bin [580, 600): actual shares (0, 1, 0) against
    # (0.3, 0.4, 0.3), with empty bins floored at 1e-4.
    credit_assessment_run(business_date=day)
    run = AssessmentRun.objects.get(business_date=day)
    floor = 1e-4
    expected = 2 * (floor - 0.3) * math.log(floor / 0.3) + (1 - 0.4) * math.log(1 / 0.4)
    assert run.psi == Decimal(str(round(expected, 4))) == Decimal("5.3520")
    assert run.psi_warning is True
    assert run.counts["score_bins"] == [0, 2, 0]

    # A baseline that matches the population: PSI 0, no warning.
    activate_scorecard(baseline={"edges": [590.0], "shares": [0.5, 0.5]})
    tomorrow = day + dt.timedelta(days=1)
    summary = credit_assessment_run(business_date=tomorrow)
    assert (summary["psi"], summary["psi_warning"]) == (0.0, False)


# --- Purge -----------------------------------------------------------------------------------------


def test_purge_deletes_the_assessments_and_lines_of_the_target_pairs(world):
    day, partner = world["day"], world["partner"]
    gone = consenting(partner, seq=891, name="清除", day=day)
    owing = consenting(partner, seq=892, name="欠款", day=day)
    kept = consenting(partner, seq=893, name="保留", day=day)
    credit_assessment_run(business_date=day)
    CreditLine.objects.filter(farmer=owing).update(outstanding_principal=Decimal("1000.00"))
    other_bank = make_partner("otherbank", "其他银行")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE purge_targets (farmer_id bigint, partner_id bigint)")
        cursor.execute(
            "INSERT INTO purge_targets VALUES (%s, %s), (%s, %s), (%s, %s)",
            [gone.pk, partner.pk, owing.pk, partner.pk, kept.pk, other_bank.pk],
        )

    deleted = derived_credit_data_purge(targets_sql="SELECT farmer_id, partner_id FROM purge_targets")

    assert deleted == 3  # gone's line and assessment, owing's assessment
    assert set(CreditAssessment.objects.values_list("farmer__name", flat=True)) == {"保留"}
    assert {line.farmer.name: line.assessment_id for line in CreditLine.objects.select_related("farmer")} == {
        "欠款": None, "保留": assessment_of(kept, day).pk,
    }


# --- Inside the county's nightly run -----------------------------------------------------------------

NIGHTLY = ["data_sharing.services.consents_expire", "loans.nightly.credit_assessment_run", "data_sharing.services.derived_data_purge"]
PURGERS = ["loans.purge.derived_credit_data_purge"]


def test_the_step_runs_inside_the_nightly_run_and_the_purge_follows_the_data_life(world):
    from django.test import override_settings

    from counties.models import NightlyRun
    from counties.services import nightly_run

    day, partner = world["day"], world["partner"]
    leaving = farmer_born(born(day, years=40), 895, "离开")
    consent = grant(leaving, partner, CONSENTABLE, data_life_days=0)
    staying = consenting(partner, seq=896, name="留下", day=day)

    with override_settings(NIGHTLY_STEPS=NIGHTLY, DERIVED_DATA_PURGERS=PURGERS):
        first = nightly_run(business_date=day)
        assert first.status == NightlyRun.Status.SUCCEEDED
        step = first.steps[1]
        assert (step["name"], step["counts"]["scored"], step["counts"]["lines_new"]) == (NIGHTLY[1], 2, 2)

        consent_revoke(consent=consent, actor="farmer", channel="self")
        second = nightly_run(business_date=day + dt.timedelta(days=1))

    assert second.status == NightlyRun.Status.SUCCEEDED
    assert second.steps[1]["counts"]["scored"] == 1
    # Data life 0: the next night's purge deletes what was derived from the farmer's data.
    assert second.steps[2]["counts"] == {"pairs": 1, PURGERS[0]: 2, "consents": 1}
    assert (CreditAssessment.objects.filter(farmer=leaving).count(), line_of(leaving)) == (0, None)
    assert CreditAssessment.objects.filter(farmer=staying).count() == 2 and line_of(staying).status == "active"


# --- Celery: a real worker, committed data in scratch counties ------------------------------------

SCRATCH = {
    "ok": {"code": "411323", "name": "西峡县", "domain": "xixia-batch.localhost", "province": "河南省", "city": "南阳市"},
    "broken": {"code": "411324", "name": "镇平县", "domain": "zhenping-batch.localhost", "province": "河南省", "city": "南阳市"},
}


@pytest.fixture
def scratch_counties(django_db_setup, django_db_blocker):
    """Two committed counties (the worker sees only committed rows): ``ok`` with five consenting
    farmers, ``broken`` whose agreement leaves out the court's list. Consent events and access
    logs refuse DELETE, so each county goes with its whole schema afterwards."""
    from platform.services import county_onboard

    made: list[County] = []
    partners: list[LendingPartner] = []
    with django_db_blocker.unblock():
        try:
            day = timezone.localdate()
            for key, spec in SCRATCH.items():
                county = county_onboard(**spec, admin_password=COUNTY_ADMIN_PASSWORD).county
                made.append(county)
                with schema_context(county.schema_name):
                    partner = make_partner(f"celery-{key}-{spec['code']}", "测试银行")
                    partners.append(partner)
                    categories = CREDIT_CATEGORIES if key == "ok" else ["land_contract"]
                    make_agreement(partner, categories=categories)
                    activate_policy(partner)
                    activate_scorecard()
                    for i in range(5):
                        farmer = farmer_born(born(day, years=40), 900 + i, f"丙{i}")
                        consent_grant(farmer=farmer, partner=partner, categories=["land_contract"], channel="self",
                                      sms_confirmed=False, actor="farmer")
            yield {county.code: county for county in made}
        finally:
            with connection.cursor() as cursor:
                for county in made:
                    cursor.execute(f'DROP SCHEMA IF EXISTS "{county.schema_name}" CASCADE')
                    County.objects.filter(pk=county.pk).delete()
                # Raw: the ORM would look for the partner's agreements in the public schema.
                cursor.execute(
                    f"DELETE FROM {LendingPartner._meta.db_table} WHERE id = ANY(%s)", [[p.pk for p in partners]]
                )


@pytest.fixture
def worker(celery_queue, django_db_blocker):
    from celery.contrib.testing.worker import start_worker

    with django_db_blocker.unblock(), start_worker(
        app, pool="solo", perform_ping_check=False, queues=[celery_queue], shutdown_timeout=30
    ) as running:
        yield running


def _wait_for_runs(counties: dict[str, County], day: dt.date, timeout: float = 60) -> dict[str, AssessmentRun | None]:
    deadline = time.monotonic() + timeout
    while True:
        runs = {}
        for code, county in counties.items():
            with schema_context(county.schema_name):
                runs[code] = AssessmentRun.objects.filter(business_date=day).first()
        finished = all(run and run.status != "running" and run.finished_at for run in runs.values())
        if finished or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def test_celery_chunks_run_on_a_worker_and_one_county_failing_leaves_the_others(
    scratch_counties, worker, db, django_db_blocker
):
    # ``db`` comes last: it makes pytest-django create the test database even when this test
    # runs alone, and opens its transaction only after the committed counties exist.
    from loans.tasks import dispatch_credit_assessments

    day = timezone.localdate()
    with django_db_blocker.unblock():
        sent = dispatch_credit_assessments.apply_async(kwargs={"business_date": day.isoformat(), "chunk_size": 2})
        codes = sent.get(timeout=30)
        assert {"411323", "411324"} <= set(codes)
        runs = _wait_for_runs(scratch_counties, day)

        ok, broken = runs["411323"], runs["411324"]
        assert (ok.status, ok.chunks_total, ok.chunks_done) == ("succeeded", 3, 3)
        assert {key: ok.counts[key] for key in ("roster", "gated", "scored", "eligible", "lines_new")} == {
            "roster": 5, "gated": 5, "scored": 5, "eligible": 5, "lines_new": 5,
        }
        assert ok.psi is not None
        with schema_context(scratch_counties["411323"].schema_name):
            assert CreditLine.objects.filter(status="active", amount=BASE_LINE).count() == 5
            seconds = list(AssessmentChunk.objects.filter(run=ok).values_list("seconds", flat=True))
            assert all(value is not None for value in seconds)
        assert broken.status == "failed" and "dishonest_debtor" in broken.error
        with schema_context(scratch_counties["411324"].schema_name):
            assert CreditAssessment.objects.count() == 0

        # Sending the county's run again is safe: it is finished, nothing is redone.
        from loans.tasks import credit_assessment_county

        with schema_context(scratch_counties["411323"].schema_name):
            again = credit_assessment_county.apply_async(kwargs={"business_date": day.isoformat(), "chunk_size": 2})
        assert again.get(timeout=30)["status"] == "succeeded"
        with schema_context(scratch_counties["411323"].schema_name):
            assert AccessLog.objects.filter(accessor=nightly.JOB).count() == 3
