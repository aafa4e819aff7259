"""Every county starts with the shipped default scorecard (loans/default_scorecard.json) as
version 1, active, so it can be scored on its first night. Reads the file directly (not through
loans.scorecards, which imports the app's models): a migration sees only historical models."""

import datetime as dt
import json
from pathlib import Path

from django.db import migrations

DEFAULT_SCORECARD_PATH = Path(__file__).resolve().parent.parent / "default_scorecard.json"


def load_default_scorecard(apps, schema_editor):
    Scorecard = apps.get_model("loans", "Scorecard")
    if Scorecard.objects.exists():
        return
    shipped = json.loads(DEFAULT_SCORECARD_PATH.read_text(encoding="utf-8"))
    Scorecard.objects.create(
        version=1,
        source="default",
        spec=shipped["spec"],
        metrics=shipped["metrics"],
        baseline=shipped["baseline"],
        is_active=True,
        trained_at=dt.datetime.fromisoformat(shipped["provenance"]["generated_at"]),
    )


class Migration(migrations.Migration):
    dependencies = [("loans", "0002_policy_event_append_only")]

    operations = [migrations.RunPython(load_default_scorecard, migrations.RunPython.noop)]
