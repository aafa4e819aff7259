"""Committed scratch counties for fault and hostile-input tests that need several real
database connections (threads, a Celery worker, a second process, a terminated backend): rows
made inside pytest-django's per-test transaction are invisible to all of those.

Each county is onboarded for one test and dropped with its whole schema afterwards (ledger,
consent-event and access-log tables refuse DELETE). Codes and domains are ones no other test
uses, so a parallel session on another test database cannot collide either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.db import connection, connections

from platform.models import County, Domain, LendingPartner

# Real county-level GB/T 2260 codes (商丘市), used by no other test module.
SCRATCH = {
    "faults-worker": {"code": "411421", "name": "民权县", "domain": "faults-worker.localhost"},
    "faults-pg": {"code": "411422", "name": "睢县", "domain": "faults-pg.localhost"},
    "faults-redis": {"code": "411423", "name": "宁陵县", "domain": "faults-redis.localhost"},
    "faults-race": {"code": "411424", "name": "柘城县", "domain": "faults-race.localhost"},
    "hostile-a": {"code": "411425", "name": "虞城县", "domain": "hostile-a.localhost"},
    "hostile-b": {"code": "411426", "name": "夏邑县", "domain": "hostile-b.localhost"},
}


def nightly_ready(county: County, *, key: str, farmers: int, seq: int, name: str) -> tuple:
    """A partner ``<key>-bank`` with an active policy and scorecard, and ``farmers`` consenting
    farmers (``name`` + index, ID sequence numbers from ``seq``) in ``county``: what the
    nightly credit run needs. Returns (business date, farmer ids in order)."""
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from tests.loans.test_features import credit_partner
    from tests.loans.test_nightly_batch import activate_policy, activate_scorecard, consenting

    day = timezone.localdate()
    with schema_context(county.schema_name):
        partner = credit_partner(f"{key}-bank")
        activate_policy(partner)
        activate_scorecard()
        made = [consenting(partner, seq=seq + i, name=f"{name}{i}", day=day) for i in range(farmers)]
    return day, sorted(farmer.pk for farmer in made)


def drop_county(code: str, partner_codes: list[str]) -> None:
    connection.set_schema_to_public()
    for county in County.objects.filter(code=code):
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{county.schema_name}" CASCADE')
    Domain.objects.filter(tenant__code=code).delete()
    County.objects.filter(code=code).delete()
    if partner_codes:
        # Raw: the ORM would look for the partner's agreements in the public schema.
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {LendingPartner._meta.db_table} WHERE code = ANY(%s)", [partner_codes])


@pytest.fixture
def transactional_db():
    """Shadows pytest-django's fixture (as tests/loans/conftest.py does): its flush would empty
    the public schema's county registry; the scratch counties clean up after themselves."""


@pytest.fixture
def scratch_county(transactional_db, django_db_setup, django_db_blocker) -> Iterator[Callable[..., County]]:
    """``scratch_county(key)`` onboards the committed county ``SCRATCH[key]``; every county
    made (and every partner named ``<key>-…``) is dropped after the test."""
    from platform.services import county_onboard
    from tests.conftest import COUNTY_ADMIN_PASSWORD

    made: list[str] = []

    def make(key: str) -> County:
        spec = SCRATCH[key]
        drop_county(spec["code"], [f"{key}-bank"])  # left over by a run that was killed
        made.append(key)
        return county_onboard(**spec, province="河南省", city="商丘市", admin_password=COUNTY_ADMIN_PASSWORD).county

    with django_db_blocker.unblock():
        try:
            yield make
        finally:
            connections.close_all()
            for key in made:
                drop_county(SCRATCH[key]["code"], [f"{key}-bank"])
