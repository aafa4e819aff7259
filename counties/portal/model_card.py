"""Reads for the policy page: the active scorecard's model card and the PSI of every night."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from loans.models import AssessmentRun, Scorecard
from loans.scorecard import FEATURE_BY_NAME
from loans.scorecards import iv_strength, psi_status

# The PSI chart and table reach back this many nights.
PSI_HISTORY_NIGHTS = 120


@dataclass(frozen=True)
class FeatureCard:
    name: str
    label_zh: str
    label_en: str
    iv: float | None
    strength_zh: str
    strength_en: str
    bins: int


def model_card(scorecard: Scorecard) -> dict:
    """Gini, KS, bad rate and sample sizes of the scorecard's validation, and per feature (in the
    scorecard's order) its information value read as DESIGN.md's bands. A scorecard stored
    without metrics shows none (None), never zeros."""
    metrics = scorecard.metrics or {}
    iv = metrics.get("iv") or {}
    features = []
    for spec in scorecard.spec.get("features", []):
        name = spec["name"]
        known = FEATURE_BY_NAME.get(name)
        value = iv.get(name)
        strength = iv_strength(float(value)) if value is not None else ("", "")
        features.append(
            FeatureCard(
                name=name,
                label_zh=known.label_zh if known else spec.get("label_zh", name),
                label_en=known.label_en if known else spec.get("label_en", name),
                iv=float(value) if value is not None else None,
                strength_zh=strength[0],
                strength_en=strength[1],
                bins=len(spec.get("points", [])),
            )
        )
    return {
        "scorecard": scorecard,
        "gini": metrics.get("gini"),
        "ks": metrics.get("ks"),
        "bad_rate": metrics.get("bad_rate"),
        "train_size": metrics.get("train_size"),
        "holdout_size": metrics.get("holdout_size"),
        "sample_size": metrics.get("sample_size"),
        "features": features,
    }


def psi_history(*, nights: int = PSI_HISTORY_NIGHTS) -> list[dict]:
    """The PSI of each night's scores against its scorecard's baseline, oldest first (nights
    without a PSI — failed, or nobody scored — are left out)."""
    runs = (
        AssessmentRun.objects.filter(psi__isnull=False)
        .select_related("scorecard", "policy")
        .order_by("-business_date")[:nights]
    )
    return [
        {
            "business_date": run.business_date,
            "psi": run.psi,
            "status": psi_status(float(run.psi)),
            "warning": run.psi_warning,
            "scorecard_version": run.scorecard.version,
            "policy_version": run.policy.version,
            "scored": run.counts.get("scored"),
        }
        for run in reversed(list(runs))
    ]


def psi_chart(history: list[dict]) -> dict:
    """The PSI history as the chart script reads it (dates and decimal strings)."""
    return {
        "dates": [row["business_date"].isoformat() for row in history],
        "psi": [str(row["psi"].quantize(Decimal("0.0001"))) for row in history],
    }
