"""Test fixtures shared by the whole suite.

Two counties are onboarded once per session (creating a county schema runs every county
migration, so doing it per test would dominate the run). Tests use the ``db`` fixture: each
runs in a transaction that is rolled back, inside whichever county schema it enters.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db import connection
from django_tenants.utils import get_public_schema_name, schema_context

SESSION_TAG = uuid.uuid4().hex[:8]
# Keep this session's cache entries and Celery messages apart from any other process sharing
# the same Redis (a running demo, a parallel test session).
settings.CACHES["default"]["KEY_PREFIX"] = f"test-{SESSION_TAG}"

TEST_COUNTIES = {
    "lankao": {"code": "410225", "name": "兰考县", "domain": "lankao.localhost", "province": "河南省", "city": "开封市"},
    "jinzhai": {"code": "341524", "name": "金寨县", "domain": "jinzhai.localhost", "province": "安徽省", "city": "六安市"},
}
COUNTY_ADMIN_PASSWORD = "county-admin-pass-1"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from platform.services import county_onboard

    with django_db_blocker.unblock():
        for spec in TEST_COUNTIES.values():
            county_onboard(**spec, admin_password=COUNTY_ADMIN_PASSWORD)
    yield


@pytest.fixture(scope="session")
def celery_queue() -> str:
    from platform.celery import app

    queue = f"test-{SESSION_TAG}"
    app.conf.task_default_queue = queue
    return queue


def _county(key: str):
    from platform.models import County

    return County.objects.get(code=TEST_COUNTIES[key]["code"])


@pytest.fixture
def lankao(db):
    return _county("lankao")


@pytest.fixture
def jinzhai(db):
    return _county("jinzhai")


@contextmanager
def in_county(county) -> Iterator[None]:
    """Run the block inside ``county``'s schema, returning to public afterwards."""
    with schema_context(county.schema_name):
        yield


@pytest.fixture(autouse=True)
def _back_to_public():
    yield
    connection.set_schema(get_public_schema_name())


def valid_id_number(region: str = "410225", birth: dt.date = dt.date(1980, 5, 17), seq: int = 123) -> str:
    from data_sharing.pii import id_check_digit

    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    return first17 + id_check_digit(first17)


def make_farmer(*, name: str = "张三", id_number: str | None = None, phone: str = "", village=None):
    """Create a farmer (and, if needed, a township/village/household) in the current schema."""
    from counties.models import Farmer, Household, Township, Village
    from data_sharing.pii import birth_date_from_id, blind_index, encrypt

    id_number = id_number or valid_id_number()
    if village is None:
        township, _ = Township.objects.get_or_create(code="410225100", defaults={"name": "城关镇"})
        village, _ = Village.objects.get_or_create(code="410225100201", township=township, defaults={"name": "东村"})
    household = Household.objects.create(village=village, code=f"H{uuid.uuid4().hex[:12]}")
    return Farmer.objects.create(
        household=household,
        village=village,
        name=name,
        gender="M" if int(id_number[16]) % 2 else "F",
        birth_date=birth_date_from_id(id_number),
        is_household_head=True,
        id_number_encrypted=encrypt(id_number),
        id_number_hash=blind_index(id_number),
        phone_encrypted=encrypt(phone) if phone else "",
        phone_hash=blind_index(phone) if phone else "",
    )


def operator_login(client, user):
    """Log ``user`` (a public-schema staff user) in with both factors, without the forms: the
    operators' console asks for a TOTP code after the password."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="console", confirmed=True
    )
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


@pytest.fixture
def admin_client(client, admin_user):
    """pytest-django's ``admin_client``, past the console's second factor too."""
    operator_login(client, admin_user)
    return client
