"""Onboarding copies a migrated template schema instead of running every county migration
(platform.services.county_schema_create): the copy must be the same schema, object for object
and row for row, as one made by the migrations."""

from __future__ import annotations

import re

import pytest
from django.db import DatabaseError, connection, transaction

from platform.models import County
from platform.services import COUNTY_TEMPLATE_SCHEMA, county_onboard, county_schema_create
from tests.conftest import in_county


def without_casts(definition: str) -> str:
    """A definition up to casts and parentheses. PostgreSQL prints an index predicate such as
    ``status IN ('active', 'paused')`` as it parsed it, and parses that print-out into another
    tree that prints differently (``ARRAY[('active'::varchar)::text, …]`` for
    ``(ARRAY['active'::varchar, …])::text[]``): a copy made from the definitions — like any
    pg_dump restore — shows the second form. Both fold to the same constant array."""
    return re.sub(r"::[a-z ]+(\(\d+\))?(\[\])?|[()]", "", definition)


def fingerprint(schema: str) -> dict:
    """Every table, column, constraint, index, sequence, function and trigger of ``schema``
    with its definition, and every table's rows without their timestamps (a data migration
    stamps its rows with the time it ran: the template's build, or the county's migration)."""
    quoted = connection.ops.quote_name(schema)
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL search_path = {quoted}")  # definitions print unqualified

        def rows(sql: str) -> list[tuple]:
            cursor.execute(sql, [schema])
            return [tuple(str(value).replace(f"{schema}.", "<schema>.") for value in row) for row in cursor.fetchall()]

        result = {
            "tables": rows(
                """SELECT c.relname, c.relpersistence, c.reloptions FROM pg_class c
                    WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'r' ORDER BY 1"""
            ),
            "columns": rows(
                # The position among live columns: a migrated table keeps the numbers of the
                # columns its migrations dropped, a copy does not.
                """SELECT c.relname, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                          a.attidentity, a.attgenerated, pg_get_expr(d.adbin, d.adrelid), a.attcollation
                     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                    WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'r' AND a.attnum > 0
                      AND NOT a.attisdropped ORDER BY 1, 2"""
            ),
            "constraints": rows(
                """SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), k.condeferrable,
                          k.condeferred FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                    WHERE c.relnamespace = %s::regnamespace AND k.contype <> 'n' ORDER BY 1, 2"""
            ),
            "indexes": rows(
                """SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                    WHERE i.relnamespace = %s::regnamespace ORDER BY 1"""
            ),
            "sequences": rows(
                """SELECT s.relname, q.seqtypid::regtype, q.seqstart, q.seqincrement, q.seqmax, q.seqmin, q.seqcache,
                          q.seqcycle FROM pg_class s JOIN pg_sequence q ON q.seqrelid = s.oid
                    WHERE s.relnamespace = %s::regnamespace ORDER BY 1"""
            ),
            "functions": rows(
                "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.pronamespace = %s::regnamespace"
            ),
            "triggers": rows(
                """SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
                     JOIN pg_class c ON c.oid = t.tgrelid
                    WHERE c.relnamespace = %s::regnamespace AND NOT t.tgisinternal ORDER BY 1, 2"""
            ),
        }
        data = {}
        for (table, _persistence, _options) in result["tables"]:
            name = connection.ops.quote_name(table)
            columns = [
                connection.ops.quote_name(column) + "::text"
                for (of, _number, column, kind, *_rest) in result["columns"]
                if of == table and not kind.startswith("timestamp")
            ]
            expression = f"concat_ws('|', {', '.join(columns)})"
            cursor.execute(f"SELECT count(*), md5(string_agg({expression}, ',' ORDER BY {expression})) FROM {name}")
            data[table] = cursor.fetchone()
        result["data"] = data
        for (sequence, *_rest) in result["sequences"]:
            cursor.execute(f"SELECT last_value, is_called FROM {connection.ops.quote_name(sequence)}")
            data[f"sequence {sequence}"] = cursor.fetchone()
        cursor.execute("SET LOCAL search_path = public")
    return result


@pytest.fixture
def migrated_schema(db):
    """A county schema made the old way: every county migration run in it."""
    county = County(schema_name="county_419801", code="419801", name="迁移县")
    with transaction.atomic():
        County.objects.bulk_create([county])  # no save(): nothing but the row
    county = County.objects.get(code="419801")
    county.create_schema(check_if_exists=True, verbosity=0)
    connection.set_schema_to_public()
    return county.schema_name


def test_a_county_copied_from_the_template_equals_one_made_by_the_migrations(db, migrated_schema):
    county = County(schema_name="county_419806", code="419806", name="复制县")
    County.objects.bulk_create([county])
    assert county_schema_create(County.objects.get(code="419806")) == "copied"
    copied = county_onboard(code="419802", name="复制县", domain="fuzhi.localhost", admin_password="x-very-long-pass-1")
    made = fingerprint(migrated_schema)
    for schema in (COUNTY_TEMPLATE_SCHEMA, "county_419806"):
        copy = fingerprint(schema)
        assert copy["tables"] and copy["functions"] and copy["triggers"]
        for part in ("tables", "columns", "sequences", "functions", "triggers", "data"):
            assert copy[part] == made[part], (schema, part)
        for part in ("constraints", "indexes"):
            assert [tuple(map(without_casts, row)) for row in copy[part]] == [
                tuple(map(without_casts, row)) for row in made[part]
            ], (schema, part)
    onboarded = fingerprint(copied.county.schema_name)
    for part in ("tables", "columns", "sequences", "functions", "triggers"):
        assert onboarded[part] == made[part], part
    for part in ("constraints", "indexes"):
        assert [tuple(map(without_casts, row)) for row in onboarded[part]] == [
            tuple(map(without_casts, row)) for row in made[part]
        ], part


def test_the_copy_keeps_the_append_only_triggers_and_continues_the_sequences(db):
    county_onboard(code="419807", name="模板县", domain="muban.localhost", admin_password="x-very-long-pass-1")
    county = County(schema_name="county_419803", code="419803", name="触发县")
    County.objects.bulk_create([county])
    assert county_schema_create(County.objects.get(code="419803")) == "copied"
    copied = county_onboard(code="419808", name="触发县二", domain="chufa.localhost", admin_password="x-very-long-pass-1")
    assert copied.county.schema_name == "county_419808"
    with in_county(County.objects.get(code="419803")):
        from data_sharing.models import DataCategory

        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM data_sharing_consentevent")
        # The catalog came with the copy, and a new row gets the next id, not a taken one.
        count = DataCategory.objects.count()
        assert count == 9
        extra = DataCategory.objects.create(**{
            **{field.name: getattr(DataCategory.objects.order_by("pk").first(), field.name)
               for field in DataCategory._meta.concrete_fields if not field.primary_key},
            "code": "bench_extra",
        })
        assert extra.pk > DataCategory.objects.exclude(pk=extra.pk).order_by("-pk").first().pk


def test_a_template_behind_the_code_is_rebuilt_before_it_is_copied(db):
    county_onboard(code="419804", name="旧模板县", domain="jiu.localhost", admin_password="x-very-long-pass-1")
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {COUNTY_TEMPLATE_SCHEMA}.django_migrations WHERE app = 'loans' AND name = "
            f"(SELECT max(name) FROM {COUNTY_TEMPLATE_SCHEMA}.django_migrations WHERE app = 'loans')"
        )
        cursor.execute(f"SELECT count(*) FROM {COUNTY_TEMPLATE_SCHEMA}.django_migrations")
        behind = cursor.fetchone()[0]

    onboarded = county_onboard(code="419805", name="新模板县", domain="xin.localhost", admin_password="x-very-long-pass-1")

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {COUNTY_TEMPLATE_SCHEMA}.django_migrations")
        assert cursor.fetchone()[0] == behind + 1
        cursor.execute(f"SELECT count(*) FROM {onboarded.county.schema_name}.django_migrations")
        assert cursor.fetchone()[0] == behind + 1
