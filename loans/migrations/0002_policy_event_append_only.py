"""Policy events are append-only, like consent events and the access log: the database refuses
UPDATE, DELETE and TRUNCATE on the table, whoever asks. puhui_refuse_change() is created in each
county schema by data_sharing 0002."""

from django.db import migrations

TABLE = "loans_policyevent"

CREATE_SQL = f"""
CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION puhui_refuse_change();
"""
DROP_SQL = f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE};"


class Migration(migrations.Migration):
    dependencies = [
        ("loans", "0001_initial"),
        ("data_sharing", "0002_append_only_and_catalog"),
    ]

    operations = [migrations.RunSQL(CREATE_SQL, DROP_SQL)]
