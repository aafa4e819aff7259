"""The nightly credit assessment of one county for one business date D.

Plan, chunks, finish:

1. :func:`assessment_run_start` pins the active policy and scorecard on an
   :class:`~loans.models.AssessmentRun` and splits the roster into chunks of consecutive farmer
   ids (:class:`~loans.models.AssessmentChunk`), so every attempt at D — a rerun after a crash,
   a retried Celery task — works on the same plan with the same policy and scorecard.
2. :func:`assessment_chunk_process` assesses one chunk in **one transaction**: the consent gate
   for the chunk's id range (:func:`data_sharing.gate.batch_gate`), the features in one read
   (:mod:`loans.features`), scoring, eligibility, reasons and sizing vectorised over the chunk
   (:mod:`loans.scorecard`, :mod:`loans.sizing`), a binary COPY into a staging table, one
   statement that upserts the assessments and the lines, one that suspends the lines of farmers
   the gate no longer admits, one that expires stale lines, and the chunk marked done. A worker
   killed half-way leaves nothing of that chunk; a done chunk is never redone.
3. :func:`assessment_run_finish` sums the chunks' counts, computes the PSI of the scores
   against the scorecard's training baseline (≥ 0.25 raises the county's warning) and closes
   the run.

:func:`credit_assessment_run` does all three in this process (the nightly step);
:mod:`loans.tasks` fans the chunks out to Celery workers as a chord.

Chunk size and memory: :data:`DEFAULT_CHUNK_SIZE` farmers per chunk. The numpy work is about
0.7 KB per consenting farmer (15 float columns read, the farmers × features points matrix, the
full argsort of losses for the reasons and hint, sizing arrays, the ~230-byte binary staging
rows): 50,000 roster farmers (~32,000 consenting) measured 22 MB at peak (tracemalloc), 32 MB of
RSS growth on a worker of ~90 MB; 100,000 cost twice that. PostgreSQL holds the chunk's gated
records (~110,000 rows, ~25 MB) in temporary tables, kept in memory by raising
``temp_buffers``. A chunk takes ~3.5 s on this machine, so a crash throws away seconds, and a
county of a million farmers reports progress in 20 steps.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
import time
import traceback
from collections.abc import Iterable
from contextlib import contextmanager
from decimal import Decimal

import numpy as np
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from counties.models import Farmer
from data_sharing.catalog import CREDIT_PURPOSE
from data_sharing.consent_selectors import consent_allows_drawdown
from data_sharing.gate import GATED_FARMERS, agreed_category_codes, batch_gate
from loans.features import ELIGIBILITY_CATEGORIES, FEATURE_CATEGORIES, assessment_inputs
from loans.models import AssessmentChunk, AssessmentRun, CreditLine, CreditPolicy, Scorecard
from loans.policy import policy_active
from loans.scorecard import FEATURE_BY_NAME, FEATURE_NAMES, pd_from_score, psi, reasons, score_points
from loans.scorecards import PSI_WARNING, scorecard_active, scorecard_ensure_default
from loans.sizing import NO_LINE, SizingPolicy, area_centimu, grade_index, line_fen, pd_millionths

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 50_000
JOB = "nightly:credit_assessment"
STAGE_TABLE = "credit_assessment_stage"
# Eligibility rules an assessment can fail, as bits of the staged mask (order = display order).
EXCLUSIONS = ("age", "dishonest_debtor", "overdue", "grade")
TOP_REASONS = 3
# Points lost below this are rounding noise, not a reason.
_LOST_EPSILON = 1e-6
_COUNT_KEYS = ("roster", "scored", "eligible", "lines_new", "lines_up", "lines_down", "lines_unchanged", "frozen", "expired")


class CreditAssessmentError(RuntimeError):
    """The county is not set up for the run (no agreement covers the court's list, …)."""


# --- The nightly step --------------------------------------------------------------------------


def credit_assessment_run(*, business_date: dt.date, chunk_size: int = DEFAULT_CHUNK_SIZE, recompute: bool = False) -> dict:
    """The nightly step: assess every chunk of D not yet done, in this process, then finish.

    Running a date again is safe: a finished run returns its counts without touching anything
    (``recompute=True`` re-plans and reassesses it, e.g. after a data correction); a failed or
    interrupted one resumes with the chunks still missing. Each chunk commits on its own when
    this runs outside a transaction; inside one (``nightly_run`` wraps each step in
    ``transaction.atomic``), chunks are savepoints and the step commits as a whole.
    """
    run = assessment_run_start(business_date=business_date, chunk_size=chunk_size, recompute=recompute)
    if run is None:
        return {"skipped": "no_active_policy"}
    if run.status == AssessmentRun.Status.SUCCEEDED:
        return run_summary(run)
    for number in assessment_chunks_pending(run_id=run.pk):
        assessment_chunk_run(run_id=run.pk, chunk_number=number)
    return run_summary(assessment_run_finish(run_id=run.pk))


# --- Plan --------------------------------------------------------------------------------------



# counties.services.nightly_run must not wrap this step in one transaction: each chunk commits
# on its own so a crash keeps finished chunks and the rerun does only the rest.
credit_assessment_run.manages_own_transactions = True

def assessment_run_start(
    *, business_date: dt.date, chunk_size: int = DEFAULT_CHUNK_SIZE, recompute: bool = False
) -> AssessmentRun | None:
    """The run of D, created and planned if new (None when the county has no active policy).

    An unfinished run keeps its plan, policy and scorecard and is marked running again; a
    finished one is left as it is unless ``recompute``, which re-plans it with the policy and
    scorecard active now.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    with transaction.atomic():
        run = _locked_run(business_date)
        if run is None:
            policy = policy_active()
            if policy is None:
                return None
            scorecard = scorecard_active() or scorecard_ensure_default()
            try:
                with transaction.atomic():
                    run = AssessmentRun.objects.create(
                        business_date=business_date, policy=policy, scorecard=scorecard,
                        chunk_size=chunk_size, started_at=timezone.now(),
                    )
            except IntegrityError:  # another process planned D meanwhile: use its plan
                run = _locked_run(business_date)
                return _resumed(run)
            _plan_chunks(run)
            return run
        if recompute:
            policy = policy_active()
            if policy is None:
                return None
            run.policy = policy
            run.scorecard = scorecard_active() or scorecard_ensure_default()
            run.chunk_size = chunk_size
            run.chunks.all().delete()
            run.status = AssessmentRun.Status.RUNNING
            run.started_at, run.finished_at = timezone.now(), None
            run.counts, run.psi, run.psi_warning, run.error = {}, None, False, ""
            run.save()
            _plan_chunks(run)
            return run
        return _resumed(run)


def _locked_run(business_date: dt.date) -> AssessmentRun | None:
    return AssessmentRun.objects.select_for_update().filter(business_date=business_date).first()


def _resumed(run: AssessmentRun) -> AssessmentRun:
    if run.status != AssessmentRun.Status.SUCCEEDED:
        run.status = AssessmentRun.Status.RUNNING
        run.finished_at, run.error = None, ""
        run.counts = {**run.counts, "attempts": run.counts.get("attempts", 1) + 1}
        run.save(update_fields=["status", "finished_at", "error", "counts"])
    return run


def _plan_chunks(run: AssessmentRun) -> None:
    """Consecutive id ranges of ``chunk_size`` roster farmers each, numbered from 1."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {AssessmentChunk._meta.db_table} (run_id, number, first_farmer_id, last_farmer_id, done, counts)
            SELECT %(run_id)s, n + 1, min(id), max(id), false, '{{}}'::jsonb
              FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / %(size)s AS n FROM {Farmer._meta.db_table}) s
             GROUP BY n
            """,
            {"run_id": run.pk, "size": run.chunk_size},
        )
        run.chunks_total = cursor.rowcount
    run.chunks_done = 0
    run.counts = {"attempts": 1}
    run.save(update_fields=["chunks_total", "chunks_done", "counts"])


def assessment_chunks_pending(*, run_id: int) -> list[int]:
    return list(
        AssessmentChunk.objects.filter(run_id=run_id, done=False).order_by("number").values_list("number", flat=True)
    )


# --- One chunk -----------------------------------------------------------------------------------


def assessment_chunk_run(*, run_id: int, chunk_number: int) -> dict:
    """:func:`assessment_chunk_process`, recording a failure on the run before re-raising it."""
    try:
        return assessment_chunk_process(run_id=run_id, chunk_number=chunk_number)
    except Exception:
        assessment_run_fail(run_id=run_id, error=f"chunk {chunk_number}: {traceback.format_exc(limit=5)}")
        raise


def assessment_chunk_process(*, run_id: int, chunk_number: int) -> dict:
    """Assess one chunk in one transaction and mark it done with its counts; a chunk already
    done returns its counts untouched (a redelivered task, a second worker)."""
    began = time.monotonic()
    with transaction.atomic():
        # The row lock makes a second worker on the same chunk wait, then find it done.
        chunk = (
            AssessmentChunk.objects.select_for_update(of=("self",))
            .select_related("run__policy__partner", "run__scorecard")
            .get(run_id=run_id, number=chunk_number)
        )
        if chunk.done:
            return chunk.counts
        counts = _assess_chunk(chunk)
        chunk.done, chunk.counts, chunk.seconds = True, counts, round(time.monotonic() - began, 3)
        chunk.save(update_fields=["done", "counts", "seconds"])
        # Last, so the run row is locked only for the instant before commit.
        AssessmentRun.objects.filter(pk=run_id).update(chunks_done=F("chunks_done") + 1)
    return counts


def _assess_chunk(chunk: AssessmentChunk) -> dict:
    run = chunk.run
    policy, scorecard, day = run.policy, run.scorecard, run.business_date
    first, last = chunk.first_farmer_id, chunk.last_farmer_id
    categories = _categories(policy, day)
    clock = _Clock()
    _temp_buffers_raise()
    with _gate_settings():
        gate = batch_gate(
            partner=policy.partner, categories=categories, business_date=day, job=JOB,
            purpose=CREDIT_PURPOSE, farmer_ids=(first, last),
        )
    clock.lap("gate")
    farmer_ids, columns = assessment_inputs(business_date=day)
    clock.lap("features")
    assessed = assess(policy=policy, scorecard=scorecard, columns=columns)
    counts = _chunk_counts(assessed, columns, baseline=scorecard.baseline)
    counts["gated"] = gate.farmer_count
    counts["records"] = gate.record_count
    counts["access_log_id"] = gate.access_log_id
    clock.lap("score")
    now = timezone.now()
    with connection.cursor() as cursor:
        _stage(cursor, farmer_ids, columns, assessed)
        clock.lap("stage")
        _write(cursor, run=run, now=now)
        clock.lap("write")
        cursor.execute(
            f"""UPDATE {CreditLine._meta.db_table} l SET status = 'suspended', suspension = 'no_consent', updated_at = %(now)s
                 WHERE l.farmer_id BETWEEN %(first)s AND %(last)s AND l.status = 'active'
                   AND NOT EXISTS (SELECT 1 FROM {GATED_FARMERS} g WHERE g.farmer_id = l.farmer_id)""",
            {"now": now, "first": first, "last": last},
        )
        frozen_no_consent = cursor.rowcount
        # Lines renewed tonight run to D + validity; one still ending before D was not renewed.
        cursor.execute(
            f"""UPDATE {CreditLine._meta.db_table} SET status = 'expired', updated_at = %(now)s
                 WHERE farmer_id BETWEEN %(first)s AND %(last)s AND valid_until < %(day)s AND status <> 'expired'""",
            {"now": now, "first": first, "last": last, "day": day},
        )
        counts["expired"] = cursor.rowcount
        cursor.execute(
            f"SELECT count(*) FROM {Farmer._meta.db_table} WHERE id BETWEEN %s AND %s", [first, last]
        )
        counts["roster"] = cursor.fetchone()[0]
        clock.lap("suspend")
    counts["frozen"] += frozen_no_consent
    counts["excluded"]["no_consent"] = counts["roster"] - gate.farmer_count
    counts["phase_seconds"] = clock.laps
    return counts


# Temporary-table memory per session: a chunk's gated records (~25 MB for 50,000 farmers) and
# staging rows stay in memory instead of being written out and read back by ANALYZE.
_TEMP_BUFFERS = "128MB"


def _temp_buffers_raise() -> None:
    """Raise ``temp_buffers`` if this session has not used temporary tables yet. PostgreSQL
    refuses the change afterwards — also after a rolled-back transaction used them, which
    leaves no trace to test first — so it is tried in a savepoint, and a session that cannot
    change it keeps what it has. (A Celery task gets a fresh connection, where it works.)"""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_my_temp_schema() = 0 AND current_setting('temp_buffers') <> %s", [_TEMP_BUFFERS])
        if not cursor.fetchone()[0]:
            return
        try:
            with transaction.atomic():
                cursor.execute("SELECT set_config('temp_buffers', %s, false)", [_TEMP_BUFFERS])
        except DatabaseError:
            pass


# Settings for the gate's statement only. The consent filter is estimated at a few hundred rows
# when a chunk admits tens of thousands, and the planner then probes the records index once per
# (consent, category): one hash join over the chunk's id range is twice as fast. And the gate
# ANALYZEs its temporary tables (the planner needs their sizes): a 3,000-row sample instead of
# 30,000 tells the same and takes a tenth of the time.
_GATE_SETTINGS = {"enable_nestloop": "off", "default_statistics_target": "10"}


@contextmanager
def _gate_settings():
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(_GATE_SETTINGS)])
        previous = dict(cursor.fetchall())
        for name, value in _GATE_SETTINGS.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
        yield  # on an error the transaction rolls back, and the settings with it
        for name, value in previous.items():
            cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


class _Clock:
    """Seconds per phase of a chunk, for the portal and the benchmark."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.laps[phase] = round(now - self._last, 3)
        self._last = now


def _categories(policy: CreditPolicy, day: dt.date) -> list[str]:
    """The categories to gate: every feature category the partner's agreements cover on D, and
    the court's list, without which the hard rule cannot be applied (then the run stops)."""
    agreed = agreed_category_codes(partner=policy.partner, on=day, codes=FEATURE_CATEGORIES + ELIGIBILITY_CATEGORIES)
    missing = sorted(set(ELIGIBILITY_CATEGORIES) - agreed)
    if missing:
        raise CreditAssessmentError(
            f"no data-sharing agreement with {policy.partner.code} covers {', '.join(missing)} on {day}: "
            "the dishonest-debtor rule cannot be applied"
        )
    return sorted(agreed)


# --- Scoring, eligibility, reasons, sizing (vectorised) ----------------------------------------


def assess(*, policy: CreditPolicy, scorecard: Scorecard, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Everything an assessment stores, as arrays aligned with ``columns`` (the features plus
    :data:`loans.features.EXTRA_COLUMNS`): score, PD, grade, eligibility, line, reasons, hint."""
    spec = scorecard.spec
    sizing = SizingPolicy.of(policy)
    size = len(columns["age"])
    points, score = score_points(spec, columns)
    pd_micro = pd_millionths(pd_from_score(score))
    grade = grade_index(sizing, pd_micro)

    age = columns["age"]
    failed = {
        "age": ~((age >= policy.min_age) & (age <= policy.max_age)),  # NaN fails too
        "dishonest_debtor": columns["dishonest_listed"] == 1,
        "overdue": columns["overdue"] == 1,
    }
    line = line_fen(
        sizing, grade=grade, area_cmu=area_centimu(columns["operated_area_mu"]),
        outstanding_fen=np.rint(columns["outstanding_fen"]).astype(np.int64),
    )
    failed["grade"] = line == NO_LINE
    mask = np.zeros(size, dtype=np.int16)
    for bit, code in enumerate(EXCLUSIONS):
        mask |= failed[code].astype(np.int16) << bit
    eligible = mask == 0

    # Reasons: the features that lost the most points against their best bin; the hint: the
    # first of them, in that order, that the farmer can act on.
    feature_names = [feature["name"] for feature in spec["features"]]
    order, lost = reasons(spec, points, top=len(feature_names))
    lost_in_order = np.take_along_axis(lost, order, axis=1)
    top = order[:, :TOP_REASONS].astype(np.int16)
    top_lost = lost_in_order[:, :TOP_REASONS]
    top = np.where(top_lost > _LOST_EPSILON, top, -1)
    actionable = np.asarray([bool(FEATURE_BY_NAME[name].hint_zh) for name in feature_names])
    candidates = actionable[order] & (lost_in_order > _LOST_EPSILON)
    first = candidates.argmax(axis=1)
    rows = np.arange(size)
    hint = np.where(candidates.any(axis=1), order[rows, first], -1).astype(np.int16)
    hint_lost = np.where(hint >= 0, lost_in_order[rows, first], 0.0)

    return {
        "score": score.astype(np.int32),
        "pd_micro": pd_micro.astype(np.int32),
        "grade": grade.astype(np.int16),
        "exclusion_mask": mask,
        "eligible": eligible,
        "line_fen": np.where(eligible, line, NO_LINE).astype(np.int64),
        "reason": top,
        "reason_lost": np.where(top >= 0, top_lost, 0.0),
        "hint": hint,
        "hint_lost": hint_lost,
    }


def _chunk_counts(assessed: dict[str, np.ndarray], columns: dict[str, np.ndarray], *, baseline: dict) -> dict:
    eligible = assessed["eligible"]
    new_line = assessed["line_fen"]
    exists = columns["line_exists"] == 1
    old_line = np.rint(columns["line_amount_fen"]).astype(np.int64)
    granted_again = eligible & exists
    counts = {key: 0 for key in _COUNT_KEYS}
    counts.update(
        scored=len(eligible),
        eligible=int(eligible.sum()),
        lines_new=int((eligible & ~exists).sum()),
        lines_up=int((granted_again & (new_line > old_line)).sum()),
        lines_down=int((granted_again & (new_line < old_line)).sum()),
        lines_unchanged=int((granted_again & (new_line == old_line)).sum()),
        frozen=int((~eligible & (columns["line_active"] == 1)).sum()),
        excluded={code: int(((assessed["exclusion_mask"] >> bit) & 1).sum()) for bit, code in enumerate(EXCLUSIONS)},
        # Scores per baseline bin: the run's PSI is computed from the chunks' sums.
        score_bins=_score_bins(baseline, assessed["score"]).tolist(),
    )
    return counts


def _score_bins(baseline: dict, scores: np.ndarray) -> np.ndarray:
    edges = np.asarray(baseline["edges"], dtype=float)
    return np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(baseline["shares"]))


# --- Writing a chunk ---------------------------------------------------------------------------

# Staged columns: (name, PostgreSQL type, numpy big-endian type). Fixed widths only, so the
# binary COPY rows are built as one numpy record array.
_STAGE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("farmer_id", "int8", ">i8"),
    ("eligible", "bool", "u1"),
    ("exclusion_mask", "int2", ">i2"),
    ("score", "int4", ">i4"),
    ("pd_micro", "int4", ">i4"),
    ("grade", "int2", ">i2"),
    ("line_fen", "int8", ">i8"),
    *((f"feature{index}", "float8", ">f8") for index in range(len(FEATURE_NAMES))),
    *((f"reason{index}", "int2", ">i2") for index in range(TOP_REASONS)),
    *((f"reason_lost{index}", "float8", ">f8") for index in range(TOP_REASONS)),
    ("hint", "int2", ">i2"),
    ("hint_lost", "float8", ">f8"),
)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def _stage(cursor, farmer_ids: np.ndarray, columns: dict[str, np.ndarray], assessed: dict[str, np.ndarray]) -> None:
    """Binary COPY of the chunk's assessments into a temporary staging table."""
    cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{STAGE_TABLE}")
    cursor.execute(
        f"CREATE TEMP TABLE {STAGE_TABLE} ("
        + ", ".join(f"{name} {sql_type} NOT NULL" for name, sql_type, _np in _STAGE_COLUMNS)
        + ") ON COMMIT DROP"
    )
    values = {
        "farmer_id": farmer_ids,
        **{key: assessed[key] for key in ("eligible", "exclusion_mask", "score", "pd_micro", "grade", "line_fen", "hint", "hint_lost")},
        **{f"feature{index}": columns[name] for index, name in enumerate(FEATURE_NAMES)},
        **{f"reason{index}": assessed["reason"][:, index] for index in range(TOP_REASONS)},
        **{f"reason_lost{index}": assessed["reason_lost"][:, index] for index in range(TOP_REASONS)},
    }
    layout = [("field_count", ">i2")]
    for name, _sql_type, numpy_type in _STAGE_COLUMNS:
        layout += [(f"{name}_length", ">i4"), (name, numpy_type)]
    rows = np.empty(len(farmer_ids), dtype=np.dtype(layout))
    rows["field_count"] = len(_STAGE_COLUMNS)
    for name, _sql_type, numpy_type in _STAGE_COLUMNS:
        rows[f"{name}_length"] = np.dtype(numpy_type).itemsize
        rows[name] = values[name]
    with cursor.cursor.copy(f"COPY {STAGE_TABLE} FROM STDIN (FORMAT binary)") as copy:
        copy.write(_COPY_HEADER)
        copy.write(rows.tobytes())
        copy.write(_COPY_TRAILER)


def _write(cursor, *, run: AssessmentRun, now: dt.datetime) -> None:
    """One statement: upsert the assessments; then, from their ids, upsert the lines of the
    eligible and suspend the lines of the ineligible."""
    spec_names = [feature["name"] for feature in run.scorecard.spec["features"]]
    sizing = SizingPolicy.of(run.policy)
    features_json = ", ".join(
        f"'{name}', NULLIF(s.feature{index}, 'NaN')" for index, name in enumerate(FEATURE_NAMES)
    )
    # Reasons and the hint are JSON text put together from per-feature fragments made here (the
    # feature's name and texts, already escaped) and the points, then parsed once: a third of the
    # cost of building the same objects with jsonb_build_object.
    reasons_text = ", ".join(
        f"CASE WHEN s.reason{i} >= 0 THEN (%(fragments)s::text[])[s.reason{i} + 1] "
        f"|| round(s.reason_lost{i}::numeric, 2) || '}}' END"
        for i in range(TOP_REASONS)
    )
    exclusions = ", ".join(
        f"CASE WHEN s.exclusion_mask & {1 << bit} <> 0 THEN '{code}' END" for bit, code in enumerate(EXCLUSIONS)
    )
    overdue_bit = 1 << EXCLUSIONS.index("overdue")
    cursor.execute(
        f"""
        WITH assessed AS (
            INSERT INTO loans_creditassessment AS a
                   (business_date, farmer_id, eligible, exclusions, score, pd, grade, line_amount, features,
                    reasons, hint, scorecard_version, policy_version)
            SELECT %(day)s, s.farmer_id, s.eligible,
                   array_remove(ARRAY[{exclusions}], NULL)::varchar(32)[],
                   s.score,
                   (s.pd_micro::numeric / 1000000)::numeric(8, 6),
                   COALESCE((%(grades)s::text[])[s.grade + 1], ''),
                   CASE WHEN s.line_fen >= 0 THEN (s.line_fen::numeric / 100)::numeric(14, 2) END,
                   jsonb_build_object({features_json}),
                   ('[' || concat_ws(', ', {reasons_text}) || ']')::jsonb,
                   CASE WHEN s.hint >= 0
                        THEN ((%(hint_fragments)s::text[])[s.hint + 1] || round(s.hint_lost::numeric, 2) || '}}')::jsonb
                        ELSE '{{}}'::jsonb END,
                   %(scorecard_version)s, %(policy_version)s
              FROM {STAGE_TABLE} s
            ON CONFLICT (business_date, farmer_id) DO UPDATE SET
                   eligible = EXCLUDED.eligible, exclusions = EXCLUDED.exclusions, score = EXCLUDED.score,
                   pd = EXCLUDED.pd, grade = EXCLUDED.grade, line_amount = EXCLUDED.line_amount,
                   features = EXCLUDED.features, reasons = EXCLUDED.reasons, hint = EXCLUDED.hint,
                   scorecard_version = EXCLUDED.scorecard_version, policy_version = EXCLUDED.policy_version
            RETURNING a.id, a.farmer_id
        ),
        granted AS (
            INSERT INTO loans_creditline AS l
                   (farmer_id, amount, outstanding_principal, grade, annual_rate, valid_until, status, suspension,
                    assessment_id, business_date, created_at, updated_at)
            SELECT s.farmer_id, (s.line_fen::numeric / 100)::numeric(14, 2), 0,
                   (%(grades)s::text[])[s.grade + 1], (%(rates)s::numeric[])[s.grade + 1],
                   %(valid_until)s, 'active', '', a.id, %(day)s, %(now)s, %(now)s
              FROM {STAGE_TABLE} s JOIN assessed a ON a.farmer_id = s.farmer_id
             WHERE s.eligible
            ON CONFLICT (farmer_id) DO UPDATE SET
                   -- the line was sized against the outstanding principal read at the start
                   -- of the chunk; a drawdown since then must not leave it below either
                   amount = GREATEST(EXCLUDED.amount, l.outstanding_principal),
                   grade = EXCLUDED.grade, annual_rate = EXCLUDED.annual_rate, valid_until = EXCLUDED.valid_until,
                   status = 'active', suspension = '', assessment_id = EXCLUDED.assessment_id,
                   business_date = EXCLUDED.business_date, updated_at = EXCLUDED.updated_at
             WHERE (l.amount, l.grade, l.annual_rate, l.valid_until, l.status, l.suspension, l.assessment_id,
                    l.business_date)
                   IS DISTINCT FROM (GREATEST(EXCLUDED.amount, l.outstanding_principal), EXCLUDED.grade,
                    EXCLUDED.annual_rate, EXCLUDED.valid_until, 'active', '', EXCLUDED.assessment_id,
                    EXCLUDED.business_date)
            RETURNING 1
        ),
        withheld AS (
            UPDATE loans_creditline l
               SET status = CASE WHEN l.status = 'expired' THEN 'expired' ELSE 'suspended' END,
                   suspension = CASE WHEN s.exclusion_mask & {overdue_bit} <> 0 THEN 'overdue' ELSE 'ineligible' END,
                   assessment_id = a.id, updated_at = %(now)s
              FROM {STAGE_TABLE} s JOIN assessed a ON a.farmer_id = s.farmer_id
             WHERE l.farmer_id = s.farmer_id AND NOT s.eligible
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM assessed), (SELECT count(*) FROM granted), (SELECT count(*) FROM withheld)
        """,
        {
            "day": run.business_date,
            "now": now,
            "valid_until": add_months(run.business_date, run.policy.validity_months),
            "grades": sizing.grade_codes,
            "rates": [str(rate) for rate in sizing.annual_rates],
            "fragments": [_fragment(name, "reason") for name in spec_names],
            "hint_fragments": [_fragment(name, "hint") for name in spec_names],
            "scorecard_version": run.scorecard.version,
            "policy_version": run.policy.version,
        },
    )


def _fragment(name: str, kind: str) -> str:
    """``{"feature": …, "text_zh": …, "text_en": …, "points_lost": `` — the JSON of a reason or
    hint without its points and closing brace."""
    feature = FEATURE_BY_NAME[name]
    texts = {"feature": name, "text_zh": getattr(feature, f"{kind}_zh"), "text_en": getattr(feature, f"{kind}_en")}
    return json.dumps(texts, ensure_ascii=False)[:-1] + ', "points_lost": '


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` calendar months later (31 Jan + 1 → 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


# --- Finish --------------------------------------------------------------------------------------


def assessment_run_finish(*, run_id: int) -> AssessmentRun:
    """Sum the chunks' counts, compute the PSI and close the run — SUCCEEDED when every chunk
    is done, else FAILED naming the chunks missing. Idempotent."""
    with transaction.atomic():
        run = AssessmentRun.objects.select_for_update().select_related("scorecard").get(pk=run_id)
        chunks = list(run.chunks.order_by("number"))
        done = [chunk for chunk in chunks if chunk.done]
        run.chunks_done = len(done)
        run.counts = {**_summed([chunk.counts for chunk in done]), "attempts": run.counts.get("attempts", 1)}
        run.finished_at = timezone.now()
        missing = [chunk.number for chunk in chunks if not chunk.done]
        if missing:
            run.status = AssessmentRun.Status.FAILED
            run.error = run.error or f"chunks not done: {missing}"
        else:
            run.status = AssessmentRun.Status.SUCCEEDED
            run.error = ""
            bins = np.asarray(run.counts.get("score_bins") or [0] * len(run.scorecard.baseline["shares"]))
            if bins.sum():
                value = _psi_of_bins(run.scorecard.baseline, bins)
                run.psi = Decimal(str(round(value, 4)))
                run.psi_warning = value >= PSI_WARNING
            else:
                run.psi, run.psi_warning = None, False
        run.save()
    if run.psi_warning:
        logger.warning("county %s, %s: score PSI %s against the scorecard baseline (>= %s): the population has shifted",
                       connection.schema_name, run.business_date, run.psi, PSI_WARNING)
    return run


def _psi_of_bins(baseline: dict, bins: np.ndarray) -> float:
    """:func:`loans.scorecard.psi` of a population given as counts per baseline bin: each bin's
    count stands at a score inside that bin (a score equal to an edge falls in the upper bin)."""
    edges = np.asarray(baseline["edges"], dtype=float)
    inside = np.concatenate([[edges[0] - 1.0], edges]) if len(edges) else np.zeros(1)
    return psi(baseline, np.repeat(inside, bins))


def _summed(chunk_counts: Iterable[dict]) -> dict:
    total: dict = {key: 0 for key in (*_COUNT_KEYS, "gated", "records")}
    total["excluded"] = {code: 0 for code in ("no_consent", *EXCLUSIONS)}
    total["score_bins"] = []
    total["phase_seconds"] = {}
    for counts in chunk_counts:
        for key in total:
            if key in ("excluded", "phase_seconds"):
                for name, value in counts.get(key, {}).items():
                    total[key][name] = round(total[key].get(name, 0) + value, 3)
            elif key == "score_bins":
                bins = counts.get("score_bins") or []
                total["score_bins"] = [a + b for a, b in zip(total["score_bins"] or [0] * len(bins), bins, strict=True)]
            else:
                total[key] += counts.get(key, 0)
    return total


def assessment_run_fail(*, run_id: int, error: str) -> None:
    with transaction.atomic():
        AssessmentRun.objects.filter(pk=run_id).update(
            status=AssessmentRun.Status.FAILED, error=error[:10_000], finished_at=timezone.now()
        )


def run_summary(run: AssessmentRun) -> dict:
    """What the nightly step reports (JSON-safe): the run's counts, PSI and progress."""
    counts = {key: value for key, value in run.counts.items() if key != "score_bins"}
    return {
        "run_id": run.pk,
        "status": run.status,
        "chunks": run.chunks_total,
        "chunks_done": run.chunks_done,
        **counts,
        "psi": float(run.psi) if run.psi is not None else None,
        "psi_warning": run.psi_warning,
    }


# --- Lines follow consent ------------------------------------------------------------------------


def credit_lines_follow_consent(*, farmer_ids: Iterable[int]) -> dict[str, int]:
    """Bring the lines of ``farmer_ids`` in line with their credit consent to the active
    policy's partner, at once: an active line whose consent is no longer in force (revoked,
    paused, expired, on an outdated text) is suspended (``no_consent``); a line suspended only
    for that, still valid, whose consent is in force again is reactivated (tonight's run
    reassesses it). Call it in the transaction that changes the consent."""
    ids = sorted({int(farmer_id) for farmer_id in farmer_ids})
    policy = policy_active()
    if not ids or policy is None:
        return {"suspended": 0, "reactivated": 0}
    allowed = {
        farmer.pk
        for farmer in Farmer.objects.filter(pk__in=ids).only("id")
        if consent_allows_drawdown(farmer=farmer, partner=policy.partner)
    }
    now = timezone.now()
    Status, Suspension = CreditLine.Status, CreditLine.Suspension
    suspended = CreditLine.objects.filter(farmer_id__in=set(ids) - allowed, status=Status.ACTIVE).update(
        status=Status.SUSPENDED, suspension=Suspension.NO_CONSENT, updated_at=now
    )
    reactivated = CreditLine.objects.filter(
        farmer_id__in=allowed, status=Status.SUSPENDED, suspension=Suspension.NO_CONSENT,
        valid_until__gte=timezone.localdate(),
    ).update(status=Status.ACTIVE, suspension=Suspension.NONE, updated_at=now)
    return {"suspended": suspended, "reactivated": reactivated}

