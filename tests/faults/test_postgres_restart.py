"""PostgreSQL going away in the middle of the nightly credit batch.

The embedded PostgreSQL is shared with other engineers' test runs, so it cannot be restarted
here. What a client sees when PostgreSQL restarts is its backend ended under it — FATAL
``terminating connection due to administrator command`` (SQLSTATE 57P01, the very message a
fast shutdown sends every session), the socket closed, the open transaction rolled back. The
test does exactly that to the batch's own session, from a second connection, with
``pg_terminate_backend(pid)`` on the row of ``pg_stat_activity`` that is the batch's open
transaction — after chunk 2's gate reads and writes, before its commit. (psycopg reports it
as ``OperationalError: the connection is lost``.)

Then: the county's nightly run fails visibly (``NightlyRun`` and ``AssessmentRun`` FAILED, the
error recorded, naming the chunk and the terminated connection), chunk 1 stays done and
nothing of chunk 2 survives; the rerun completes with one assessment and one line per farmer
and counts that add up.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection
from django.db.models import Count
from django_tenants.utils import schema_context

from counties.models import NightlyRun
from counties.services import nightly_run
from data_sharing.models import AccessLog
from loans import nightly
from loans.models import AssessmentChunk, AssessmentRun, CreditAssessment, CreditLine
from tests.faults.scratch import nightly_ready

FARMERS = 5
CHUNK_SIZE = 2  # chunks of 2, 2 and 1 farmers


def second_connection() -> psycopg.Connection:
    """A plain connection of its own to the same database (not Django's)."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def terminate(pid: int) -> int:
    """End the backend ``pid`` as a PostgreSQL restart would; only if it is this test
    database's session with a transaction open (the batch's chunk). Returns how many ended."""
    with second_connection() as admin:
        ended = admin.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE pid = %s AND datname = current_database() AND state = 'idle in transaction'""",
            [pid],
        ).fetchall()
    return sum(1 for (ok,) in ended if ok)


@pytest.fixture
def county(scratch_county):
    county = scratch_county("faults-pg")
    day, ids = nightly_ready(county, key="faults-pg", farmers=FARMERS, seq=720, name="断")
    return county, day, ids


def test_a_terminated_database_session_fails_the_run_visibly_and_the_rerun_completes(county, monkeypatch):
    county, day, ids = county
    real = nightly._assess_chunk
    terminated = []

    def connection_lost_in_chunk_two(chunk):
        counts = real(chunk)
        if chunk.number == 2 and not terminated:
            terminated.append(terminate(connection.connection.info.backend_pid))
        return counts

    monkeypatch.setattr(nightly, "_assess_chunk", connection_lost_in_chunk_two)
    # The credit step in chunks of two; every other step of the night as configured.
    monkeypatch.setattr(nightly.credit_assessment_run, "__kwdefaults__", {"chunk_size": CHUNK_SIZE, "recompute": False})

    with schema_context(county.schema_name):
        with pytest.raises(OperationalError, match="the connection is lost"):  # psycopg's words for it
            nightly_run(business_date=day)
        assert terminated == [1]

        # Both records say so, on a fresh connection.
        night = NightlyRun.objects.get(business_date=day)
        assert night.status == NightlyRun.Status.FAILED
        assert night.finished_at is not None
        assert "OperationalError: the connection is lost" in night.error
        assert [step["status"] for step in night.steps][-1] == "failed"
        assert night.steps[-1]["name"] == "loans.nightly.credit_assessment_run"
        run = AssessmentRun.objects.get(business_date=day)
        assert (run.status, run.chunks_done) == ("failed", 1)
        assert run.error.startswith("chunk 2:") and "OperationalError: the connection is lost" in run.error
        assert list(run.chunks.order_by("number").values_list("number", "done")) == [(1, True), (2, False), (3, False)]
        assert sorted(CreditAssessment.objects.values_list("farmer_id", flat=True)) == ids[:2]
        assert AccessLog.objects.filter(accessor=nightly.JOB).count() == 1

        # The rerun (the portal's button, run_nightly, the next dispatch) completes.
        again = nightly_run(business_date=day)

        assert (again.status, again.attempts, again.error) == (NightlyRun.Status.SUCCEEDED, 2, "")
        run.refresh_from_db()
        assert (run.status, run.chunks_done, run.error, run.counts["attempts"]) == ("succeeded", 3, "", 2)
        per_farmer = dict(
            CreditAssessment.objects.filter(business_date=day).values_list("farmer_id").annotate(n=Count("id"))
        )
        assert per_farmer == {farmer_id: 1 for farmer_id in ids}
        assert sorted(CreditLine.objects.values_list("farmer_id", flat=True)) == ids
        chunks = list(AssessmentChunk.objects.filter(run=run))
        for key in ("roster", "scored", "eligible", "lines_new"):
            assert sum(chunk.counts[key] for chunk in chunks) == run.counts[key] == FARMERS, key
        assert AccessLog.objects.filter(accessor=nightly.JOB).count() == 3
        credit_step = next(step for step in again.steps if step["name"] == "loans.nightly.credit_assessment_run")
        assert (credit_step["status"], credit_step["counts"]["scored"]) == ("succeeded", FARMERS)


def test_a_session_ended_between_chunks_fails_at_the_next_chunk_and_the_rerun_does_only_that(county, monkeypatch):
    """The database restarting while the batch sits between chunks, nothing open: the next
    chunk's first statement finds the session gone. The run fails there, naming chunk 3, with
    chunks 1 and 2 kept; the rerun assesses chunk 3 alone."""
    county, day, ids = county
    real = nightly._assess_chunk
    processed, ended = [], []

    def restart_before_chunk_three(*, run_id, chunk_number):
        if chunk_number == 3 and not ended:
            with second_connection() as admin:
                ended.append(
                    admin.execute(
                        """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                            WHERE pid = %s AND datname = current_database() AND state = 'idle'""",
                        [connection.connection.info.backend_pid],
                    ).fetchone()[0]
                )
        return real_run(run_id=run_id, chunk_number=chunk_number)

    real_run = nightly.assessment_chunk_run
    monkeypatch.setattr(nightly, "assessment_chunk_run", restart_before_chunk_three)
    monkeypatch.setattr(nightly, "_assess_chunk", lambda chunk: processed.append(chunk.number) or real(chunk))

    with schema_context(county.schema_name):
        with pytest.raises(OperationalError, match="the connection is lost"):
            nightly.credit_assessment_run(business_date=day, chunk_size=CHUNK_SIZE)
        assert ended == [True]
        run = AssessmentRun.objects.get(business_date=day)
        assert (run.status, run.chunks_done) == ("failed", 2)
        assert run.error.startswith("chunk 3:") and "the connection is lost" in run.error
        assert sorted(CreditAssessment.objects.values_list("farmer_id", flat=True)) == ids[:4]

        summary = nightly.credit_assessment_run(business_date=day, chunk_size=CHUNK_SIZE)

        assert processed == [1, 2, 3]  # chunk 3 once: the statement that failed was its first
        assert (summary["status"], summary["chunks_done"], summary["attempts"], summary["scored"]) == ("succeeded", 3, 2, FARMERS)
        assert sorted(CreditAssessment.objects.values_list("farmer_id", flat=True)) == ids
