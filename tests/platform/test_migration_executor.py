"""``migrate_schemas --executor=batched`` (platform/migration_executor.py): the county schemas
that lack a migration get it — the same schema Django's own executor makes — the current ones are
not touched, a failing schema stops the run by name and a rerun finishes it."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test import override_settings

from platform.models import County
from platform.services import county_onboard
from tests.conftest import COUNTY_ADMIN_PASSWORD, TEST_COUNTIES
from tests.platform.test_county_template import fingerprint, without_casts

LAST = ("loans", "0007_loan_status_index")
BEFORE_LAST = "0006_installment_unsettled"
STRUCTURE = ("tables", "columns", "constraints", "indexes", "sequences", "functions", "triggers")


def unapply_last(schema: str) -> None:
    """Take ``loans.0007`` back out of ``schema`` with Django's own executor."""
    call_command("migrate_schemas", "loans", BEFORE_LAST, schema_name=schema, executor="standard",
                 interactive=False, verbosity=0)
    assert not has_last(schema)


def has_last(schema: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT 1 FROM "{schema}".django_migrations WHERE app = %s AND name = %s', list(LAST))
        return cursor.fetchone() is not None


def last_applied(schema: str):
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT max(applied), count(*) FROM "{schema}".django_migrations')
        return cursor.fetchone()


def structure(schema: str) -> dict:
    with transaction.atomic():  # fingerprint() sets its search_path for the transaction
        shape = fingerprint(schema)
    return {
        part: [tuple(map(without_casts, row)) for row in shape[part]] if part in ("constraints", "indexes") else shape[part]
        for part in STRUCTURE
    }


def batched(*args, **options) -> str:
    out = io.StringIO()
    call_command("migrate_schemas", *args, tenant=True, executor="batched", interactive=False, stdout=out, **options)
    return out.getvalue()


@override_settings(TENANT_MULTIPROCESSING_MAX_PROCESSES=1)
def test_behind_schemas_get_the_migration_and_current_ones_are_left_alone(db, capsys):
    lankao = f"county_{TEST_COUNTIES['lankao']['code']}"
    behind = []
    for index in (1, 2):
        onboarded = county_onboard(code=f"41981{index}", name=f"落后县{index}", domain=f"luohou{index}.localhost",
                                   admin_password=COUNTY_ADMIN_PASSWORD)
        behind.append(onboarded.county.schema_name)
        unapply_last(onboarded.county.schema_name)
    assert structure(behind[0]) != structure(lankao)  # the index and the fillfactor of 0007 are gone
    untouched = last_applied(lankao)
    counties = County.objects.exclude(schema_name="public").count()

    batched(verbosity=1)

    printed = capsys.readouterr().out
    assert (f"{counties:,} county schemas: {counties - 2:,} already current, 2 to migrate (1 plan(s)) by 1 process(es)"
            in printed)
    assert "migrated 2 schema(s)" in printed
    for schema in behind:
        assert has_last(schema)
        assert structure(schema) == structure(lankao)
    assert last_applied(lankao) == untouched


def test_backwards_unsupported_options_and_missing_schemas_are_refused_in_both_languages(db):
    with pytest.raises(CommandError) as backwards:
        batched("loans", "zero")
    assert str(backwards.value) == (
        "--executor=batched：只能执行迁移，不能回退，请使用 --executor=multiprocessing。 / "
        "--executor=batched only applies migrations, it does not unapply them; use --executor=multiprocessing."
    )
    with pytest.raises(CommandError, match=r"不支持 --plan.*does not support --plan; use --executor=multiprocessing"):
        batched(plan=True)
    with pytest.raises(CommandError, match=r"找不到唯一的迁移 9999.*cannot find one migration '9999' in app 'loans'"):
        batched("loans", "9999")
    County.objects.bulk_create([County(schema_name="county_419820", code="419820", name="无库县")])  # no schema
    with pytest.raises(CommandError, match=r"schema 不存在：county_419820.*do not exist: county_419820"):
        batched(verbosity=0)


def test_forked_processes_stop_at_a_failing_schema_by_name_and_a_rerun_finishes(django_db_setup, django_db_blocker):
    """Two forked processes over committed schemas; one schema cannot take the migration (a
    table holds the name of the index it creates) until it is repaired."""
    codes = ("419901", "419902", "419903")
    with django_db_blocker.unblock():
        try:
            schemas = [
                county_onboard(code=code, name=f"分叉县{code}", domain=f"fencha{code}.localhost",
                               admin_password=COUNTY_ADMIN_PASSWORD).county.schema_name
                for code in codes
            ]
            for schema in schemas:
                unapply_last(schema)
            broken = schemas[1]
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE TABLE "{broken}".loan_status (squatter int)')

            with override_settings(TENANT_MULTIPROCESSING_MAX_PROCESSES=2), \
                    pytest.raises(CommandError, match=f"迁移 {broken} 失败.*Migrating {broken} failed.*loan_status"):
                batched(verbosity=0)
            connection.set_schema_to_public()
            assert not has_last(broken)
            with connection.cursor() as cursor:  # 0007's fillfactor went back with its failed index
                cursor.execute("SELECT reloptions FROM pg_class WHERE oid = %s::regclass", [f"{broken}.loans_loan"])
                assert cursor.fetchone()[0] is None
                cursor.execute(f'DROP TABLE "{broken}".loan_status')

            with override_settings(TENANT_MULTIPROCESSING_MAX_PROCESSES=2):
                batched(verbosity=0)
            connection.set_schema_to_public()
            reference = structure(f"county_{TEST_COUNTIES['lankao']['code']}")
            for schema in schemas:
                assert has_last(schema)
                assert structure(schema) == reference
        finally:
            connection.set_schema_to_public()
            with connection.cursor() as cursor:
                for code in codes:
                    cursor.execute(f'DROP SCHEMA IF EXISTS "county_{code}" CASCADE')
            County.objects.filter(code__in=codes).delete()
