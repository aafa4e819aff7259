"""One county's credentials, sessions and task messages aimed at another county.

Already proved elsewhere, not repeated here:

* an official's session (password + TOTP) from 兰考 presented on 金寨's host, and 兰考's
  password on 金寨's login — tests/counties/test_tenant_isolation.py
  (``test_lankao_admin_session_does_not_open_jinzhai``, ``…_credentials_do_not_work_on_jinzhai``);
* a bank client for one county calling another county's API — tests/platform/test_api_auth.py
  (``test_a_bank_client_for_one_county_gets_403_on_another``); a department client pushing to
  another county's host — tests/data_sharing/test_imports_api.py
  (``test_only_data_officers_and_county_admins_with_their_code_may_push``);
* a Celery task sent from one county's schema sees only that county's rows —
  tests/counties/test_tenant_isolation.py (``test_celery_task_sees_only_the_county_it_runs_for``).

Added here: a farmer's session used on another county's host (reads and state-changing POSTs),
an official's verified session used for another county's writes (nightly rerun, upload), and a
real product task (the import) sent from county A with county B's batch id as its argument.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django_tenants.utils import schema_context

from counties.models import NightlyRun, Official
from data_sharing import imports
from data_sharing.models import Consent, ImportBatch
from data_sharing.tasks import import_batch
from platform.celery import app
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.counties.portal.conftest import make_official, otp_login
from tests.data_sharing.test_consent import grant
from tests.loans.test_features import CONSENTABLE, credit_partner

LANKAO, JINZHAI = "lankao.localhost", "jinzhai.localhost"


def session_key(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def presenting(key: str, host: str) -> Client:
    """A browser holding a copied session cookie (browsers keep host-only cookies per host)."""
    intruder = Client(HTTP_HOST=host)
    intruder.cookies[settings.SESSION_COOKIE_NAME] = key
    return intruder


def test_a_farmers_session_opens_nothing_on_another_countys_host(lankao, jinzhai):
    with in_county(lankao):
        farmer = make_farmer(name="跨县甲", id_number=valid_id_number(seq=971), phone="13912340971")
        consent = grant(farmer, credit_partner(), CONSENTABLE)
        own = Client(HTTP_HOST=LANKAO)
        session = own.session
        session["farmer_id"] = farmer.pk
        session.save()
    assert own.get("/m/").status_code == 200

    intruder = presenting(session_key(own), JINZHAI)
    answers = {
        path: intruder.get(path) for path in ("/m/", "/m/data/", "/m/consent/", "/m/loans/", f"/m/consent/{consent.pk}/receipt/")
    }
    revoke = intruder.post(f"/m/consent/{consent.pk}/revoke/")

    assert {path: (r.status_code, r["Location"]) for path, r in answers.items()} == {
        path: (302, "/m/login/") for path in answers
    }
    assert (revoke.status_code, revoke["Location"]) == (302, "/m/login/")
    with in_county(lankao):
        assert Consent.objects.get(pk=consent.pk).status == "active"
        assert Session.objects.filter(session_key=session_key(own)).exists()
    with in_county(jinzhai):
        assert not Session.objects.filter(session_key=session_key(own)).exists()
    # Nor is a farmer's session an official's, on their own county's portal.
    portal = own.get("/portal/")
    assert (portal.status_code, portal["Location"].split("?")[0]) == (302, "/portal/login/")


def test_an_officials_verified_session_cannot_write_on_another_county(lankao, jinzhai, monkeypatch, django_capture_on_commit_callbacks):
    from counties.tasks import nightly_county

    sent = []
    monkeypatch.setattr(nightly_county, "apply_async", lambda *args, **kwargs: sent.append(kwargs))
    day = dt.date(2026, 11, 26)
    with in_county(lankao):
        own = Client(HTTP_HOST=LANKAO)
        user, _official, device = make_official(Official.Role.COUNTY_ADMIN, username="cross-admin")
        otp_login(own, user, device)
    with in_county(jinzhai):
        NightlyRun.objects.create(business_date=day, status=NightlyRun.Status.FAILED, attempts=1, error="boom")
    assert own.get("/portal/").status_code == 200

    intruder = presenting(session_key(own), JINZHAI)
    with django_capture_on_commit_callbacks(execute=True):
        rerun = intruder.post(f"/portal/nightly/{day}/rerun")
        upload = intruder.post(
            "/portal/data/upload/",
            {"category": "land_contract", "as_of_date": "2026-06-30", "file": SimpleUploadedFile("a.csv", b"x")},
        )

    assert (rerun.status_code, rerun["Location"].split("?")[0]) == (302, "/portal/login/")
    assert (upload.status_code, upload["Location"].split("?")[0]) == (302, "/portal/login/")
    assert sent == []
    with in_county(jinzhai):
        assert NightlyRun.objects.get(business_date=day).status == NightlyRun.Status.FAILED
        assert ImportBatch.objects.count() == 0


# --- A task message with another county's id ------------------------------------------------------


@pytest.fixture
def worker(celery_queue, django_db_blocker):
    from celery.contrib.testing.worker import start_worker

    with django_db_blocker.unblock(), start_worker(
        app, pool="solo", perform_ping_check=False, queues=[celery_queue], shutdown_timeout=30
    ) as running:
        yield running


def test_an_import_task_sent_from_one_county_cannot_touch_anothers_batch(scratch_county, worker, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    county_a, county_b = scratch_county("hostile-a"), scratch_county("hostile-b")
    header_only = "身份证号,姓名,承包合同编号,地块数,承包面积（亩）\n".encode()
    with schema_context(county_b.schema_name):
        theirs, _created = imports.batch_submit_file(
            category_code="land_contract", file_name="b.csv", content=header_only, as_of_date=dt.date(2026, 6, 30),
            submitted_by="b-officer", schedule=False,
        )
    with schema_context(county_a.schema_name):
        assert not ImportBatch.objects.filter(pk=theirs.pk).exists()
        # B's id, sent from A's schema: tenant-schemas-celery runs it in A, where no such batch is.
        from_a = import_batch.apply_async(args=[theirs.pk])
    with pytest.raises(Exception, match="ImportBatch matching query does not exist"):
        from_a.get(timeout=120)
    with schema_context(county_b.schema_name):
        assert ImportBatch.objects.get(pk=theirs.pk).status == "queued"
        # Sent from B's own schema, the same message runs there.
        from_b = import_batch.apply_async(args=[theirs.pk])
    assert from_b.get(timeout=120)["status"] == "rejected"
    with schema_context(county_b.schema_name):
        assert ImportBatch.objects.get(pk=theirs.pk).errors[0]["reason_en"] == "the file has a header but no data rows"
    with schema_context(county_a.schema_name):
        assert ImportBatch.objects.count() == 0
