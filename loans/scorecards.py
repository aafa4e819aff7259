"""Writes and reads for the county's scorecards: the shipped default, training on the county's
labelled history, and activation.

A scorecard is a readable spec (see :mod:`loans.scorecard` for scoring, :mod:`loans.training`
for the fit). Every county starts with the default trained on a synthetic sample
(``loans/default_scorecard.json``, loaded as version 1 by migration ``loans.0003``); a trained
scorecard is stored inactive, and an official switches to it with :func:`scorecard_activate`
after reading its validation (Gini, KS, information values).

Training reads government data only through the consent gate, like the nightly batch.

The sample (observation point and performance window, the usual credit-scoring design):

* the observation point is ``business_date`` − 12 months;
* the population is the gated farmers with a loan that started after the observation point
  and has closed by ``business_date``; the label is the ``bad`` flag of the latest such loan;
* repayment-history features count only loans closed on or before the observation point
  (``exclude_outcomes_after``), so the loan being labelled — and anything after it started —
  never feeds its own prediction.

Government-data features are read as of ``business_date``, since the gate admits data under the
consent in force now; those records (land, subsidies, insurance, pensions) change slowly, and a
year's drift is accepted rather than reading data the farmer no longer consents to.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from data_sharing.catalog import CREDIT_PURPOSE
from data_sharing.gate import GATED_FARMERS, batch_gate
from loans.features import FEATURE_CATEGORIES, feature_columns
from loans.models import CreditOutcome, Scorecard
from loans.scorecard import FEATURE_NAMES
from loans.training import scorecard_train
from platform.models import LendingPartner

logger = logging.getLogger(__name__)

DEFAULT_SCORECARD_PATH = Path(__file__).resolve().parent / "default_scorecard.json"
TRAINING_JOB = "scorecard-training"
PERFORMANCE_WINDOW_MONTHS = 12
# Fewer bads than this and the bins' bad rates (and the holdout's Gini) are noise.
MIN_BADS = 50

# Population stability bands (DESIGN.md); at PSI_WARNING the nightly run raises a warning.
PSI_WATCH = 0.1
PSI_WARNING = 0.25


# --- Reads -------------------------------------------------------------------------------------


def scorecard_default_document() -> dict:
    """The shipped default as stored: ``provenance``, ``spec``, ``metrics``, ``baseline``."""
    return json.loads(DEFAULT_SCORECARD_PATH.read_text(encoding="utf-8"))


def scorecard_default_spec() -> dict:
    """The shipped default scorecard's spec (bins and points per feature)."""
    return scorecard_default_document()["spec"]


def scorecard_active() -> Scorecard | None:
    return Scorecard.objects.filter(is_active=True).first()


def iv_strength(iv: float) -> tuple[str, str]:
    """DESIGN.md's reading of an information value, (zh, en): < 0.02 useless, 0.02–0.1 weak,
    0.1–0.3 medium, > 0.3 strong."""
    if iv < 0.02:
        return "无预测力", "useless"
    if iv < 0.1:
        return "弱", "weak"
    if iv <= 0.3:
        return "中", "medium"
    return "强", "strong"


def psi_status(psi: float) -> str:
    """``stable`` (< 0.1), ``watch`` (0.1–0.25) or ``shifted`` (≥ 0.25: warn)."""
    if psi >= PSI_WARNING:
        return "shifted"
    return "watch" if psi >= PSI_WATCH else "stable"


# --- Writes ------------------------------------------------------------------------------------


def scorecard_ensure_default() -> Scorecard:
    """The active scorecard; if the county has none, the shipped default is stored (version 1
    for a new county) and activated. Migration ``loans.0003`` does this for every new county."""
    with transaction.atomic():
        _lock_scorecards()
        active = scorecard_active()
        if active is not None:
            return active
        shipped = scorecard_default_document()
        scorecard = Scorecard.objects.create(
            version=_next_version(),
            source="default",
            spec=shipped["spec"],
            metrics=shipped["metrics"],
            baseline=shipped["baseline"],
            is_active=True,
            trained_at=dt.datetime.fromisoformat(shipped["provenance"]["generated_at"]),
        )
    logger.info("scorecard v%s: shipped default activated", scorecard.version)
    return scorecard


def scorecard_activate(*, scorecard: Scorecard, actor: str) -> Scorecard:
    """Score with ``scorecard`` from the next run on; the previous one is deactivated."""
    if not actor or not actor.strip():
        raise ValidationError(_("必须注明操作人 / The acting official is required"), code="actor")
    with transaction.atomic():
        _lock_scorecards()
        scorecard.refresh_from_db()
        if scorecard.is_active:
            return scorecard
        previous = scorecard_active()
        # The previous one goes first: one_active_scorecard is checked per statement.
        Scorecard.objects.filter(is_active=True).update(is_active=False)
        scorecard.is_active = True
        scorecard.save(update_fields=["is_active"])
    logger.info(
        "scorecard v%s activated by %s (was v%s)", scorecard.version, actor, previous.version if previous else None
    )
    return scorecard


def scorecard_train_for_county(*, partner: LendingPartner, business_date: dt.date, seed: int = 0) -> Scorecard:
    """Train on the county's labelled history (see the module docstring for the sample), validate
    on a 30% holdout and store the result as a new, inactive version."""
    columns, bad = scorecard_training_data(partner=partner, business_date=business_date)
    bads = int(bad.sum())
    goods = len(bad) - bads
    if bads < MIN_BADS or goods < MIN_BADS:
        raise ValidationError(
            _(
                "训练样本有 %(bads)s 个违约、%(goods)s 个正常，各至少需要 %(min)s 个，暂不能训练"
                " / The training sample has %(bads)s bads and %(goods)s goods; at least %(min)s of each are needed"
            )
            % {"bads": bads, "goods": goods, "min": MIN_BADS},
            code="too_few_bads",
        )
    # The fit runs outside any transaction: nothing is held open while optbinning works.
    result = scorecard_train(columns, bad, seed=seed)
    metrics = {
        **result.metrics,
        "sample_size": len(bad),
        "bads": bads,
        "business_date": business_date.isoformat(),
        "observation_point": observation_point(business_date).isoformat(),
        "partner": partner.code,
        "seed": seed,
    }
    with transaction.atomic():
        _lock_scorecards()
        scorecard = Scorecard.objects.create(
            version=_next_version(),
            source="trained",
            spec=result.spec,
            metrics=metrics,
            baseline=result.baseline,
            is_active=False,
            trained_at=timezone.now(),
        )
    return scorecard


def observation_point(business_date: dt.date) -> dt.date:
    """``business_date`` − 12 months (29 Feb → 28 Feb)."""
    year, month_index = divmod(business_date.year * 12 + business_date.month - 1 - PERFORMANCE_WINDOW_MONTHS, 12)
    month = month_index + 1
    return dt.date(year, month, min(business_date.day, calendar.monthrange(year, month)[1]))


def scorecard_training_data(
    *, partner: LendingPartner, business_date: dt.date
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Feature columns (one float array per feature, aligned) and bad flags (0/1) of the
    county's training sample; see the module docstring. Reads through the consent gate (one
    access-log row for the job)."""
    cutoff = observation_point(business_date)
    with transaction.atomic():
        batch_gate(
            partner=partner,
            categories=FEATURE_CATEGORIES,
            business_date=business_date,
            job=TRAINING_JOB,
            purpose=CREDIT_PURPOSE,
        )
        labelled, bad = _latest_outcomes(cutoff=cutoff, business_date=business_date)
        if not len(labelled):
            return {name: np.empty(0) for name in FEATURE_NAMES}, np.empty(0, dtype=int)
        farmer_ids, columns = feature_columns(business_date=business_date, exclude_outcomes_after=cutoff)
    # Every labelled farmer is a gated one, and feature_columns covers every gated farmer.
    order = np.argsort(farmer_ids, kind="stable")
    rows = order[np.minimum(np.searchsorted(farmer_ids, labelled, sorter=order), len(order) - 1)]
    if not np.array_equal(np.asarray(farmer_ids)[rows], labelled):
        raise RuntimeError("feature_columns left out gated farmers that have labels")
    return {name: np.asarray(columns[name], dtype=float)[rows] for name in FEATURE_NAMES}, bad


def _latest_outcomes(*, cutoff: dt.date, business_date: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """(farmer ids ascending, bad flags) of the gated farmers' latest loan started after
    ``cutoff`` and closed by ``business_date``."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT DISTINCT ON (o.farmer_id) o.farmer_id, o.bad
              FROM {CreditOutcome._meta.db_table} o
              JOIN {GATED_FARMERS} g ON g.farmer_id = o.farmer_id
             WHERE o.started_on > %(cutoff)s AND o.closed_on <= %(business_date)s
             ORDER BY o.farmer_id, o.started_on DESC, o.closed_on DESC, o.id DESC
            """,
            {"cutoff": cutoff, "business_date": business_date},
        )
        rows = cursor.fetchall()
    farmer_ids = np.fromiter((farmer_id for farmer_id, _bad in rows), dtype=np.int64, count=len(rows))
    bad = np.fromiter((int(flag) for _farmer_id, flag in rows), dtype=int, count=len(rows))
    return farmer_ids, bad


def _lock_scorecards() -> None:
    # Versions are numbered max + 1 and one scorecard is active: writers take turns, readers
    # (the nightly batch) carry on.
    with connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {Scorecard._meta.db_table} IN EXCLUSIVE MODE")


def _next_version() -> int:
    latest = Scorecard.objects.order_by("-version").values_list("version", flat=True).first()
    return (latest or 0) + 1
