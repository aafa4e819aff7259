"""A new migration with nothing to do (what a release with a data fix for another app costs)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = []
    operations = [migrations.RunSQL(migrations.RunSQL.noop, migrations.RunSQL.noop)]
