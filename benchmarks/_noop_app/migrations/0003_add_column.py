"""Another new migration of the same kind (the benchmark times several, for a median)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("bench_noop", "0002_add_column")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE loans_loan ADD COLUMN bench_note_3 text",
            "ALTER TABLE loans_loan DROP COLUMN bench_note_3",
        )
    ]
