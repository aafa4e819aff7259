"""A no-op after it, for the comparison run of django-tenants' own executors."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("bench_noop", "0003_add_column")]
    operations = [migrations.RunSQL(migrations.RunSQL.noop, migrations.RunSQL.noop)]
