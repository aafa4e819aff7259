"""A partial index of the installments fallen due and not yet paid (DUE or OVERDUE): a few
percent of the table, which keeps every paid installment of every past loan. The nightly close
(:mod:`loans.close`) finds overdue loans through it without reading that history.

Declared in SQL, not in ``Installment.Meta.indexes``, so the models module is unchanged; to move
it there later, add the same ``models.Index(fields=["loan"], name="installment_unsettled",
condition=Q(status__in=["due", "overdue"]))`` and a ``SeparateDatabaseAndState`` migration.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("loans", "0005_ledger_append_only")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS installment_unsettled ON loans_installment (loan_id) "
            "WHERE status IN ('due', 'overdue')",
            "DROP INDEX IF EXISTS installment_unsettled",
        )
    ]
