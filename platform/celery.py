"""The Celery app. Tasks run inside the county schema they were sent from
(tenant-schemas-celery puts the schema in the message headers and switches to it before the
task runs); beat sends one public-schema dispatch at night that fans out per county."""

import os

from celery.schedules import crontab
from django.conf import settings
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform.settings")

app = CeleryApp("puhui")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {
    "nightly-dispatch": {
        "task": "counties.tasks.dispatch_nightly",
        "schedule": crontab(hour=settings.NIGHTLY_HOUR, minute=0),
    },
    # Events to the banks' webhooks (loans.webhooks): every minute, one task per county.
    "outbox-delivery": {"task": "loans.tasks.dispatch_outbox_delivery", "schedule": 60.0},
}
