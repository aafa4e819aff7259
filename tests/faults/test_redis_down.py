"""Redis down: the portals keep serving, writes that need a task say so, nothing is lost.

Redis is "down" for one block at a time (``tests/faults/redis_down.py``): the Django cache and
Celery's broker and result backend point at a closed port, so every client gets "connection
refused" at once, as when Redis has stopped. The shared Redis is never touched.

What needs Redis in the product, and what must happen without it:

* the host → county lookup of every request is cached in Redis (``platform/middleware.py``):
  without Redis it reads PostgreSQL — the farmer's home page, the SMS-code login (codes, send
  limits and lock-outs live in PostgreSQL), the official's password + TOTP login (django-axes
  counts in PostgreSQL), the dashboard and the farmer search all work;
* sessions are in PostgreSQL (Django's database backend): nobody is logged out;
* a drawdown needs no task: the disbursement instruction is written to the transactional
  outbox in the loan's own transaction, and waits there for delivery;
* an import needs a Celery task: the upload is kept and the batch FAILS saying the queue is
  unavailable (it used to answer 500 and leave the batch QUEUED for a message never sent);
  submitting the same file once Redis is back imports it;
* the nightly rerun needs a Celery task: the button says the queue is unavailable and leaves
  the run as it was, so it can be pressed again later;
* the bank API remembers nonces in Redis: without it a signed request cannot be checked for
  replay and is refused with 503 in the API's error format.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from counties.models import NightlyRun, Official
from data_sharing.models import GovernmentRecord, ImportBatch
from data_sharing.pii import blind_index, encrypt
from loans.models import Loan, OutboxMessage
from platform.celery import app
from platform.sms import sms_outbox
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.counties.portal.conftest import PASSWORD, code_for, make_official, otp_login
from tests.faults.redis_down import redis_down
from tests.loans.conftest import Lending
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy

LANKAO = "lankao.localhost"
SCRATCH_HOST = "faults-redis.localhost"
PHONE = "13912340001"


@pytest.fixture(autouse=True)
def _sms_outbox(settings, tmp_path):
    settings.SMS_BACKEND = "platform.sms.FileSmsBackend"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def sms_code(phone: str) -> str:
    return re.search(r"\d{6}", sms_outbox(phone=phone)[-1]["text"]).group()


# --- Reads and logins -------------------------------------------------------------------------


def test_the_portals_serve_reads_and_logins_while_redis_is_down(lankao):
    with in_county(lankao):
        farmer = make_farmer(name="缓存甲", id_number=valid_id_number(seq=731), phone=PHONE)
        user, _official, device = make_official(Official.Role.COUNTY_ADMIN, username="redis-down-admin")
    logged_in_farmer, logged_in_official = Client(HTTP_HOST=LANKAO), Client(HTTP_HOST=LANKAO)
    with in_county(lankao):
        otp_login(logged_in_official, user, device)
        session = logged_in_farmer.session
        session["farmer_id"] = farmer.pk
        session.save()

    with redis_down():
        # Already logged in: the sessions are in PostgreSQL.
        home = logged_in_farmer.get("/m/")
        dashboard = logged_in_official.get("/portal/")
        search = logged_in_official.get("/portal/farmers/", {"q": "缓存甲"})
        nightly = logged_in_official.get("/portal/nightly/")

        # Logging in afresh: the farmer by SMS code ...
        farmer_client = Client(HTTP_HOST=LANKAO)
        sent = farmer_client.post("/m/login/", {"phone": PHONE})
        verified = farmer_client.post("/m/login/code/", {"code": sms_code(PHONE)})
        farmer_home = farmer_client.get("/m/")
        # ... the official by password, then TOTP code.
        official_client = Client(HTTP_HOST=LANKAO)
        password = official_client.post("/portal/login/", {"username": "redis-down-admin", "password": PASSWORD})
        with in_county(lankao):
            code = code_for(device)
        second_factor = official_client.post("/portal/login/code/", {"token": code})
        official_dashboard = official_client.get("/portal/")

    assert home.status_code == 200 and "缓存甲" in home.content.decode()
    assert (dashboard.status_code, search.status_code, nightly.status_code) == (200, 200, 200)
    assert [row["farmer"].pk for row in search.context["rows"]] == [farmer.pk]
    assert (sent.status_code, sent["Location"]) == (302, "/m/login/code/")
    assert (verified.status_code, verified["Location"]) == (302, "/m/")
    assert farmer_home.status_code == 200 and "缓存甲" in farmer_home.content.decode()
    assert (password.status_code, password["Location"].split("?")[0]) == (302, "/portal/login/code/")
    assert second_factor.status_code == 302
    assert official_dashboard.status_code == 200


def test_import_pages_and_an_import_run_work_while_redis_is_down(lankao):
    """Import progress is published to the cache while a batch runs: without Redis the page
    falls back to the batch row, and a run (the management command, or a worker that already
    holds its message) completes."""
    from data_sharing import imports

    with in_county(lankao):
        id_number = valid_id_number(seq=732)
        make_farmer(name="进度甲", id_number=id_number)
        user, _official, device = make_official(Official.Role.DATA_OFFICER, username="redis-down-data")
        client = Client(HTTP_HOST=LANKAO)
        otp_login(client, user, device)
        content = f"身份证号,姓名,承包合同编号,地块数,承包面积（亩）\n{id_number},进度甲,HT-3,2,8\n".encode()
        batch, _created = imports.batch_submit_file(
            category_code="land_contract", file_name="a.csv", content=content, as_of_date=dt.date(2026, 6, 30),
            submitted_by="redis-down-data", schedule=False,
        )
        ImportBatch.objects.filter(pk=batch.pk).update(status="running", rows_total=1)

        with redis_down():
            page = client.get(f"/portal/data/batches/{batch.pk}/")
            progress = client.get(f"/portal/data/batches/{batch.pk}/progress")
            ImportBatch.objects.filter(pk=batch.pk).update(status="queued")
            done = imports.batch_run(batch_id=batch.pk)

    assert page.status_code == 200
    assert (progress.status_code, progress.json()["status"], progress.json()["rows_total"]) == (200, "running", 1)
    assert (done.status, done.rows_imported) == ("succeeded", 1)


# --- Writes: committed data in a scratch county (the requests commit, as in production) -------


@pytest.fixture
def county(scratch_county):
    county = scratch_county("faults-redis")
    with schema_context(county.schema_name):
        partner = credit_partner("faults-redis-bank")
        lending = Lending(partner, activate_policy(partner), timezone.localdate())
        yield county, lending


def official_client(role: str, username: str) -> Client:
    client = Client(HTTP_HOST=SCRATCH_HOST)
    user, _official, device = make_official(role, username=username)
    otp_login(client, user, device)
    return client


def test_a_drawdown_goes_to_the_outbox_and_waits_there_while_redis_is_down(county):
    _county, lending = county
    farmer = lending.borrower(name="借款人甲")
    phone = "15800009901"
    farmer.phone_encrypted, farmer.phone_hash = encrypt(phone), blind_index(phone)
    farmer.save(update_fields=["phone_encrypted", "phone_hash"])
    client = Client(HTTP_HOST=SCRATCH_HOST)
    session = client.session
    session["farmer_id"] = farmer.pk
    session.save()

    with redis_down():
        terms = client.post("/m/borrow/", {"amount": "12000", "term_months": "12", "method": "equal_principal", "next": "1"})
        page = client.get("/m/borrow/confirm/")
        key = re.search(r'name="key" value="([0-9a-f-]{36})"', page.content.decode()).group(1)
        confirmed = client.post("/m/borrow/confirm/", {"code": sms_code(phone), "key": key})

    loan = Loan.objects.get(farmer=farmer)
    assert (terms.status_code, confirmed.status_code, confirmed["Location"]) == (302, 302, f"/m/borrow/done/{loan.pk}/")
    message = OutboxMessage.objects.get(loan=loan)
    # Waiting for delivery (beat's every-minute dispatch once Redis is back), not lost.
    assert (message.topic, message.attempts, message.delivered_at, message.dead_lettered_at) == (
        "drawdown.requested", 0, None, None,
    )


LAND_HEADER = "身份证号,姓名,承包合同编号,地块数,承包面积（亩）,承包期限至\n"


def test_an_upload_is_kept_and_fails_saying_the_queue_is_down_then_imports_once_redis_is_back(
    county, celery_queue, django_db_blocker
):
    id_number = valid_id_number(region="411423", seq=741)
    make_farmer(name="上传甲", id_number=id_number)
    client = official_client(Official.Role.DATA_OFFICER, "redis-down-data")
    content = (LAND_HEADER + f"{id_number},上传甲,HT-9,3,12.5,\n").encode("gbk")

    def upload():
        return client.post(
            "/portal/data/upload/",
            {"category": "land_contract", "as_of_date": "2026-06-30", "file": SimpleUploadedFile("土地.csv", content)},
        )

    with redis_down():
        refused = upload()
        batch = ImportBatch.objects.get()
        page = client.get(f"/portal/data/batches/{batch.pk}/")
        progress = client.get(f"/portal/data/batches/{batch.pk}/progress")

    assert (refused.status_code, refused["Location"]) == (302, f"/portal/data/batches/{batch.pk}/")
    assert (batch.status, batch.error_count) == ("failed", 1)
    assert page.status_code == 200
    assert "任务队列暂时不可用，导入没有开始；文件已保存，请稍后重新提交同一文件" in page.content.decode()
    assert progress.json()["status"] == "failed"

    # Redis is back: the same file again is queued, and a worker imports it.
    from celery.contrib.testing.worker import start_worker

    again = upload()
    batch.refresh_from_db()
    assert (again["Location"], batch.status, batch.errors) == (refused["Location"], "queued", [])
    with django_db_blocker.unblock(), start_worker(
        app, pool="solo", perform_ping_check=False, queues=[celery_queue], shutdown_timeout=30
    ):
        deadline = time.monotonic() + 120
        while batch.status in ("queued", "running"):
            assert time.monotonic() < deadline, "the import was not run"
            time.sleep(0.2)
            batch.refresh_from_db()
    assert (batch.status, batch.rows_imported) == ("succeeded", 1)
    assert GovernmentRecord.objects.filter(record_key="HT-9").count() == 1


def test_the_nightly_rerun_says_the_queue_is_down_and_can_be_pressed_again_later(county):
    day = dt.date(2026, 11, 26)
    NightlyRun.objects.create(business_date=day, status=NightlyRun.Status.FAILED, attempts=1, error="boom")
    client = official_client(Official.Role.COUNTY_ADMIN, "redis-down-admin")
    client.raise_request_exception = False

    with redis_down():
        pressed = client.post(f"/portal/nightly/{day}/rerun")
        page = client.get(f"/portal/nightly/{day}/")

    assert pressed.status_code == 302, "a 500 instead of a message"
    assert NightlyRun.objects.get(business_date=day).status != NightlyRun.Status.QUEUED
    assert "队列" in page.content.decode()


def test_a_signed_api_request_is_refused_in_the_error_format_while_redis_is_down(lankao):
    from tests.platform.test_api_auth import lines_path, make_bank

    with in_county(lankao):
        partner = credit_partner()
        activate_policy(partner)
    bank = make_bank(partner, [lankao])
    bank.http.raise_request_exception = False

    with redis_down():
        response = bank.get(lines_path())

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert set(response.json()["error"]) >= {"code", "message", "message_en"}


# --- A Redis that stops answering ------------------------------------------------------------


def test_a_redis_that_accepts_connections_but_never_answers_does_not_hang_the_portals(lankao, settings):
    """A partition rather than a stop: the port accepts connections (the kernel's backlog) and
    nothing ever answers. The cache's socket timeouts (settings.CACHES OPTIONS, 1 s) bound each of
    the request's two cache calls (the host lookup's get and set), then the lookup reads
    PostgreSQL. redis-py's own default is 5 s per call: 10 s for this page (measured 10.3 s
    against 2.2 s), which is what the 6 s bound below tells apart — a bound on a hang, with
    seconds of slack for a busy machine, not a speed target."""
    import socket
    import threading
    import time

    from django.test import override_settings

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # never accept()ed, never answered
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        cache = {**settings.CACHES["default"], "LOCATION": url}
        assert cache["OPTIONS"]["socket_timeout"] == 1.0
        responses, waited = [], []

        def visit() -> None:
            from django.db import connection

            started = time.monotonic()
            try:
                responses.append(Client(HTTP_HOST=LANKAO).get("/m/login/"))
                waited.append(time.monotonic() - started)
            finally:
                connection.close()  # this thread's own

        with override_settings(CACHES={"default": cache}):
            visitor = threading.Thread(target=visit, daemon=True)
            visitor.start()
            visitor.join(timeout=30)
            assert not visitor.is_alive(), "the request is still waiting on the silent Redis"
    assert responses[0].status_code == 200
    assert waited[0] < 6.0
