"""Celery entry points for data sharing. No business logic here: each task calls a service."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from data_sharing.imports import batch_run


# Sent from inside the county's schema (transaction.on_commit in batch_submit_file), so
# tenant-schemas-celery runs it there. batch_run is idempotent: a redelivered or retried
# message finds the batch finished, or waits on its row lock and then finds it finished.
@shared_task(autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, max_retries=3)
def import_batch(batch_id: int) -> dict[str, object]:
    batch = batch_run(batch_id=batch_id)
    return {"batch_id": batch.pk, "status": batch.status, "rows_imported": batch.rows_imported, "errors": batch.error_count}
