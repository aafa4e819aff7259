"""Scorecards: training (optbinning), the readable spec, vectorised scoring, reasons and PSI.

A scorecard is stored as a spec — per feature, its bins (numeric upper edges) and the points
each bin earns — so an official can read it and the nightly batch scores a million farmers with
``numpy.searchsorted`` and a sum, without unpickling a model. Scaling is explicit: 600 points at
good:bad odds of 50:1, 20 points to double the odds, so

    factor = 20 / ln 2 = 28.8539,  offset = 600 − factor × ln 50 = 487.1229,
    score  = offset + factor × ln(odds),  PD = 1 / (1 + exp((score − offset) / factor)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PDO = 20
ODDS = 50
POINTS = 600
FACTOR = PDO / math.log(2)
OFFSET = POINTS - FACTOR * math.log(ODDS)


@dataclass(frozen=True)
class Feature:
    name: str
    label_zh: str
    label_en: str
    # optbinning's monotonic_trend for the bad rate as the value grows ("descending": more is
    # better), or "auto" where the business expects no fixed direction (age).
    trend: str
    # Shown as a reason when this feature cost the most points.
    reason_zh: str
    reason_en: str
    # How the farmer can raise it, for features they can act on (else empty).
    hint_zh: str = ""
    hint_en: str = ""


FEATURES: tuple[Feature, ...] = (
    Feature(
        "operated_area_mu", "经营土地面积（亩）", "Land farmed (mu)", "descending",
        "经营的土地面积较小", "The land you farm is small",
        "登记土地流转合同，转入的土地会计入经营面积", "Register your land transfer contracts: land rented in counts",
    ),
    Feature(
        "insured_share", "农业保险覆盖比例", "Share of land insured", "descending",
        "土地的农业保险覆盖不足", "Little of your land is insured",
        "为种植的作物投保农业保险", "Insure your crops with agricultural insurance",
    ),
    Feature(
        "subsidy_yuan", "近一年农业补贴（元）", "Agricultural subsidies last year (yuan)", "descending",
        "领取的农业补贴较少", "You received few agricultural subsidies",
    ),
    Feature(
        "social_insurance_years", "社保缴费年限", "Social insurance years", "descending",
        "社会保险缴费年限较短", "Few years of social insurance contributions",
        "按时缴纳城乡居民养老保险", "Keep paying into the resident pension scheme",
    ),
    Feature(
        "organized", "合作社或经营主体", "Cooperative or registered entity", "descending",
        "未加入合作社或登记家庭农场", "Not in a cooperative or a registered family farm",
        "加入农民专业合作社或登记家庭农场", "Join a cooperative or register a family farm",
    ),
    Feature(
        "poverty_monitored", "防返贫监测户", "Under poverty monitoring", "ascending",
        "家庭处于防返贫监测中", "Your household is under poverty-relapse monitoring",
    ),
    Feature(
        "repaid_loans", "平台按时还清的贷款笔数", "Loans repaid on time on the platform", "descending",
        "在平台上的还款记录较少", "Little repayment history on the platform",
        "按时还款会积累信用记录", "Repaying on time builds your record",
    ),
    Feature(
        "max_days_past_due", "历史最长逾期天数", "Longest past delay (days)", "ascending",
        "曾有逾期还款", "You have paid late before",
        "今后按时还款", "Pay on time from now on",
    ),
    Feature("age", "年龄", "Age", "auto", "年龄因素", "Age"),
)
FEATURE_NAMES = tuple(feature.name for feature in FEATURES)
FEATURE_BY_NAME = {feature.name: feature for feature in FEATURES}


def pd_from_score(score: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp((np.asarray(score, dtype=float) - OFFSET) / FACTOR))


def score_points(spec: dict, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Points per farmer per feature (shape farmers × features, in spec order) and the total
    score, rounded to whole points. ``columns`` maps feature names to float arrays; NaN is
    "missing" and earns the feature's missing points."""
    feature_specs = spec["features"]
    size = len(next(iter(columns.values())))
    points = np.empty((size, len(feature_specs)), dtype=float)
    for index, feature in enumerate(feature_specs):
        values = np.asarray(columns[feature["name"]], dtype=float)
        edges = np.asarray(feature["edges"], dtype=float)  # upper edges of all bins but the last
        bin_points = np.asarray(feature["points"], dtype=float)
        # Bins are [edge_{i-1}, edge_i): a value equal to an edge falls in the upper bin.
        points[:, index] = bin_points[np.searchsorted(edges, values, side="right")]
        points[np.isnan(values), index] = feature["missing_points"]
    total = np.rint(points.sum(axis=1) + spec.get("intercept_points", 0.0))
    return points, total


def reasons(spec: dict, points: np.ndarray, top: int = 3) -> np.ndarray:
    """Indices (into spec["features"]) of the ``top`` features that lost the most points
    against their best bin, most first; ties keep the spec's feature order."""
    best = np.asarray([max(max(f["points"]), f["missing_points"]) for f in spec["features"]], dtype=float)
    lost = best[np.newaxis, :] - points
    # A stable sort of −lost keeps the feature order among equal losses.
    return np.argsort(-lost, axis=1, kind="stable")[:, :top], lost


def psi(baseline: dict, scores: np.ndarray) -> float:
    """Population stability index of ``scores`` against the training baseline's bins."""
    edges = np.asarray(baseline["edges"], dtype=float)
    expected = np.asarray(baseline["shares"], dtype=float)
    counts = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(expected))
    actual = counts / max(counts.sum(), 1)
    # An empty bin would make ln(0); 1e-4 is the usual floor.
    expected = np.clip(expected, 1e-4, None)
    actual = np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def baseline_of(scores: np.ndarray, bins: int = 10) -> dict:
    """Decile edges of the training scores and their shares (each about 10%)."""
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(edges) + 1)
    return {"edges": [float(e) for e in edges], "shares": [float(c) for c in counts / counts.sum()]}
