"""Celery entry points for county work. No business logic here: each task calls a service."""

from __future__ import annotations

import datetime as dt
import hashlib

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from counties.services import nightly_run
from platform.models import County


def stagger_seconds(code: str) -> int:
    """A stable offset within the nightly window so counties do not all start at once."""
    digest = hashlib.sha256(code.encode()).digest()
    return int.from_bytes(digest[:4], "big") % max(settings.NIGHTLY_STAGGER_SECONDS, 1)


def default_business_date() -> dt.date:
    """The nightly job closes the day that has just ended in Asia/Shanghai."""
    return timezone.localdate() - dt.timedelta(days=1)


@shared_task
def dispatch_nightly(business_date: str | None = None) -> dict[str, int]:
    """Beat's 02:00 entry (public schema): queue each live county's nightly run, staggered."""
    day = business_date or default_business_date().isoformat()
    queued = {}
    for county in County.objects.filter(status=County.Status.LIVE).only("code", "schema_name"):
        offset = stagger_seconds(county.code)
        with schema_context(county.schema_name):
            # Sent from inside the county's schema so tenant-schemas-celery routes it there.
            nightly_county.apply_async(kwargs={"business_date": day}, countdown=offset)
        queued[county.code] = offset
    return queued


@shared_task(bind=True, max_retries=0)
def nightly_county(self, business_date: str) -> dict[str, object]:
    """One county's nightly run, inside that county's schema. A failure stays with this county:
    the other counties' tasks are separate messages."""
    run = nightly_run(business_date=dt.date.fromisoformat(business_date))
    return {"business_date": business_date, "status": run.status, "steps": run.steps}
