"""The ledger and the compensation fund's movements are append-only (corrections are new
entries, never edits); the county's loan settings and fund start as one row each."""

from django.db import migrations

TABLES = ("loans_journalentry", "loans_journalline", "loans_fundmovement")

CREATE_SQL = "".join(
    f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION puhui_refuse_change();
"""
    for table in TABLES
)
DROP_SQL = "".join(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};" for table in TABLES)


def seed(apps, schema_editor):
    apps.get_model("loans", "LoanSettings").objects.get_or_create(pk=1)
    apps.get_model("loans", "RiskCompensationFund").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("loans", "0004_loan_lifecycle")]

    operations = [
        migrations.RunSQL(CREATE_SQL, DROP_SQL),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
