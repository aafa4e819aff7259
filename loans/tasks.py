"""Celery entry points for the nightly credit assessment. No business logic here: each task
calls a service of :mod:`loans.nightly`; every one is idempotent and safe to retry or to be
redelivered after a worker dies (``task_acks_late``): a chunk already done is skipped, a run
already finished is reported, not redone.

A county's run fans out as a chord: one :func:`assess_chunk` per chunk still missing, then
:func:`assessment_finish`. The tasks run in the county's schema (tenant-schemas-celery carries
it in the message headers from the schema they were sent in)."""

from __future__ import annotations

import datetime as dt

from celery import chord, shared_task
from django.db import OperationalError
from django_tenants.utils import schema_context

from counties.tasks import default_business_date
from loans.models import AssessmentRun
from loans.nightly import (
    DEFAULT_CHUNK_SIZE,
    assessment_chunk_run,
    assessment_chunks_pending,
    assessment_run_finish,
    assessment_run_start,
    run_summary,
)
from platform.models import County


@shared_task(bind=True)
def credit_assessment_county(
    self, business_date: str, chunk_size: int = DEFAULT_CHUNK_SIZE, recompute: bool = False
) -> dict:
    """Plan (or resume) the county's run for ``business_date`` and send its missing chunks to
    the workers; the last one to finish triggers :func:`assessment_finish`. The chunks go to
    the queue this task came from, so a large county sent to its own queue stays there."""
    run = assessment_run_start(business_date=dt.date.fromisoformat(business_date), chunk_size=chunk_size, recompute=recompute)
    if run is None:
        return {"skipped": "no_active_policy"}
    if run.status == AssessmentRun.Status.SUCCEEDED:
        return run_summary(run)
    pending = assessment_chunks_pending(run_id=run.pk)
    if not pending:
        return run_summary(assessment_run_finish(run_id=run.pk))
    queue = {"queue": self.request.delivery_info["routing_key"]} if (self.request.delivery_info or {}).get("routing_key") else {}
    chunks = [assess_chunk.si(run.pk, number).set(**queue) for number in pending]
    chord(chunks)(assessment_finish.si(run.pk).set(**queue))
    return {"run_id": run.pk, "dispatched": pending}


# A lost connection or a deadlock is worth another try; the chunk's transaction rolled back whole.
@shared_task(autoretry_for=(OperationalError,), retry_backoff=5, max_retries=3)
def assess_chunk(run_id: int, chunk_number: int) -> dict:
    counts = assessment_chunk_run(run_id=run_id, chunk_number=chunk_number)
    return {key: value for key, value in counts.items() if key != "score_bins"}


@shared_task
def assessment_finish(run_id: int) -> dict:
    return run_summary(assessment_run_finish(run_id=run_id))


@shared_task
def dispatch_credit_assessments(business_date: str | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, str]:
    """From the public schema: one :func:`credit_assessment_county` message per live county, so
    one county's failure stays with that county."""
    day = business_date or default_business_date().isoformat()
    sent = {}
    for county in County.objects.filter(status=County.Status.LIVE).only("code", "schema_name"):
        with schema_context(county.schema_name):
            sent[county.code] = credit_assessment_county.apply_async(
                kwargs={"business_date": day, "chunk_size": chunk_size}
            ).id
    return sent


# --- Events to the bank (loans.webhooks) -----------------------------------------------------------


@shared_task(bind=True)
def outbox_deliver_county(self, batch_size: int | None = None) -> dict:
    """Deliver one batch of the county's due outbox messages to the bank's webhook; re-queue
    itself while a full batch leaves more due (failures wait for their backoff, so this ends)."""
    # Imported here so this section stays an append to the module.
    from loans.webhooks import DEFAULT_BATCH_SIZE, outbox_deliver_due

    batch_size = batch_size or DEFAULT_BATCH_SIZE
    counts = outbox_deliver_due(batch_size=batch_size)
    if counts.more_due:
        # Sent from inside the county's schema, so tenant-schemas-celery keeps it there.
        self.apply_async(kwargs={"batch_size": batch_size})
    return counts.as_dict()


@shared_task
def dispatch_outbox_delivery() -> dict[str, str]:
    """Beat's every-minute entry (public schema): one delivery task per live county that has a
    bank client with a webhook. Overlapping runs are safe (SKIP LOCKED); a message that waits
    for a minute is not worth a task that outlives the next dispatch, hence ``expires``."""
    counties = (
        # One filter() call: the three conditions hold for the same client.
        County.objects.filter(
            status=County.Status.LIVE,
            integration_clients__kind="bank",
            integration_clients__is_active=True,
            integration_clients__webhook_url__gt="",
        )
        .distinct()
        .only("code", "schema_name")
    )
    sent = {}
    for county in counties:
        with schema_context(county.schema_name):
            sent[county.code] = outbox_deliver_county.apply_async(expires=60).id
    return sent
