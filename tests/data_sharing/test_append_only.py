"""Consent events and the access log are append-only: the database itself refuses UPDATE,
DELETE and TRUNCATE, whoever asks (the ORM, raw SQL), so history cannot be rewritten."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.models import ProtectedError
from django.db.utils import ProgrammingError
from django.utils import timezone

from data_sharing.models import AccessLog, ConsentEvent
from data_sharing.services import consent_pause
from tests.conftest import in_county, make_farmer
from tests.data_sharing.test_consent import grant, make_agreement, make_partner

TABLES = {ConsentEvent: "data_sharing_consentevent", AccessLog: "data_sharing_accesslog"}


@pytest.fixture
def history(lankao):
    with in_county(lankao):
        partner = make_partner()
        make_agreement(partner)
        farmer = make_farmer()
        consent = grant(farmer, partner)
        consent_pause(consent=consent, actor="farmer")
        AccessLog.objects.create(
            accessor_type=AccessLog.Accessor.OFFICIAL, accessor="officer", partner=partner, farmer=farmer,
            farmer_count=1, categories=["land_contract"], purpose="credit", business_date=timezone.localdate(),
        )
        yield consent


def refused(operation) -> ProgrammingError:
    # The trigger raises SQLSTATE 42501 (insufficient_privilege), which Django surfaces as
    # ProgrammingError; the savepoint keeps the test's transaction usable afterwards.
    with pytest.raises(ProgrammingError) as caught, transaction.atomic():
        operation()
    assert caught.value.__cause__.sqlstate == "42501"
    return caught.value


def snapshot(model) -> list[tuple]:
    return list(model.objects.order_by("id").values_list())


@pytest.mark.parametrize("model", [ConsentEvent, AccessLog])
def test_orm_update_and_delete_are_refused(history, model):
    before = snapshot(model)
    assert len(before) == {ConsentEvent: 2, AccessLog: 1}[model]

    error = refused(lambda: model.objects.update(purpose="x") if model is AccessLog else model.objects.update(actor="x"))
    assert f"table {TABLES[model]} is append-only: UPDATE refused" in str(error)
    error = refused(lambda: model.objects.all().delete())
    assert f"table {TABLES[model]} is append-only: DELETE refused" in str(error)
    error = refused(lambda: model.objects.first().delete())
    assert "DELETE refused" in str(error)

    assert snapshot(model) == before


@pytest.mark.parametrize("table", sorted(TABLES.values()))
@pytest.mark.parametrize(
    ("statement", "verb"),
    [
        ("UPDATE {table} SET id = id", "UPDATE"),
        ("UPDATE {table} SET at = now() WHERE false", "UPDATE"),  # refused per statement, even on no rows
        ("DELETE FROM {table}", "DELETE"),
        # CASCADE: the official portal's farmer-lookup log references the access log, and
        # PostgreSQL refuses a plain TRUNCATE of a referenced table before any trigger runs.
        ("TRUNCATE {table} CASCADE", "TRUNCATE"),
    ],
)
def test_raw_sql_update_delete_and_truncate_are_refused(history, table, statement, verb):
    def run():
        with connection.cursor() as cursor:
            if verb == "TRUNCATE":
                # This test's own inserts leave deferred foreign-key checks pending, and
                # PostgreSQL refuses TRUNCATE before any trigger while they are: fire them first.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(statement.format(table=table))

    error = refused(run)
    if verb == "TRUNCATE":
        assert "is append-only: TRUNCATE refused" in str(error)  # this table's trigger or a referencing one's
    else:
        assert f"table {table} is append-only: {verb} refused" in str(error)


def test_inserting_still_works_and_a_consent_with_history_cannot_be_deleted(history):
    ConsentEvent.objects.create(consent=history, event="resumed", to_status="active", at=timezone.now(), actor="farmer")
    assert ConsentEvent.objects.filter(consent=history).count() == 3
    with pytest.raises(ProtectedError), transaction.atomic():
        history.delete()
