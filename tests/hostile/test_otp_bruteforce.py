"""Guessing one-time codes.

Farmers' SMS codes: five wrong codes lock the phone out for 30 minutes, even for the right code
— tests/counties/mobile/test_login.py (``test_five_wrong_codes_lock_the_phone_out_even_for_the_right_code``,
``test_the_lock_out_ends_after_thirty_minutes``). Added here: twenty guesses at once, from twenty
connections (a script with many sessions), get no more than those five tries — the count lives
in the phone's guard row, locked per attempt in PostgreSQL.

Officials' TOTP codes (after the password, itself locked out by django-axes — see
tests/counties/portal/test_auth.py): each wrong code doubles the wait before the device checks
another (1, 2, 4 … s; django-otp's throttle, kept on the device row), the right code included;
guessing in the wait is not even counted; logging in again with the password does not reset it;
once the wait has passed the right code works. Twenty wrong codes cost six days.
"""

from __future__ import annotations

import datetime as dt
import threading

from django.db import connections
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_tenants.utils import schema_context

from counties.mobile import services
from counties.models import Official, SmsLoginGuard
from data_sharing.pii import blind_index
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.counties.portal.conftest import PASSWORD, code_for, make_official

HOST = "lankao.localhost"
GUESSES = 20
TIMEOUT = 120


def test_twenty_concurrent_sms_code_guesses_get_five_tries(scratch_county, settings, tmp_path):
    settings.SMS_BACKEND = "platform.sms.FileSmsBackend"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")
    county = scratch_county("hostile-a")
    phone = "13912340981"
    with schema_context(county.schema_name):
        make_farmer(name="猜码", id_number=valid_id_number(region="411425", seq=981), phone=phone)
        right = services.login_code_send(phone=phone).code
    wrong = [f"{(int(right) + offset) % 1_000_000:06d}" for offset in range(1, GUESSES + 1)]
    barrier = threading.Barrier(GUESSES)
    refusals: list[str] = []

    def guess(code: str) -> None:
        try:
            with schema_context(county.schema_name):
                barrier.wait(timeout=TIMEOUT)
                try:
                    services.login_code_verify(phone=phone, code=code)
                    refusals.append("ACCEPTED")
                except services.LoginRefused as refused:
                    refusals.append(refused.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=guess, args=(code,)) for code in wrong]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)

    assert sorted(refusals) == sorted(["wrong_code"] * 4 + ["locked"] * 16)
    with schema_context(county.schema_name):
        guard = SmsLoginGuard.objects.get(phone_hash=blind_index(phone))
        assert guard.failed_attempts == 5
        assert guard.locked_until - guard.last_failed_at == dt.timedelta(minutes=30)
        try:
            services.login_code_verify(phone=phone, code=right)
            outcome = "ACCEPTED"
        except services.LoginRefused as refused:
            outcome = refused.code
        assert outcome == "locked"


def _password_step(username: str) -> Client:
    client = Client(HTTP_HOST=HOST)
    response = client.post("/portal/login/", {"username": username, "password": PASSWORD})
    assert (response.status_code, response["Location"].split("?")[0]) == (302, "/portal/login/code/")
    return client


def _waited(device: TOTPDevice) -> None:
    """As if the attacker waited out the current back-off (no sleeping in tests)."""
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - dt.timedelta(days=30)
    )


def _throttled_now(device: TOTPDevice) -> None:
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=timezone.now())


def test_guessing_totp_codes_backs_off_exponentially_and_the_right_code_waits_too(lankao):
    with in_county(lankao):
        _user, _official, device = make_official(Official.Role.COUNTY_ADMIN, username="totp-target")
        right = code_for(device)
        wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
        client = _password_step("totp-target")

        # Five wrong codes, each after the previous wait has passed: each one counts.
        for _ in range(5):
            _waited(device)
            refused = client.post("/portal/login/code/", {"token": wrong})
            assert refused.status_code == 200
        device.refresh_from_db()
        assert device.throttling_failure_count == 5

        # In the 16 s that follow, guesses are not even checked — the right code included.
        _throttled_now(device)
        for _ in range(10):
            assert client.post("/portal/login/code/", {"token": wrong}).status_code == 200
        with_right_code = client.post("/portal/login/code/", {"token": right})
        assert with_right_code.status_code == 200
        assert "错误次数过多，请" in with_right_code.content.decode()
        device.refresh_from_db()
        assert device.throttling_failure_count == 5
        allowed, details = device.verify_is_allowed()
        assert not allowed and details["locked_until"] - device.throttling_failure_timestamp == dt.timedelta(seconds=16)

        # A fresh login with the password does not reset the device's back-off.
        again = _password_step("totp-target")
        assert "错误次数过多，请" in again.post("/portal/login/code/", {"token": right}).content.decode()
        assert client.get("/portal/").status_code == 302

        # Fifteen more counted failures: twenty in all cost 2^19 s, six days, before the next try.
        for _ in range(15):
            _waited(device)
            client.post("/portal/login/code/", {"token": wrong})
        device.refresh_from_db()
        _throttled_now(device)
        device.refresh_from_db()
        _allowed, details = device.verify_is_allowed()
        assert device.throttling_failure_count == 20
        assert details["locked_until"] - device.throttling_failure_timestamp == dt.timedelta(seconds=2**19)

        # Once the wait is over, the owner's right code works.
        _waited(device)
        accepted = client.post("/portal/login/code/", {"token": code_for(device)})
        assert accepted.status_code == 302
        assert client.get("/portal/").status_code == 200
