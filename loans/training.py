"""Training a scorecard with optbinning (WoE binning with monotonic constraints + logistic
regression), turned into the readable spec that :mod:`loans.scorecard` scores with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loans.scorecard import FEATURES, ODDS, PDO, POINTS, baseline_of, score_points


@dataclass(frozen=True)
class TrainingResult:
    spec: dict
    metrics: dict
    baseline: dict


def gini_ks(scores: np.ndarray, bad: np.ndarray) -> tuple[float, float]:
    """Gini (2·AUC − 1) and Kolmogorov–Smirnov of scores where a higher score means less risk."""
    order = np.argsort(scores, kind="stable")
    bad_sorted = bad[order].astype(float)
    bads, goods = bad_sorted.sum(), (1 - bad_sorted).sum()
    cum_bad = np.cumsum(bad_sorted) / bads
    cum_good = np.cumsum(1 - bad_sorted) / goods
    ks = float(np.max(np.abs(cum_bad - cum_good)))
    # AUC that a random bad scores below a random good, with ties counted half.
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    auc = (ranks[bad == 0].sum() - goods * (goods + 1) / 2) / (goods * bads)
    return float(2 * auc - 1), ks


def scorecard_train(columns: dict[str, np.ndarray], bad: np.ndarray, *, seed: int = 0, holdout: float = 0.3) -> TrainingResult:
    """Fit on a random (1 − holdout) share, validate on the rest, return spec and metrics."""
    import pandas as pd
    from optbinning import BinningProcess, Scorecard
    from sklearn.linear_model import LogisticRegression

    names = [feature.name for feature in FEATURES]
    frame = pd.DataFrame({name: np.asarray(columns[name], dtype=float) for name in names})
    bad = np.asarray(bad, dtype=int)
    rng = np.random.default_rng(seed)
    test = rng.random(len(bad)) < holdout
    binning = BinningProcess(
        variable_names=names,
        binning_fit_params={f.name: {"monotonic_trend": f.trend, "max_n_bins": 6} for f in FEATURES},
    )
    card = Scorecard(
        binning_process=binning,
        estimator=LogisticRegression(max_iter=1000),
        scaling_method="pdo_odds",
        scaling_method_params={"pdo": PDO, "odds": ODDS, "scorecard_points": POINTS},
    )
    card.fit(frame[~test], bad[~test])
    table = card.table(style="detailed")
    features = []
    for name in names:
        optimal = card.binning_process_.get_binned_variable(name)
        rows = table[table["Variable"] == name]
        regular = rows[~rows["Bin"].isin(["Special", "Missing"])]
        missing = rows[rows["Bin"] == "Missing"]
        feature = next(f for f in FEATURES if f.name == name)
        features.append({
            "name": name,
            "label_zh": feature.label_zh,
            "label_en": feature.label_en,
            "edges": [float(edge) for edge in optimal.splits],
            "points": [round(float(p), 4) for p in regular["Points"]],
            "missing_points": round(float(missing["Points"].iloc[0]), 4),
            "woe": [round(float(w), 6) for w in regular["WoE"]],
            "bad_rate": [round(float(r), 6) for r in regular["Event rate"]],
            "count": [int(c) for c in regular["Count"]],
            "iv": round(float(regular["IV"].sum()), 6),
        })
    spec = {"scaling": {"points": POINTS, "odds": ODDS, "pdo": PDO}, "intercept_points": 0.0, "features": features}

    _points, test_scores = score_points(spec, {n: frame[n].to_numpy()[test] for n in names})
    _points, train_scores = score_points(spec, {n: frame[n].to_numpy()[~test] for n in names})
    gini, ks = gini_ks(test_scores, bad[test])
    metrics = {
        "gini": round(gini, 4),
        "ks": round(ks, 4),
        "iv": {f["name"]: f["iv"] for f in features},
        "train_size": int((~test).sum()),
        "holdout_size": int(test.sum()),
        "bad_rate": round(float(bad.mean()), 6),
    }
    return TrainingResult(spec=spec, metrics=metrics, baseline=baseline_of(train_scores))
