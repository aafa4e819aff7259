"""Scorecards: the spec scores what optbinning's fitted scorecard scores, the explicit scaling,
reason codes and PSI on hand-computed examples, the shipped default in every county, and
training a county's scorecard through the consent gate (sample, leakage rule, command)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from counties.models import Farmer, Household, Township, Village
from data_sharing.models import AccessLog, Consent, ConsentText, DataCategory, GovernmentRecord, ImportBatch
from loans.default_scorecard_build import synthetic_training_sample
from loans.features import FEATURE_CATEGORIES
from loans.models import CreditOutcome, Scorecard
from loans.policy import policy_ensure_default
from loans.scorecard import (
    FACTOR,
    FEATURE_BY_NAME,
    FEATURE_NAMES,
    OFFSET,
    baseline_of,
    pd_from_score,
    psi,
    reasons,
    score_points,
)
from loans.scorecards import (
    MIN_BADS,
    TRAINING_JOB,
    iv_strength,
    observation_point,
    psi_status,
    scorecard_activate,
    scorecard_default_document,
    scorecard_default_spec,
    scorecard_ensure_default,
    scorecard_train_for_county,
    scorecard_training_data,
)
from loans.training import scorecard_train
from platform.models import LendingPartner
from tests.conftest import in_county
from tests.data_sharing.test_consent import make_agreement

# --- The spec against optbinning ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """A scorecard trained on a synthetic sample, with the optbinning Scorecard that produced it."""
    import optbinning

    cards = []

    class Capturing(optbinning.Scorecard):
        def fit(self, *args, **kwargs):
            cards.append(self)
            return super().fit(*args, **kwargs)

    columns, bad = synthetic_training_sample(size=20_000, seed=7)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(optbinning, "Scorecard", Capturing)
        result = scorecard_train(columns, bad, seed=7)
    (card,) = cards
    return SimpleNamespace(result=result, card=card, columns=columns, bad=bad)


def frame_with_missing(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = pd.DataFrame({name: columns[name] for name in FEATURE_NAMES})
    frame.loc[:49, "operated_area_mu"] = np.nan
    frame.loc[50:99, "social_insurance_years"] = np.nan
    return frame


def test_the_spec_scores_what_optbinning_scores(trained):
    frame = frame_with_missing(trained.columns)
    points, total = score_points(trained.result.spec, {name: frame[name].to_numpy() for name in FEATURE_NAMES})
    expected = trained.card.score(frame)

    # Points are stored to 4 places: the unrounded sum agrees to a few thousandths of a point,
    # and the stored whole-point score to ±0.5.
    assert np.abs(points.sum(axis=1) - expected).max() < 1e-3
    assert np.abs(total - expected).max() <= 0.5 + 1e-3
    assert np.array_equal(total, np.rint(total))


def test_the_scaling_is_600_points_at_odds_50_to_1_and_20_points_to_double_them(trained):
    assert round(FACTOR, 4) == 28.8539
    assert round(OFFSET, 4) == 487.1229
    assert pd_from_score(600) == pytest.approx(1 / 51)  # good:bad 50:1
    assert pd_from_score(620) == pytest.approx(1 / 101)  # 100:1
    assert pd_from_score(580) == pytest.approx(1 / 26)  # 25:1
    assert pd_from_score(np.array([487.1229]))[0] == pytest.approx(0.5, abs=1e-6)  # even odds at the offset

    # End to end: every farmer's spec score is offset + factor × ln(good:bad odds) of the fitted
    # logistic regression, so a farmer at 50:1 scores 600 and one at 100:1 scores 620.
    frame = frame_with_missing(trained.columns)
    points, _total = score_points(trained.result.spec, {name: frame[name].to_numpy() for name in FEATURE_NAMES})
    bad_probability = trained.card.predict_proba(frame)[:, 1]
    odds = (1 - bad_probability) / bad_probability
    assert np.abs(points.sum(axis=1) - (OFFSET + FACTOR * np.log(odds))).max() < 1e-3
    assert np.abs(pd_from_score(points.sum(axis=1)) - bad_probability).max() < 1e-6


def test_training_validates_on_a_holdout_and_keeps_the_business_trends(trained):
    metrics = trained.result.metrics
    assert metrics["gini"] > 0.2
    assert 0 < metrics["ks"] < 1
    assert metrics["train_size"] + metrics["holdout_size"] == 20_000
    assert set(metrics["iv"]) == set(FEATURE_NAMES)
    assert metrics["bad_rate"] == round(float(trained.bad.mean()), 6)
    for feature in trained.result.spec["features"]:
        assert len(feature["points"]) == len(feature["woe"]) == len(feature["bad_rate"]) == len(feature["edges"]) + 1
        trend = FEATURE_BY_NAME[feature["name"]].trend
        steps = np.diff(feature["bad_rate"])
        if trend == "descending":  # more land, insurance… → fewer bads
            assert (steps <= 0).all(), feature["name"]
        elif trend == "ascending":
            assert (steps >= 0).all(), feature["name"]
    # Scoring the training population against its own baseline: no shift.
    _points, scores = score_points(trained.result.spec, trained.columns)
    assert psi(trained.result.baseline, scores) < 0.01
    assert sum(trained.result.baseline["shares"]) == pytest.approx(1)


# --- Reason codes on a hand-computed spec ------------------------------------------------------

TINY_SPEC = {
    "intercept_points": 500.0,
    "features": [
        {"name": "a", "edges": [10.0], "points": [5.0, 25.0], "missing_points": 0.0},
        {"name": "b", "edges": [1.0, 2.0], "points": [0.0, 10.0, 30.0], "missing_points": 10.0},
        {"name": "c", "edges": [0.5], "points": [12.0, 2.0], "missing_points": 12.0},
    ],
}


def test_reason_codes_are_the_features_that_lost_most_points_ties_in_spec_order():
    columns = {
        # farmer 1: a in its low bin (5, lost 20), b middle (10, lost 20), c high (2, lost 10)
        # farmer 2: a missing (0, lost 25), b and c at their best (lost 0 each)
        # farmer 3: values on the edges fall in the upper bin: a 25, b 30, c 2 (lost 10)
        "a": np.array([5.0, np.nan, 10.0]),
        "b": np.array([1.5, 3.0, 2.0]),
        "c": np.array([1.0, 0.0, 0.5]),
    }
    points, total = score_points(TINY_SPEC, columns)
    assert points.tolist() == [[5, 10, 2], [0, 30, 12], [25, 30, 2]]
    assert total.tolist() == [517, 542, 557]

    top, lost = reasons(TINY_SPEC, points)
    assert top.tolist() == [[0, 1, 2], [0, 1, 2], [2, 0, 1]]
    assert lost.tolist() == [[20, 20, 10], [25, 0, 0], [0, 0, 10]]
    assert reasons(TINY_SPEC, points, top=1)[0].tolist() == [[0], [0], [2]]


# --- PSI ---------------------------------------------------------------------------------------

BASELINE = {"edges": [500.0, 600.0], "shares": [0.25, 0.5, 0.25]}


def sample(below: int, middle: int, above: int) -> np.ndarray:
    # 600 is on an edge and counts in the upper bin, as in scoring.
    return np.array([450.0] * below + ([500.0, 550.0] * middle)[:middle] + ([600.0, 700.0] * above)[:above])


def test_psi_of_an_identical_sample_is_zero():
    assert psi(BASELINE, sample(25, 50, 25)) == 0.0
    assert psi_status(0.0) == "stable"


def test_psi_of_a_known_shifted_sample():
    # Shares move from 25/50/25% to 10/40/50%:
    #   (0.10 − 0.25)·ln(0.10/0.25) = 0.137444
    #   (0.40 − 0.50)·ln(0.40/0.50) = 0.022314
    #   (0.50 − 0.25)·ln(0.50/0.25) = 0.173287   → 0.333045
    value = psi(BASELINE, sample(10, 40, 50))
    assert round(value, 4) == 0.3330
    assert value == pytest.approx(
        (0.10 - 0.25) * math.log(0.10 / 0.25)
        + (0.40 - 0.50) * math.log(0.40 / 0.50)
        + (0.50 - 0.25) * math.log(0.50 / 0.25)
    )
    assert value >= 0.25
    assert psi_status(value) == "shifted"
    # A milder shift, 25/50/25% → 20/50/30%: 0.05·ln(1.25) + 0 + 0.05·ln(1.2) = 0.020273, stable.
    assert round(psi(BASELINE, sample(20, 50, 30)), 4) == 0.0203
    assert psi_status(0.0203) == "stable"
    assert psi_status(0.1) == "watch"
    assert psi_status(0.2499) == "watch"


def test_an_empty_bin_is_floored_not_infinite():
    value = psi(BASELINE, sample(0, 50, 50))
    # (1e-4 − 0.25)·ln(1e-4/0.25) + 0 + (0.5 − 0.25)·ln(2)
    assert value == pytest.approx((1e-4 - 0.25) * math.log(1e-4 / 0.25) + 0.25 * math.log(2))


def test_baseline_deciles():
    scores = np.arange(1000, dtype=float)
    baseline = baseline_of(scores)
    assert baseline["edges"] == pytest.approx([99.9 * k for k in range(1, 10)])
    assert baseline["shares"] == pytest.approx([0.1] * 10)


@pytest.mark.parametrize(
    ("iv", "label"),
    [
        (0.0, "useless"),
        (0.0199, "useless"),
        (0.02, "weak"),
        (0.0999, "weak"),
        (0.1, "medium"),
        (0.3, "medium"),
        (0.3001, "strong"),
    ],
)
def test_information_value_labels(iv, label):
    assert iv_strength(iv)[1] == label


# --- The shipped default -----------------------------------------------------------------------


def test_the_shipped_default_is_readable():
    document = scorecard_default_document()
    assert document["provenance"]["source"] == "synthetic"
    assert "synthetic" in document["provenance"]["text_en"]
    spec = scorecard_default_spec()
    assert spec["scaling"] == {"points": 600, "odds": 50, "pdo": 20}
    assert [feature["name"] for feature in spec["features"]] == list(FEATURE_NAMES)
    for feature in spec["features"]:
        assert feature["label_zh"] == FEATURE_BY_NAME[feature["name"]].label_zh
        assert len(feature["points"]) == len(feature["woe"]) == len(feature["bad_rate"]) == len(feature["edges"]) + 1
        assert feature["iv"] == document["metrics"]["iv"][feature["name"]]
    assert document["metrics"]["gini"] > 0.2
    assert 0.015 <= document["metrics"]["bad_rate"] <= 0.03  # DESIGN.md's 1.5–3%
    assert len(document["baseline"]["shares"]) == len(document["baseline"]["edges"]) + 1
    assert sum(document["baseline"]["shares"]) == pytest.approx(1)


@pytest.mark.parametrize("county", ["lankao", "jinzhai"])
def test_every_county_starts_with_the_default_scorecard_active(county, request):
    with in_county(request.getfixturevalue(county)):
        (scorecard,) = Scorecard.objects.all()
        assert (scorecard.version, scorecard.source, scorecard.is_active) == (1, "default", True)
        document = scorecard_default_document()
        assert scorecard.spec == document["spec"]
        assert scorecard.baseline == document["baseline"]
        assert scorecard_ensure_default() == scorecard
        assert Scorecard.objects.count() == 1


def test_activating_a_scorecard_retires_the_active_one(lankao):
    with in_county(lankao):
        default = Scorecard.objects.get(is_active=True)
        document = scorecard_default_document()
        other = Scorecard.objects.create(
            version=2,
            source="trained",
            spec=document["spec"],
            metrics={},
            baseline=document["baseline"],
            trained_at=timezone.now(),
        )
        with pytest.raises(IntegrityError, match="one_active_scorecard"), transaction.atomic():
            Scorecard.objects.filter(pk=other.pk).update(is_active=True)
        scorecard_activate(scorecard=other, actor="risk-officer")
        default.refresh_from_db()
        assert (default.is_active, other.is_active) == (False, True)
        assert scorecard_ensure_default() == other


# --- Training on a county's history ------------------------------------------------------------

CUTOFF_DAYS = 365


@pytest.fixture
def county_history(lankao):
    """A partner with an agreement covering the feature categories and a builder of farmers
    with consents, land records and loan outcomes, in bulk."""
    with in_county(lankao):
        partner = LendingPartner.objects.create(code="mybank", name="网商银行")
        make_agreement(partner, categories=[*FEATURE_CATEGORIES, "dishonest_debtor"])
        today = timezone.localdate()
        township = Township.objects.create(code="410225100", name="城关镇")
        village = Village.objects.create(code="410225100201", township=township, name="东村")
        land = DataCategory.objects.get(code="land_contract")
        batch = ImportBatch.objects.create(
            category=land,
            source=ImportBatch.Source.SYNTHETIC,
            content_sha256=hashlib.sha256(b"land").hexdigest(),
            as_of_date=today - dt.timedelta(days=400),
            submitted_by="test",
        )
        text = ConsentText.objects.get(purpose_code="credit", version=1)
        now = timezone.now()

        def add(
            areas: list[float], outcomes: list[list[tuple[int, int, int]]], consented: list[bool] | None = None
        ) -> list[Farmer]:
            """One farmer per area; outcomes per farmer as (started days ago, closed days ago,
            max days past due), bad when 90+."""
            start = Farmer.objects.count()
            households = Household.objects.bulk_create(
                Household(village=village, code=f"H{start + i:08d}") for i in range(len(areas))
            )
            farmers = Farmer.objects.bulk_create(
                Farmer(
                    household=household,
                    village=village,
                    name=f"农户{start + i}",
                    gender="M",
                    birth_date=dt.date(1975, 6, 1),
                    is_household_head=True,
                    id_number_encrypted="-",
                    id_number_hash=f"hash-{start + i}",
                )
                for i, household in enumerate(households)
            )
            consented = consented or [True] * len(areas)
            Consent.objects.bulk_create(
                Consent(
                    farmer=farmer,
                    partner=partner,
                    purpose_code="credit",
                    text=text,
                    categories=["land_contract"],
                    starts_at=now - dt.timedelta(days=1),
                    expires_at=now + dt.timedelta(days=300),
                    data_life_days=30,
                    channel=Consent.Channel.SELF,
                    status=Consent.Status.ACTIVE,
                    status_changed_at=now,
                    receipt={},
                    receipt_signature="-",
                )
                for farmer, ok in zip(farmers, consented, strict=True)
                if ok
            )
            GovernmentRecord.objects.bulk_create(
                GovernmentRecord(
                    category=land,
                    farmer=farmer,
                    record_key=f"LC-{farmer.pk}",
                    as_of_date=batch.as_of_date,
                    data={"contract_no": f"LC-{farmer.pk}", "parcels": 1, "area_mu": f"{area:.2f}"},
                    batch=batch,
                )
                for farmer, area in zip(farmers, areas, strict=True)
            )
            CreditOutcome.objects.bulk_create(
                CreditOutcome(
                    farmer=farmer,
                    started_on=today - dt.timedelta(days=started),
                    closed_on=today - dt.timedelta(days=closed),
                    principal="10000.00",
                    max_days_past_due=dpd,
                    bad=dpd >= 90,
                )
                for farmer, loans in zip(farmers, outcomes, strict=True)
                for started, closed, dpd in loans
            )
            return farmers

        yield SimpleNamespace(partner=partner, today=today, add=add)


def test_observation_point_is_twelve_months_back():
    assert observation_point(dt.date(2026, 11, 29)) == dt.date(2025, 11, 29)
    assert observation_point(dt.date(2024, 2, 29)) == dt.date(2023, 2, 28)
    assert observation_point(dt.date(2026, 1, 31)) == dt.date(2025, 1, 31)


def test_the_training_sample_labels_the_latest_loan_and_keeps_it_out_of_the_features(county_history):
    history, today = county_history, county_history.today
    cutoff_age = (today - observation_point(today)).days
    old = cutoff_age + 100  # a loan closed before the observation point
    repaid, late, bad = 0, 20, 120
    farmers = history.add(
        areas=[4.0, 6.0, 8.0, 10.0, 12.0, 14.0],
        outcomes=[
            # 0: repaid an old loan, defaulted on the latest → label 1; history counts only the old one
            [(old + 200, old, repaid), (200, 10, bad)],
            # 1: two loans in the window, the earlier bad, the latest good → label 0, no history
            [(300, 200, bad), (150, 30, repaid)],
            # 2: an old late loan only → not in the sample
            [(old + 100, old, late)],
            # 3: a loan in the window not yet closed on the business date → not in the sample
            [(100, -5, repaid)],
            # 4: no consent → not in the sample
            [(200, 10, bad)],
            # 5: old loans (one late, one repaid), latest repaid → label 0
            [(old + 300, old + 200, late), (old + 150, old + 1, repaid), (100, 1, repaid)],
        ],
        consented=[True, True, True, True, False, True],
    )
    columns, labels = scorecard_training_data(partner=history.partner, business_date=today)

    assert labels.tolist() == [1, 0, 0]  # farmers 0, 1, 5 by id
    assert columns["operated_area_mu"].tolist() == [4.0, 6.0, 14.0]
    assert columns["repaid_loans"].tolist() == [1.0, 0.0, 1.0]
    assert columns["max_days_past_due"].tolist() == [0.0, 0.0, 20.0]
    log = AccessLog.objects.get(accessor=TRAINING_JOB)
    assert (log.accessor_type, log.purpose, log.farmer_count, log.business_date) == ("job", "credit", 5, today)
    assert log.categories == sorted(FEATURE_CATEGORIES)
    assert len(farmers) == 6


def test_too_few_bads_is_refused_in_both_languages(county_history):
    history = county_history
    history.add(areas=[5.0] * 60, outcomes=[[(200, 10, 120 if i < 3 else 0)] for i in range(60)])
    with pytest.raises(ValidationError) as caught:
        scorecard_train_for_county(partner=history.partner, business_date=history.today)
    assert caught.value.code == "too_few_bads"
    assert caught.value.messages == [
        f"训练样本有 3 个违约、57 个正常，各至少需要 {MIN_BADS} 个，暂不能训练"
        f" / The training sample has 3 bads and 57 goods; at least {MIN_BADS} of each are needed"
    ]
    assert Scorecard.objects.count() == 1


def labelled_county(history, farmers: int = 900, seed: int = 3) -> None:
    """Farmers whose bad rate falls with their land (45% under 3 mu, 15% to 8 mu, 4% above)."""
    rng = np.random.default_rng(seed)
    areas = np.round(rng.lognormal(np.log(5), 0.8, farmers), 2) + 0.01
    risk = np.select([areas < 3, areas < 8], [0.45, 0.15], 0.04)
    bad = rng.random(farmers) < risk
    history.add(areas=areas.tolist(), outcomes=[[(200, 10, 120 if is_bad else 0)] for is_bad in bad])


def test_train_scorecard_reports_gini_ks_and_information_values(county_history):
    history = county_history
    labelled_county(history)
    policy_ensure_default(partner=history.partner)
    out = io.StringIO()
    call_command("train_scorecard", "--county", "410225", "--date", history.today.isoformat(), stdout=out)
    report = out.getvalue()

    scorecard = Scorecard.objects.get(version=2)
    assert (scorecard.source, scorecard.is_active) == ("trained", False)
    assert Scorecard.objects.get(is_active=True).version == 1
    metrics = scorecard.metrics
    assert metrics["sample_size"] == 900
    assert metrics["train_size"] + metrics["holdout_size"] == 900
    assert metrics["partner"] == "mybank"
    assert metrics["observation_point"] == observation_point(history.today).isoformat()
    gini = float(re.search(r"Gini (\d\.\d{4})", report).group(1))
    assert gini == metrics["gini"] > 0.2
    assert f"KS {metrics['ks']:.4f}" in report
    assert "scorecard v2 — not active" in report
    assert f"{metrics['bads']:,} bads" in report
    # Land carries the signal; every feature has its IV and DESIGN.md's label.
    assert iv_strength(metrics["iv"]["operated_area_mu"])[1] in {"medium", "strong"}
    for name, iv in metrics["iv"].items():
        label_zh, label_en = iv_strength(iv)
        assert re.search(rf"{name}\s+{iv:.4f}  {label_en} {label_zh}", report), name
    # Spec and baseline are stored, readable and score the county.
    assert [feature["name"] for feature in scorecard.spec["features"]] == list(FEATURE_NAMES)
    assert len(scorecard.baseline["shares"]) == len(scorecard.baseline["edges"]) + 1


def test_train_scorecard_can_activate_and_name_the_partner(county_history):
    history = county_history
    labelled_county(history, seed=4)
    out = io.StringIO()
    call_command(
        "train_scorecard", "--county", "410225", "--partner", "mybank", "--activate", "--seed", "5", stdout=out
    )
    active = Scorecard.objects.get(is_active=True)
    assert (active.version, active.source, active.metrics["seed"]) == (2, "trained", 5)
    assert "scorecard v2 — active" in out.getvalue()


def test_train_scorecard_refusals_are_bilingual(county_history):
    history = county_history
    with pytest.raises(CommandError, match="没有代码为 999999 的县 / no county with code 999999"):
        call_command("train_scorecard", "--county", "999999")
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("train_scorecard", "--county", "410225", "--date", "29/11/2026")
    with pytest.raises(CommandError, match=r"没有生效的授信政策.* / The county has no active credit policy"):
        call_command("train_scorecard", "--county", "410225")
    with pytest.raises(CommandError, match="no lending partner with code nobank"):
        call_command("train_scorecard", "--county", "410225", "--partner", "nobank")
    history.add(areas=[5.0] * 10, outcomes=[[(200, 10, 120 if i < 2 else 0)] for i in range(10)])
    with pytest.raises(
        CommandError, match=r"训练样本有 2 个违约.* / The training sample has 2 bads and 8 goods; at least 50"
    ):
        call_command("train_scorecard", "--county", "410225", "--partner", "mybank")
