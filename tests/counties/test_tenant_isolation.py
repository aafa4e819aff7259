"""A farmer registered in one county is invisible from every other county: through the ORM,
over HTTP on each county's own domain, and inside a Celery task run for the other county."""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from counties.models import Farmer, Household, Township, Village
from data_sharing.pii import blind_index, mask_id_number
from platform.celery import app
from platform.models import County
from tests.conftest import COUNTY_ADMIN_PASSWORD, TEST_COUNTIES, in_county, make_farmer, valid_id_number
from tests.counties.portal.conftest import code_for


def _unique_name(prefix: str) -> str:
    # Farmer.name is 32 characters at most; unique so no other row can match the search.
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# --- (a) the ORM ----------------------------------------------------------------------------


def test_farmer_is_invisible_from_the_other_county_through_the_orm(lankao, jinzhai):
    name = _unique_name("兰考甲")
    id_number = valid_id_number(region="410225", seq=401)
    with in_county(lankao):
        farmer = make_farmer(name=name, id_number=id_number)
        assert connection.schema_name == "county_410225"
        assert Farmer.objects.filter(name=name).count() == 1
        assert Farmer.objects.filter(id_number_hash=blind_index(id_number)).get().pk == farmer.pk
        assert Household.objects.filter(pk=farmer.household_id).count() == 1

    with in_county(jinzhai):
        assert connection.schema_name == "county_341524"
        assert Farmer.objects.filter(name=name).count() == 0
        assert Farmer.objects.filter(id_number_hash=blind_index(id_number)).count() == 0
        assert Household.objects.filter(code=farmer.household.code).count() == 0
        # Not even raw SQL on the unqualified table name reaches the other schema.
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM counties_farmer WHERE name = %s", [name])
            assert cursor.fetchone()[0] == 0

    # And the reverse direction: a jinzhai farmer with the same ID number is a different row
    # that lankao cannot see (blind-index uniqueness is per county schema).
    other_name = _unique_name("金寨乙")
    with in_county(jinzhai):
        other = make_farmer(name=other_name, id_number=id_number)
        assert Farmer.objects.filter(id_number_hash=blind_index(id_number)).get().pk == other.pk
    with in_county(lankao):
        assert Farmer.objects.filter(name=other_name).count() == 0
        assert list(Farmer.objects.filter(id_number_hash=blind_index(id_number)).values_list("name", flat=True)) == [
            name
        ]


# --- (b) HTTP on each county's domain -------------------------------------------------------

LANKAO_HOST = TEST_COUNTIES["lankao"]["domain"]
JINZHAI_HOST = TEST_COUNTIES["jinzhai"]["domain"]
FARMERS_URL = "/portal/farmers/"
LOGIN_URL = "/portal/login/"


def _login(client: Client, host: str, password: str = COUNTY_ADMIN_PASSWORD) -> int:
    """The administrator's password, then the code of their TOTP device (made here if missing)."""
    response = client.post(LOGIN_URL, {"username": "admin", "password": password}, HTTP_HOST=host)
    if response.status_code != 302:
        return response.status_code
    county = County.objects.get(domains__domain=host)
    with in_county(county):
        admin = get_user_model().objects.get(username="admin")
        device = TOTPDevice.objects.filter(user=admin, confirmed=True).first()
        device = device or TOTPDevice.objects.create(user=admin, name="portal", confirmed=True)
        code = code_for(device)
    return client.post("/portal/login/code/", {"token": code}, HTTP_HOST=host).status_code


def _search(client: Client, host: str, name: str):
    return client.get(FARMERS_URL, {"q": name}, HTTP_HOST=host)


def _figure(html: str, label: str) -> int:
    match = re.search(rf"<dt>{label}</dt><dd>(\d+)</dd>", html)
    assert match, f"no figure {label!r} on the page"
    return int(match.group(1))


def test_farmer_search_over_http_shows_the_farmer_only_on_its_own_county(lankao, jinzhai):
    name = _unique_name("兰考丙")
    id_number = valid_id_number(region="410225", seq=402)
    with in_county(lankao):
        make_farmer(name=name, id_number=id_number)
    masked = mask_id_number(id_number)
    assert masked == id_number[:4] + "*" * 10 + id_number[-4:]

    lankao_client, jinzhai_client = Client(), Client()
    assert _login(lankao_client, LANKAO_HOST) == 302
    assert _login(jinzhai_client, JINZHAI_HOST) == 302

    own = _search(lankao_client, LANKAO_HOST, name)
    assert own.status_code == 200
    assert own.context["county"].code == "410225"
    assert [row["farmer"].name for row in own.context["rows"]] == [name]
    assert [row["id_masked"] for row in own.context["rows"]] == [masked]
    html = own.content.decode()
    assert name in html
    assert masked in html
    assert id_number not in html  # never the full ID number

    other = _search(jinzhai_client, JINZHAI_HOST, name)
    assert other.status_code == 200
    assert other.context["county"].code == "341524"
    assert other.context["rows"] == []
    html = other.content.decode()
    assert name in html  # echoed in the search box only
    assert masked not in html
    assert "没有找到。" in html


def test_county_home_counts_are_per_county(lankao, jinzhai):
    def orm_summary(county) -> dict[str, int]:
        with in_county(county):
            return {
                "townships": Township.objects.count(),
                "villages": Village.objects.count(),
                "households": Household.objects.count(),
                "farmers": Farmer.objects.count(),
            }

    lankao_before, jinzhai_before = orm_summary(lankao), orm_summary(jinzhai)
    with in_county(lankao):
        township = Township.objects.create(code="410225197", name="测试镇")
        village = Village.objects.create(code="410225197001", township=township, name="测试村")
        make_farmer(name=_unique_name("兰考丁"), id_number=valid_id_number(seq=403), village=village)
        make_farmer(name=_unique_name("兰考戊"), id_number=valid_id_number(seq=404), village=village)

    client = Client()
    lankao_page = client.get("/", HTTP_HOST=LANKAO_HOST)
    jinzhai_page = client.get("/", HTTP_HOST=JINZHAI_HOST)
    assert lankao_page.status_code == jinzhai_page.status_code == 200

    expected_lankao = {
        "townships": lankao_before["townships"] + 1,
        "villages": lankao_before["villages"] + 1,
        "households": lankao_before["households"] + 2,
        "farmers": lankao_before["farmers"] + 2,
    }
    for key, value in expected_lankao.items():
        assert lankao_page.context["summary"][key] == value, key
    for key, value in jinzhai_before.items():
        assert jinzhai_page.context["summary"][key] == value, key
    assert lankao_page.context["county"].code == "410225"
    assert jinzhai_page.context["county"].code == "341524"

    lankao_html, jinzhai_html = lankao_page.content.decode(), jinzhai_page.content.decode()
    assert _figure(lankao_html, "登记农民") == expected_lankao["farmers"]
    assert _figure(lankao_html, "登记农户") == expected_lankao["households"]
    assert _figure(jinzhai_html, "登记农民") == jinzhai_before["farmers"]
    assert _figure(jinzhai_html, "登记农户") == jinzhai_before["households"]


def test_lankao_admin_session_does_not_open_jinzhai(lankao, jinzhai, settings):
    name = _unique_name("兰考己")
    with in_county(lankao):
        make_farmer(name=name, id_number=valid_id_number(seq=405))
    client = Client()
    assert _login(client, LANKAO_HOST) == 302
    assert _search(client, LANKAO_HOST, name).status_code == 200
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value

    # Browsers keep host-only cookies per host, so presenting lankao's session on jinzhai takes
    # a copied cookie (the test client keeps one jar for every host, hence a second client).
    # jinzhai looks the key up in its own schema's session table and finds nothing.
    intruder = Client()
    intruder.cookies[settings.SESSION_COOKIE_NAME] = session_key
    response = _search(intruder, JINZHAI_HOST, name)
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN_URL}?next={FARMERS_URL}%3Fq%3D{_quote(name)}"
    with in_county(jinzhai):
        from django.contrib.sessions.models import Session

        assert Session.objects.filter(session_key=session_key).count() == 0
    with in_county(lankao):
        assert Session.objects.filter(session_key=session_key).count() == 1
    # ... while on lankao the session still opens the roster.
    again = _search(client, LANKAO_HOST, name)
    assert again.status_code == 200
    assert [row["farmer"].name for row in again.context["rows"]] == [name]


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(quote(value, safe=""), safe="")


def test_lankao_admin_credentials_do_not_work_on_jinzhai(lankao, jinzhai):
    from django.contrib.auth import get_user_model

    lankao_only = "lankao-only-pass-7391"
    with in_county(lankao):
        admin = get_user_model().objects.get(username="admin")
        admin.set_password(lankao_only)
        admin.save()

    # Each county has its own "admin" in its own schema: lankao's new password opens lankao ...
    assert _login(Client(), LANKAO_HOST, lankao_only) == 302
    # ... but not jinzhai, whose admin still has its own password.
    refused = Client()
    response = refused.post(LOGIN_URL, {"username": "admin", "password": lankao_only}, HTTP_HOST=JINZHAI_HOST)
    assert response.status_code == 200
    assert response.context["form"].errors
    assert "_auth_user_id" not in refused.session
    assert _search(refused, JINZHAI_HOST, "x").status_code == 302
    assert _login(Client(), JINZHAI_HOST, COUNTY_ADMIN_PASSWORD) == 302
    assert _login(Client(), LANKAO_HOST, COUNTY_ADMIN_PASSWORD) == 200  # changed on lankao only


# --- (c) inside a Celery task run by a real worker ------------------------------------------


@app.task(name="tests.count_farmers_named")
def count_farmers_named(name: str) -> dict[str, object]:
    """Counts in whatever schema tenant-schemas-celery switched this task into."""
    return {"schema": connection.schema_name, "count": Farmer.objects.filter(name=name).count()}


@pytest.fixture
def committed_farmers(django_db_setup, django_db_blocker):
    """One committed farmer in each county (the worker thread has its own connection and
    sees only committed rows); removed again afterwards, with everything made for them."""
    from platform.models import County

    created: list[tuple[str, list]] = []
    names = {}
    with django_db_blocker.unblock():
        try:
            for key, township_code in (("lankao", "410225198"), ("jinzhai", "341524198")):
                county = County.objects.get(code=TEST_COUNTIES[key]["code"])
                names[key] = _unique_name(f"隔离{key[:2]}")
                with in_county(county):
                    township = Township.objects.create(code=township_code, name="隔离测试镇")
                    village = Village.objects.create(code=f"{township_code}001", township=township, name="隔离测试村")
                    farmer = make_farmer(
                        name=names[key],
                        id_number=valid_id_number(region=TEST_COUNTIES[key]["code"], seq=406),
                        village=village,
                    )
                    created.append((county.schema_name, [farmer, farmer.household, village, township]))
            yield names
        finally:
            from django_tenants.utils import schema_context

            for schema_name, rows in created:
                with schema_context(schema_name):
                    for row in rows:
                        type(row).objects.filter(pk=row.pk).delete()


@pytest.fixture
def worker(celery_queue, django_db_blocker):
    from celery.contrib.testing.worker import start_worker

    with django_db_blocker.unblock(), start_worker(
        app, pool="solo", perform_ping_check=False, queues=[celery_queue], shutdown_timeout=30
    ) as running:
        yield running


def test_celery_task_sees_only_the_county_it_runs_for(committed_farmers, worker, django_db_blocker):
    from platform.models import County

    with django_db_blocker.unblock():
        counties = {key: County.objects.get(code=spec["code"]) for key, spec in TEST_COUNTIES.items()}

    sent = {}
    for run_in, county in counties.items():
        for farmer_of, name in committed_farmers.items():
            with in_county(county):
                sent[(run_in, farmer_of)] = count_farmers_named.apply_async(args=[name])

    results = {pair: result.get(timeout=30) for pair, result in sent.items()}
    assert results == {
        ("lankao", "lankao"): {"schema": "county_410225", "count": 1},
        ("lankao", "jinzhai"): {"schema": "county_410225", "count": 0},
        ("jinzhai", "lankao"): {"schema": "county_341524", "count": 0},
        ("jinzhai", "jinzhai"): {"schema": "county_341524", "count": 1},
    }

    # Sent from the public schema, the task runs there, where no farmer table exists at all.
    public = count_farmers_named.apply_async(args=[committed_farmers["lankao"]])
    with pytest.raises(Exception, match="counties_farmer"):
        public.get(timeout=30)
