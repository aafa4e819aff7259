"""A Celery worker SIGKILLed in the middle of the nightly credit batch.

A real worker process (``tests/faults/worker_process.py``: the project's Celery app, pool
``solo``, so the task runs in that very pid) takes a county's run in chunks of two farmers and
stalls inside chunk 2 — its gate reads and its writes done, its transaction still open — until
the test kills it with SIGKILL: no exception handler, no ``finally``, no acknowledgement.
PostgreSQL rolls the chunk back when the socket closes; the run is left "running" with chunk 1
done. Sending the county's run again (the portal's rerun, the next dispatch) does only chunks 2
and 3 and finishes the run: one assessment per farmer for the date, one line per farmer, one
access-log row per chunk, and the run's counts equal to the sum of its chunks'.

(tests/loans/test_nightly_batch.py covers the same resume in-process, with an exception raised
after a chunk's writes; this is the worker dying for real.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django_tenants.utils import schema_context

from data_sharing.models import AccessLog
from loans import nightly
from loans.models import AssessmentChunk, AssessmentRun, CreditAssessment, CreditLine
from loans.tasks import credit_assessment_county
from platform.celery import app
from tests.faults.scratch import nightly_ready
from tests.loans.test_nightly_batch import BASE_LINE

FARMERS = 6
CHUNK_SIZE = 2  # three chunks
STALL_CHUNK = 2
# Generous: a worker process starts in a few seconds, but this machine is shared and loaded.
TIMEOUT = 120
REPO = Path(__file__).resolve().parents[2]


def wait_for(what: str, check: Callable[[], object], timeout: float = TIMEOUT, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the worker exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


def start_worker_process(queue: str, log: Path, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "FAULTS_DATABASE_NAME": connection.settings_dict["NAME"], **env}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.faults.worker_process", queue],
            cwd=REPO, env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def forget_unacked(queue: str) -> int:
    """Remove this session's unacknowledged messages from the broker's bookkeeping (kombu's
    Redis transport keeps them in the ``unacked`` hash until its visibility timeout, an hour,
    then puts them back on their queue): the killed worker's message, which nobody will consume
    once this session ends. Only messages routed to ``queue`` are touched."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    removed = 0
    for tag, raw in client.hscan_iter("unacked"):
        try:
            _message, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if routing_key == queue:
            removed += client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    return removed


def test_a_worker_killed_mid_chunk_leaves_whole_chunks_and_the_rerun_completes(
    scratch_county, celery_queue, tmp_path, django_db_blocker
):
    county = scratch_county("faults-worker")
    day, ids = nightly_ready(county, key="faults-worker", farmers=FARMERS, seq=700, name="杀")

    marker = tmp_path / "stalled"
    log = tmp_path / "worker.log"
    worker = start_worker_process(
        celery_queue, log, FAULTS_STALL_CHUNK=str(STALL_CHUNK), FAULTS_STALL_MARKER=str(marker)
    )
    try:
        with schema_context(county.schema_name):
            credit_assessment_county.apply_async(kwargs={"business_date": day.isoformat(), "chunk_size": CHUNK_SIZE})
        stalled_in = wait_for("the worker to stall inside chunk 2", lambda: marker.exists() and marker.read_text(), proc=worker)
        assert int(stalled_in) == worker.pid  # the task runs in the very process we kill

        with schema_context(county.schema_name):
            run = AssessmentRun.objects.get(business_date=day)
            # Chunk 1 committed; chunk 2's writes are made but not committed.
            assert list(run.chunks.order_by("number").values_list("number", "done")) == [(1, True), (2, False), (3, False)]
            assert sorted(CreditAssessment.objects.values_list("farmer_id", flat=True)) == ids[:2]

        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=TIMEOUT)

    with schema_context(county.schema_name):
        run.refresh_from_db()
        # Nobody was left to record anything: the run still says running, chunk 1 done.
        assert (run.status, run.chunks_done, run.error) == ("running", 1, "")
        assert sorted(CreditAssessment.objects.values_list("farmer_id", flat=True)) == ids[:2]
        assert sorted(CreditLine.objects.values_list("farmer_id", flat=True)) == ids[:2]
        assert AccessLog.objects.filter(accessor=nightly.JOB).count() == 1

    # The rerun: the county's run sent again, to a healthy worker.
    from celery.contrib.testing.worker import start_worker

    with django_db_blocker.unblock(), start_worker(
        app, pool="solo", perform_ping_check=False, queues=[celery_queue], shutdown_timeout=30
    ):
        with schema_context(county.schema_name):
            sent = credit_assessment_county.apply_async(kwargs={"business_date": day.isoformat(), "chunk_size": CHUNK_SIZE})
        resumed = sent.get(timeout=TIMEOUT)
        # Chunk 3's first message may already have been taken by the new worker (it waited in
        # the queue behind the killed chunk); either way chunk 1 is never redone.
        assert resumed["run_id"] == run.pk and resumed["dispatched"] in ([2], [2, 3])

        def finished() -> AssessmentRun | None:
            with schema_context(county.schema_name):
                current = AssessmentRun.objects.get(pk=run.pk)
            return current if current.status != "running" else None

        run = wait_for("the rerun to finish", finished)
    # The killed worker never acknowledged chunk 2's message (task_acks_late): the broker still
    # holds it for redelivery, an hour on; tidied away here, its work already done.
    assert forget_unacked(celery_queue) == 1

    with schema_context(county.schema_name):
        assert (run.status, run.chunks_total, run.chunks_done, run.error) == ("succeeded", 3, 3, "")
        assert run.counts["attempts"] == 2
        assert {key: run.counts[key] for key in ("roster", "gated", "scored", "eligible", "lines_new")} == {
            "roster": FARMERS, "gated": FARMERS, "scored": FARMERS, "eligible": FARMERS, "lines_new": FARMERS,
        }
        # No duplicates: one assessment per farmer for the date, one line per farmer.
        per_farmer = dict(
            CreditAssessment.objects.filter(business_date=day).values_list("farmer_id").annotate(n=Count("id"))
        )
        assert per_farmer == {farmer_id: 1 for farmer_id in ids}
        assert sorted(CreditLine.objects.values_list("farmer_id", flat=True)) == ids
        assert set(CreditLine.objects.values_list("status", "amount")) == {("active", BASE_LINE)}
        # The counts add up: each chunk's, summed, are the run's.
        chunks = list(AssessmentChunk.objects.filter(run=run).order_by("number"))
        assert [chunk.done for chunk in chunks] == [True, True, True]
        for key in ("roster", "scored", "eligible", "lines_new", "gated"):
            assert sum(chunk.counts[key] for chunk in chunks) == run.counts[key], key
        # One access-log row per chunk: the killed attempt's read of chunk 2 rolled back with it.
        logs = AccessLog.objects.filter(accessor=nightly.JOB, business_date=day)
        assert sorted(logs.values_list("farmer_count", flat=True)) == [2, 2, 2]
        assert sorted(chunk.counts["access_log_id"] for chunk in chunks) == sorted(logs.values_list("id", flat=True))
