"""Build ``loans/default_scorecard.json``, the scorecard a new county scores with on day one.

A new county has no labelled history of its own, so the default is trained with
:func:`loans.training.scorecard_train` on a synthetic sample drawn here: feature columns shaped
like a county's (DESIGN.md, "Synthetic county") and a default flag drawn from a stated hidden
logistic process, calibrated to a bad rate of about 2.2% (the design's 1.5–3%). Run

    .venv/bin/python -m loans.default_scorecard_build [--size 60000] [--seed 2024]

and commit the JSON; migration ``loans.0003_default_scorecard`` loads it into every new county
as scorecard version 1. Once a county has its own labelled history, ``manage.py
train_scorecard`` replaces it. The same size and seed always give the same file (but for
``generated_at``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np

DEFAULT_SCORECARD_PATH = Path(__file__).resolve().parent / "default_scorecard.json"

# The hidden process: log-odds of going 90+ days past due. Signs follow the business view
# (land, insurance, social insurance, organisation and a clean record lower the risk; poverty
# monitoring and past delays raise it; the very young and the old are riskier than the middle).
HIDDEN_LOGIT = {
    "intercept": -2.2,
    "log1p_area": -0.5,
    "insured_share": -0.85,
    "social_insurance_years": -0.045,
    "organized": -0.40,
    "poverty_monitored": 0.65,
    "repaid_loans_capped_4": -0.28,
    "max_days_past_due_capped_120": 0.02,
    "age_squared_from_42": 0.0009,
}


def synthetic_training_sample(*, size: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Feature columns (named as :data:`loans.scorecard.FEATURE_NAMES`) and bad flags."""
    rng = np.random.default_rng(seed)
    age = np.clip(np.rint(rng.normal(47, 12, size)), 18, 75)
    # Land: lognormal with median 6 mu, 1.5% large farms of 50–500 mu, 4% farming none.
    area = rng.lognormal(np.log(6), 0.75, size)
    large = rng.random(size) < 0.015
    area[large] = np.exp(rng.uniform(np.log(50), np.log(500), large.sum()))
    area[rng.random(size) < 0.04] = 0.0
    area = np.round(area, 2)
    insured = (rng.random(size) < 0.72) & (area > 0)
    insured_share = np.where(insured, np.round(rng.beta(6, 2, size), 3), 0.0)
    # Subsidies ≈ 80–130 yuan per mu, paid to about 92% of those farming.
    subsidy = np.where(rng.random(size) < 0.92, np.round(area * rng.uniform(80, 130, size), 2), 0.0)
    # The resident pension scheme started in 2009: at most ~15 years; 15% never contributed.
    social_years = np.minimum(age - 18, rng.integers(0, 16, size)).astype(float)
    social_years[rng.random(size) < 0.15] = 0.0
    organized = (rng.random(size) < np.where(area >= 30, 0.8, 0.42)).astype(float)
    poverty = (rng.random(size) < np.where(area < 3, 0.12, 0.05)).astype(float)
    # Platform history: 35% borrowed before; their longest delay is mostly none.
    has_history = rng.random(size) < 0.35
    repaid = np.where(has_history, rng.poisson(1.5, size) + 1, 0).astype(float)
    delay_band = rng.choice(4, size=size, p=(0.75, 0.14, 0.07, 0.04))
    delay = np.select(
        [delay_band == 1, delay_band == 2, delay_band == 3],
        [rng.integers(1, 31, size), rng.integers(31, 90, size), rng.integers(90, 181, size)],
        0,
    )
    max_dpd = np.where(has_history, delay, 0).astype(float)

    h = HIDDEN_LOGIT
    logit = (
        h["intercept"]
        + h["log1p_area"] * np.log1p(area)
        + h["insured_share"] * insured_share
        + h["social_insurance_years"] * social_years
        + h["organized"] * organized
        + h["poverty_monitored"] * poverty
        + h["repaid_loans_capped_4"] * np.minimum(repaid, 4)
        + h["max_days_past_due_capped_120"] * np.minimum(max_dpd, 120)
        + h["age_squared_from_42"] * (age - 42) ** 2
    )
    bad = (rng.random(size) < 1 / (1 + np.exp(-logit))).astype(int)
    columns = {
        "operated_area_mu": area,
        "insured_share": insured_share,
        "subsidy_yuan": subsidy,
        "social_insurance_years": social_years,
        "organized": organized,
        "poverty_monitored": poverty,
        "repaid_loans": repaid,
        "max_days_past_due": max_dpd,
        "age": age,
    }
    return columns, bad


def default_scorecard_build(*, size: int, seed: int) -> dict:
    from loans.training import scorecard_train

    columns, bad = synthetic_training_sample(size=size, seed=seed)
    result = scorecard_train(columns, bad, seed=seed)
    return {
        "format": 1,
        "provenance": {
            "source": "synthetic",
            "text_en": (
                "Trained with loans.training.scorecard_train on a synthetic sample of "
                f"{size:,} farmers drawn by loans/default_scorecard_build.py (seed {seed}): feature "
                "distributions follow DESIGN.md's synthetic county and the bad flag a stated hidden "
                "logistic process (HIDDEN_LOGIT). No real county's history went into it; retrain on "
                "the county's own labelled history with manage.py train_scorecard."
            ),
            "text_zh": (
                "由 loans/default_scorecard_build.py 生成的模拟样本训练（非任何真实县的数据）；"
                "县有了自己的还款历史后，请用 manage.py train_scorecard 重新训练。"
            ),
            "sample_size": size,
            "seed": seed,
            "hidden_logit": HIDDEN_LOGIT,
            "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "spec": result.spec,
        "metrics": result.metrics,
        "baseline": result.baseline,
    }


def readable_json(value, indent: int = 0) -> str:
    """JSON with objects one key per line and lists of numbers or strings on one line, so a
    feature's edges, points and bad rates read as rows."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{json.dumps(key, ensure_ascii=False)}: {readable_json(item, indent + 1)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        return "[\n" + ",\n".join(f"{inner}{readable_json(item, indent + 1)}" for item in value) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--output", type=Path, default=DEFAULT_SCORECARD_PATH)
    args = parser.parse_args()
    built = default_scorecard_build(size=args.size, seed=args.seed)
    args.output.write_text(readable_json(built) + "\n", encoding="utf-8")
    metrics = built["metrics"]
    print(f"{args.output}: gini {metrics['gini']}, ks {metrics['ks']}, bad rate {metrics['bad_rate']}")


if __name__ == "__main__":
    main()
