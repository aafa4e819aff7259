"""Shared set-up for the farmer portal's tests: a county with a lending partner, an active
credit policy and scorecard, and farmers with and without phones; logging in through the real
SMS flow (codes read from the file backend's outbox) or straight into the session."""

from __future__ import annotations

import re

import pytest

from counties.mobile.auth import SESSION_FARMER
from platform.sms import sms_outbox
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy, activate_scorecard

HOST = "lankao.localhost"
PHONE_LI = "13912345678"
ID_LI = valid_id_number(seq=611)
PHONE_WANG = "13712340000"
ID_WANG = valid_id_number(seq=612)


@pytest.fixture(autouse=True)
def _sms_outbox(settings, tmp_path):
    settings.SMS_BACKEND = "platform.sms.FileSmsBackend"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")


@pytest.fixture
def county(lankao):
    """lankao with the partner every category is agreed with and an active policy and
    scorecard; the tests run inside its schema."""
    with in_county(lankao):
        partner = credit_partner()
        activate_policy(partner)
        activate_scorecard()
        yield {"county": lankao, "partner": partner}


@pytest.fixture
def li(county):
    return make_farmer(name="李四", id_number=ID_LI, phone=PHONE_LI)


@pytest.fixture
def wang(county):
    return make_farmer(name="王五", id_number=ID_WANG, phone=PHONE_WANG)


def get(client, path: str, **extra):
    return client.get(path, HTTP_HOST=HOST, **extra)


def post(client, path: str, data: dict | None = None, **extra):
    return client.post(path, data or {}, HTTP_HOST=HOST, **extra)


def last_code(phone: str) -> str:
    """The code in the newest SMS the file backend wrote for ``phone``."""
    return re.search(r"\d{6}", sms_outbox(phone=phone)[-1]["text"]).group()


def log_in_by_sms(client, phone: str):
    """The real flow: phone → code from the outbox → logged in (or on to first login)."""
    post(client, "/m/login/", {"phone": phone})
    return post(client, "/m/login/code/", {"code": last_code(phone)})


def log_in(client, farmer) -> None:
    """Straight into the session (stored in the county's schema, where this runs)."""
    session = client.session
    session[SESSION_FARMER] = farmer.pk
    session.save()


def errors(response) -> list[str]:
    """The texts of a page's form errors and flash messages, in order."""
    html = response.content.decode()
    found = re.findall(r'<ul class="errorlist[^"]*"[^>]*>\s*<li>(.*?)</li>', html, flags=re.S)
    found += re.findall(r'<p class="(?:error|success|info|warning)" role="status">(.*?)</p>', html, flags=re.S)
    return found
