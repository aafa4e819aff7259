"""The second no-op, for the standard executor's comparison run."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("bench_noop", "0001_noop")]
    operations = [migrations.RunSQL(migrations.RunSQL.noop, migrations.RunSQL.noop)]
