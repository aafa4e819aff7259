"""Fixtures for the loan lifecycle: a county with an active policy and lending partner, and
borrowers who consented and hold an active credit line."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from loans.models import CreditLine
from tests.conftest import in_county
from tests.data_sharing.test_consent import grant
from tests.loans.test_features import CONSENTABLE, born, credit_partner, farmer_born
from tests.loans.test_nightly_batch import activate_policy


class Lending:
    def __init__(self, partner, policy, day: dt.date) -> None:
        self.partner, self.policy, self.day = partner, policy, day
        self._seq = 100

    def borrower(
        self,
        *,
        line: str = "50000.00",
        rate: str = "0.0435",
        name: str = "借款人",
        features: dict | None = None,
        valid_days: int = 365,
    ):
        """A consenting farmer with an active line of ``line`` yuan at ``rate``."""
        self._seq += 1
        farmer = farmer_born(born(self.day, years=40), self._seq, name)
        grant(farmer, self.partner, CONSENTABLE)
        assessment = None
        if features is not None:
            from loans.models import CreditAssessment

            assessment = CreditAssessment.objects.create(
                business_date=self.day,
                farmer=farmer,
                eligible=True,
                score=600,
                grade="B",
                line_amount=Decimal(line),
                features=features,
                scorecard_version=1,
                policy_version=self.policy.version,
            )
        CreditLine.objects.create(
            farmer=farmer,
            amount=Decimal(line),
            grade="B",
            annual_rate=Decimal(rate),
            valid_until=self.day + dt.timedelta(days=valid_days),
            business_date=self.day,
            assessment=assessment,
        )
        return farmer


@pytest.fixture
def lending(lankao):
    with in_county(lankao):
        partner = credit_partner()
        yield Lending(partner, activate_policy(partner), timezone.localdate())


SCRATCH_COUNTY = {
    "code": "411330",
    "name": "借款并发测试县",
    "domain": "race.localhost",
    "province": "河南省",
    "city": "开封市",
}


@pytest.fixture
def transactional_db():
    """Shadows pytest-django's fixture of this name: pytest-django sets up the test database
    only for a session with a test that asks for ``db``/``transactional_db``, so committed-data
    tests run alone would otherwise reach the development database. Its own fixture would flush
    every table afterwards (the public schema's counties too); ``committed_lending`` cleans up
    after itself instead."""


@pytest.fixture
def committed_lending(transactional_db, django_db_setup, django_db_blocker):
    """A committed scratch county with a partner, an active policy and a ``Lending`` helper,
    for tests that need several real database connections (threads see only committed rows).
    Ledger tables refuse DELETE, so the whole schema goes afterwards."""
    from django.db import connection

    from platform.models import County, LendingPartner
    from platform.services import county_onboard
    from tests.conftest import COUNTY_ADMIN_PASSWORD

    with django_db_blocker.unblock():
        county = county_onboard(**SCRATCH_COUNTY, admin_password=COUNTY_ADMIN_PASSWORD).county
        try:
            with in_county(county):
                partner = credit_partner("race-bank")
                yield county, Lending(partner, activate_policy(partner), timezone.localdate())
        finally:
            connection.set_schema_to_public()
            with connection.cursor() as cursor:
                cursor.execute(f'DROP SCHEMA IF EXISTS "{county.schema_name}" CASCADE')
                County.objects.filter(pk=county.pk).delete()
                cursor.execute(f"DELETE FROM {LendingPartner._meta.db_table} WHERE code = 'race-bank'")
