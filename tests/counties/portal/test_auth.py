"""Signing in to the officials' portal: password then TOTP code, enrolment of a first device,
lock-out after repeated wrong passwords (stored in the county's own schema), the county
administrator's management of officials, and the session timeout."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.db import connection
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from counties.models import Official
from tests.conftest import in_county
from tests.counties.portal.conftest import HOST, OTHER_HOST, PASSWORD, code_for, make_official, otp_login

PORTAL_PAGES = [
    "/portal/", "/portal/dashboard.json", "/portal/loans/", "/portal/nightly/", "/portal/farmers/",
    "/portal/access/", "/portal/access/export.csv", "/portal/policy/", "/portal/officials/", "/portal/data/",
    "/portal/data/upload/",
]


def _login(client: Client, username: str, password: str = PASSWORD, next_url: str = ""):
    data = {"username": username, "password": password}
    path = "/portal/login/" + (f"?next={next_url}" if next_url else "")
    return client.post(path, data, HTTP_HOST=HOST)


def test_every_portal_page_sends_a_stranger_to_the_login_page(lankao, client):
    for page in PORTAL_PAGES:
        response = client.get(page, HTTP_HOST=HOST)
        assert response.status_code == 302, page
        location = urlsplit(response["Location"])
        assert location.path == "/portal/login/", page
        assert parse_qs(location.query)["next"] == [page], page


def test_a_password_alone_does_not_reach_the_dashboard(lankao, client):
    with in_county(lankao):
        make_official(Official.Role.COUNTY_ADMIN, username="zhang")
        response = _login(client, "zhang")
        assert response.status_code == 302
        assert unquote(response["Location"]) == "/portal/login/code/?next=/portal/"
        # Logged in by password, but every portal page (the department-data pages too) asks
        # for the code first.
        for page in PORTAL_PAGES:
            response = client.get(page, HTTP_HOST=HOST)
            assert response.status_code == 302, page
            assert urlsplit(response["Location"]).path == "/portal/login/code/", page


def test_the_code_from_the_device_completes_the_login_and_cannot_be_replayed(lankao, client):
    with in_county(lankao):
        _user, _official, device = make_official(Official.Role.RISK_OFFICER, username="li")
        assert _login(client, "li", next_url="/portal/loans/").status_code == 302
        page = client.get("/portal/login/code/?next=/portal/loans/", HTTP_HOST=HOST)
        assert page.status_code == 200
        assert "身份验证器" in page.content.decode()

        wrong = client.post("/portal/login/code/", {"token": "000000" if code_for(device) != "000000" else "111111",
                                                    "next": "/portal/loans/"}, HTTP_HOST=HOST)
        assert wrong.status_code == 200
        assert "验证码不正确" in wrong.content.decode()
        assert client.get("/portal/", HTTP_HOST=HOST).status_code == 302

        device.refresh_from_db()
        device.throttle_reset()  # the wrong code's 1-second back-off
        code = code_for(device)
        right = client.post("/portal/login/code/", {"token": code, "next": "/portal/loans/"}, HTTP_HOST=HOST)
        assert (right.status_code, right["Location"]) == (302, "/portal/loans/")
        assert client.get("/portal/", HTTP_HOST=HOST).status_code == 200

        # The same code a second time (another browser, a shoulder-surfer) is refused.
        other = Client()
        assert _login(other, "li").status_code == 302
        replay = other.post("/portal/login/code/", {"token": code, "next": "/portal/"}, HTTP_HOST=HOST)
        assert replay.status_code == 200
        assert other.get("/portal/", HTTP_HOST=HOST).status_code == 302


def test_an_official_without_a_device_enrols_one_from_the_otpauth_url(lankao, client):
    with in_county(lankao):
        user, _official, _ = make_official(Official.Role.DATA_OFFICER, username="wang", device=False)
        assert _login(client, "wang").status_code == 302
        verify = client.get("/portal/login/code/?next=/portal/", HTTP_HOST=HOST)
        assert unquote(verify["Location"]) == "/portal/login/enrol/?next=/portal/"

        page = client.get("/portal/login/enrol/?next=/portal/", HTTP_HOST=HOST)
        assert page.status_code == 200
        assert page["Cache-Control"].startswith("max-age=0")  # never cached: it shows the secret
        device = TOTPDevice.objects.get(user=user)
        assert not device.confirmed
        html = page.content.decode()
        assert page.context["config_url"] == device.config_url
        assert device.config_url.startswith("otpauth://totp/%E6%99%AE%E6%83%A0%20%E5%85%B0%E8%80%83%E5%8E%BF%3Awang?")
        assert "issuer=%E6%99%AE%E6%83%A0%20%E5%85%B0%E8%80%83%E5%8E%BF" in device.config_url  # 普惠 兰考县
        assert page.context["secret"] in html
        assert "<svg" in html
        # Reloading the page shows the same secret (no second device).
        client.get("/portal/login/enrol/?next=/portal/", HTTP_HOST=HOST)
        assert TOTPDevice.objects.filter(user=user).count() == 1

        confirmed = client.post("/portal/login/enrol/", {"token": code_for(device), "next": "/portal/"}, HTTP_HOST=HOST)
        assert (confirmed.status_code, confirmed["Location"]) == (302, "/portal/")
        device.refresh_from_db()
        assert device.confirmed
        assert client.get("/portal/", HTTP_HOST=HOST).status_code == 200
        # With a confirmed device, enrolment is over: the page sends back to the code step.
        assert urlsplit(client.get("/portal/login/enrol/", HTTP_HOST=HOST)["Location"]).path == "/portal/"
        fresh = Client()
        _login(fresh, "wang")
        assert urlsplit(fresh.get("/portal/login/enrol/", HTTP_HOST=HOST)["Location"]).path == "/portal/login/code/"


def _attempts_in(schema: str, username: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{schema}".axes_accessattempt WHERE username = %s', [username])
        return cursor.fetchone()[0]


def test_repeated_wrong_passwords_lock_the_account_out_in_its_own_county(lankao, jinzhai, client):
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5
    with in_county(lankao):
        make_official(Official.Role.COUNTY_ADMIN, username="zhao")
    for attempt in range(limit - 1):
        response = _login(client, "zhao", password=f"wrong-{attempt}")
        assert response.status_code == 200  # the form again, with its error
    # The limit-th failure locks the account out from this address…
    assert _login(client, "zhao", password="wrong-last").status_code == 429
    # …and from then on even the right password gets the lock-out page, not a session.
    locked = _login(client, "zhao")
    assert locked.status_code == 429
    assert "账号已暂时锁定" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # The attempts are recorded in the county's schema — not in public, not in another county.
    assert _attempts_in(lankao.schema_name, "zhao") == 1
    assert _attempts_in(jinzhai.schema_name, "zhao") == 0
    assert _attempts_in("public", "zhao") == 0
    with in_county(lankao):
        assert AccessAttempt.objects.get(username="zhao").failures_since_start == limit + 1

    # Another county's official of the same name is not locked out.
    with in_county(jinzhai):
        make_official(Official.Role.COUNTY_ADMIN, username="zhao")
    assert client.post("/portal/login/", {"username": "zhao", "password": PASSWORD}, HTTP_HOST=OTHER_HOST).status_code == 302


def test_a_correct_password_before_the_limit_clears_the_count(lankao, client):
    with in_county(lankao):
        make_official(Official.Role.COUNTY_ADMIN, username="qian")
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "qian", password=f"wrong-{attempt}")
    assert _login(client, "qian").status_code == 302
    client.post("/portal/logout/", HTTP_HOST=HOST)
    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "qian", password=f"again-{attempt}").status_code == 200
    assert _login(client, "qian").status_code == 302


def test_the_county_admin_unlocks_a_locked_out_official(lankao, client):
    with in_county(lankao):
        admin_user, _admin, admin_device = make_official(Official.Role.COUNTY_ADMIN, username="sun")
        _user, locked_official, _ = make_official(Official.Role.RISK_OFFICER, username="zhou")
    stranger = Client()
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        _login(stranger, "zhou", password=f"wrong-{attempt}")
    assert _login(stranger, "zhou").status_code == 429
    with in_county(lankao):
        otp_login(client, admin_user, admin_device)
        listing = client.get("/portal/officials/", HTTP_HOST=HOST)
        assert {row["official"].user.username: row["locked"] for row in listing.context["rows"]}["zhou"] is True
        response = client.post(f"/portal/officials/{locked_official.pk}/unlock", HTTP_HOST=HOST)
        assert response.status_code == 302
    assert _login(stranger, "zhou").status_code == 302


def test_the_county_admin_adds_officials_with_roles_and_townships(portal):
    portal.login(Official.Role.COUNTY_ADMIN)
    east = portal.townships["east"]
    added = portal.post(
        "/portal/officials/", {"username": "wu", "role": "township_officer", "township": east.pk, "password": "Dongba-tou-2026"}
    )
    assert added.status_code == 302
    official = Official.objects.select_related("user").get(user__username="wu")
    assert (official.role, official.township_id, official.user.check_password("Dongba-tou-2026")) == (
        "township_officer", east.pk, True,
    )
    assert not TOTPDevice.objects.filter(user=official.user).exists()  # enrols at first login

    no_township = portal.post("/portal/officials/", {"username": "zheng", "role": "township_officer", "password": "Dongba-tou-2026"})
    assert no_township.status_code == 200
    assert "乡镇专员必须指定所属乡镇" in no_township.content.decode()
    weak = portal.post("/portal/officials/", {"username": "feng", "role": "auditor", "password": "12345678"})
    assert weak.status_code == 200
    taken = portal.post("/portal/officials/", {"username": "wu", "role": "auditor", "password": "Dongba-tou-2026"})
    assert "已被使用" in taken.content.decode()
    assert not Official.objects.filter(user__username__in=["zheng", "feng"]).exists()
    assert Official.objects.filter(user__username="wu").count() == 1


def test_resetting_a_second_factor_ends_its_verified_sessions_and_asks_for_a_new_device(portal, client):
    admin = portal.login(Official.Role.COUNTY_ADMIN)
    phone_lost_user, phone_lost, device = make_official(Official.Role.RISK_OFFICER, username="chen")
    their_browser = Client()
    otp_login(their_browser, phone_lost_user, device)
    assert their_browser.get("/portal/loans/", HTTP_HOST=HOST).status_code == 200

    assert portal.post(f"/portal/officials/{phone_lost.pk}/reset-otp").status_code == 302
    assert not TOTPDevice.objects.filter(user=phone_lost_user).exists()
    # Their open session lost its second factor; the code step sends them to enrol anew.
    response = their_browser.get("/portal/loans/", HTTP_HOST=HOST)
    assert urlsplit(response["Location"]).path == "/portal/login/code/"
    assert urlsplit(their_browser.get(response["Location"], HTTP_HOST=HOST)["Location"]).path == "/portal/login/enrol/"
    assert admin.user.username != "chen"


def test_sessions_expire_after_the_idle_timeout(portal):
    portal.login(Official.Role.AUDITOR)
    response = portal.get("/portal/")
    assert response.status_code == 200
    assert settings.SESSION_COOKIE_AGE == 30 * 60 and settings.SESSION_SAVE_EVERY_REQUEST
    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == settings.SESSION_COOKIE_AGE


def test_programmatic_authenticate_without_a_request_still_works(lankao):
    from django.contrib.auth import authenticate

    with in_county(lankao):
        make_official(Official.Role.AUDITOR, username="shell-user")
        assert authenticate(username="shell-user", password=PASSWORD).username == "shell-user"


@pytest.mark.parametrize("role", [Official.Role.AUDITOR, Official.Role.DATA_OFFICER])
def test_logout_is_a_post_and_ends_the_session(portal, role):
    portal.login(role)
    assert portal.post("/portal/logout/")["Location"] == "/portal/login/"
    assert portal.get("/portal/").status_code == 302
