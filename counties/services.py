"""Writes for the county schema: roster statistics and the nightly run."""

from __future__ import annotations

import datetime as dt
import time
import traceback

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from counties.models import NightlyRun


def township_stats_refresh(*, business_date: dt.date) -> dict[str, int]:
    """Registered households and farmers per township as of ``business_date``, in one
    set-based upsert (rerunning the date overwrites, never duplicates)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO counties_townshipdailystat (business_date, township_id, households, farmers)
            SELECT %s, t.id,
                   (SELECT count(*) FROM counties_household h JOIN counties_village v ON v.id = h.village_id
                     WHERE v.township_id = t.id),
                   (SELECT count(*) FROM counties_farmer f JOIN counties_village v ON v.id = f.village_id
                     WHERE v.township_id = t.id)
              FROM counties_township t
            ON CONFLICT (business_date, township_id)
            DO UPDATE SET households = EXCLUDED.households, farmers = EXCLUDED.farmers
            """,
            [business_date],
        )
        return {"townships": cursor.rowcount}


def nightly_run(*, business_date: dt.date) -> NightlyRun:
    """Run every step of ``settings.NIGHTLY_STEPS`` for the current county and business date.

    Each step commits on its own, so the portal sees progress and a failure keeps the work of
    earlier steps; the run row records timing, counts and the error. Rerunning a date is safe.
    """
    with transaction.atomic():
        run, _created = NightlyRun.objects.select_for_update().get_or_create(business_date=business_date)
        run.status = NightlyRun.Status.RUNNING
        run.attempts += 1
        run.started_at = timezone.now()
        run.finished_at = None
        run.error = ""
        run.steps = []
        run.save()
    for dotted in settings.NIGHTLY_STEPS:
        step = import_string(dotted)
        began = time.monotonic()
        try:
            if getattr(step, "manages_own_transactions", False):
                # Such a step commits its work in pieces (the credit batch, chunk by chunk) so
                # a crash keeps what is done and a rerun completes only the rest.
                counts = step(business_date=business_date)
            else:
                with transaction.atomic():
                    counts = step(business_date=business_date)
        except Exception:
            run.steps.append({"name": dotted, "status": "failed", "seconds": round(time.monotonic() - began, 3)})
            run.status = NightlyRun.Status.FAILED
            run.error = traceback.format_exc(limit=5)
            run.finished_at = timezone.now()
            run.save()
            raise
        run.steps.append(
            {"name": dotted, "status": "succeeded", "counts": counts, "seconds": round(time.monotonic() - began, 3)}
        )
        run.save(update_fields=["steps"])
    run.status = NightlyRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.save()
    return run
