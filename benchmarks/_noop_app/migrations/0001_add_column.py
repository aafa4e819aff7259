"""A release's typical new migration: a nullable column added to a county table (a catalog
change, no table rewrite)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("loans", "0007_loan_status_index")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE loans_loan ADD COLUMN bench_note text",
            "ALTER TABLE loans_loan DROP COLUMN bench_note",
        )
    ]
