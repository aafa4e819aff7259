"""SMS login on /m/login/: sending codes (and the hourly limit), checking them (expiry, one
use, the lock-out after wrong codes), first login by name and ID number, the farmer session
and logout — all through the pages, with limits held in PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.db.models import F
from django.test import Client
from django.utils import timezone

from counties.mobile import services
from counties.mobile.auth import SESSION_FARMER
from counties.models import Farmer, SmsLoginCode, SmsLoginGuard
from data_sharing.pii import blind_index, decrypt
from platform.sms import sms_outbox
from tests.conftest import make_farmer, valid_id_number
from tests.counties.mobile.conftest import (
    ID_LI,
    PHONE_LI,
    errors,
    get,
    last_code,
    log_in_by_sms,
    post,
)

NEW_PHONE = "15800001111"


def clock(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M")


def test_a_farmer_logs_in_with_a_code_and_gets_a_fresh_session(client, li):
    first = get(client, "/m/login/")
    anonymous_key = client.session.session_key
    sent = post(client, "/m/login/", {"phone": "139 1234 5678"})
    code_page = get(client, "/m/login/code/")
    outbox = sms_outbox(phone=PHONE_LI)
    code = last_code(PHONE_LI)
    logged_in = post(client, "/m/login/code/", {"code": code})

    assert first.status_code == 200
    assert (sent.status_code, sent["Location"]) == (302, "/m/login/code/")
    assert "验证码已发到 139****5678，5 分钟内有效。" in code_page.content.decode()
    assert [(message["to"], message["text"]) for message in outbox] == [
        ("139****5678", f"【普惠】您的登录验证码是 {code}，5 分钟内有效。请不要告诉任何人。")
    ]
    assert (logged_in.status_code, logged_in["Location"]) == (302, "/m/")
    assert client.session[SESSION_FARMER] == li.pk
    assert client.session.session_key != anonymous_key
    assert "mobile_login" not in client.session
    stored = SmsLoginCode.objects.get()
    assert stored.phone_hash == blind_index(PHONE_LI)
    assert code not in stored.code_hash and len(stored.code_hash) == 64
    assert stored.expires_at - stored.created_at == dt.timedelta(minutes=5)
    assert stored.used_at is not None
    assert get(client, "/m/").status_code == 200


def test_the_demo_code_is_shown_in_local_mode_only(client, li, settings):
    post(client, "/m/login/", {"phone": PHONE_LI})
    local = get(client, "/m/login/code/").content.decode()
    settings.PUHUI_MODE = "production"
    production = get(client, "/m/login/code/").content.decode()

    assert f'演示模式验证码：<strong id="demo-code">{last_code(PHONE_LI)}</strong>' in local
    assert "演示模式" not in production and last_code(PHONE_LI) not in production


def test_a_code_works_once(client, li):
    log_in_by_sms(client, PHONE_LI)
    client.logout()
    client.cookies.clear()
    post(client, "/m/login/", {"phone": PHONE_LI})
    code = last_code(PHONE_LI)
    post(client, "/m/login/code/", {"code": code})
    client.cookies.clear()
    post(client, "/m/login/", {"phone": PHONE_LI})
    SmsLoginCode.objects.filter(used_at__isnull=True).delete()  # only the used code is left

    again = post(client, "/m/login/code/", {"code": code})

    assert again.status_code == 200
    assert errors(again) == ["这个验证码已经用过了，请重新获取。"]


def test_the_sixth_code_within_an_hour_is_refused_and_says_when_to_retry(client, li):
    post(client, "/m/login/", {"phone": PHONE_LI})
    resent = [post(client, "/m/login/resend/", follow=True) for _ in range(4)]
    sixth = post(client, "/m/login/resend/", follow=True)
    first_sent = SmsLoginCode.objects.order_by("created_at").first().created_at

    other_phone = post(Client(), "/m/login/", {"phone": NEW_PHONE})

    assert [(response.redirect_chain, errors(response)) for response in resent] == [
        ([("/m/login/code/", 302)], ["新的验证码已发出，请用最新的一条。"])
    ] * 4
    assert len(sms_outbox(phone=PHONE_LI)) == 5 == SmsLoginCode.objects.filter(phone_hash=blind_index(PHONE_LI)).count()
    assert errors(sixth) == [
        f"验证码发送太频繁（每小时最多 5 次）。请在 {clock(first_sent + dt.timedelta(hours=1))} 以后再试。"
    ]
    assert (other_phone.status_code, other_phone["Location"]) == (302, "/m/login/code/")


def test_the_send_limit_counts_the_last_hour_only(client, li):
    post(client, "/m/login/", {"phone": PHONE_LI})
    for _ in range(4):
        post(client, "/m/login/resend/", follow=True)
    oldest = SmsLoginCode.objects.order_by("created_at").first()
    SmsLoginCode.objects.filter(pk=oldest.pk).update(created_at=F("created_at") - dt.timedelta(minutes=61))

    sixth = post(client, "/m/login/resend/", follow=True)

    assert errors(sixth) == ["新的验证码已发出，请用最新的一条。"]
    assert SmsLoginCode.objects.count() == 5  # the one sent over an hour ago is gone


def test_five_wrong_codes_lock_the_phone_out_even_for_the_right_code(client, li):
    post(client, "/m/login/", {"phone": PHONE_LI})
    right = last_code(PHONE_LI)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    answers = [errors(post(client, "/m/login/code/", {"code": wrong})) for _ in range(5)]
    guard = SmsLoginGuard.objects.get(phone_hash=blind_index(PHONE_LI))
    retry = f"错误次数太多，已暂时锁定。请在 {clock(guard.locked_until)} 以后再试。"
    with_right_code = post(client, "/m/login/code/", {"code": right})
    new_code = post(client, "/m/login/resend/", follow=True)

    assert answers == [[f"验证码不对，还可以再试 {left} 次。"] for left in (4, 3, 2, 1)] + [[retry]]
    assert guard.failed_attempts == 5
    assert guard.locked_until - guard.last_failed_at == dt.timedelta(minutes=30)
    assert errors(with_right_code) == [retry]
    assert SESSION_FARMER not in client.session
    assert errors(new_code) == [retry]
    assert len(sms_outbox(phone=PHONE_LI)) == 1


def test_the_lock_out_ends_after_thirty_minutes(client, li):
    post(client, "/m/login/", {"phone": PHONE_LI})
    for _ in range(5):
        post(client, "/m/login/code/", {"code": "000000" if last_code(PHONE_LI) != "000000" else "111111"})
    SmsLoginGuard.objects.update(
        locked_until=timezone.now() - dt.timedelta(seconds=1),
        last_failed_at=F("last_failed_at") - dt.timedelta(minutes=30),
    )

    post(client, "/m/login/resend/")
    logged_in = post(client, "/m/login/code/", {"code": last_code(PHONE_LI)})

    assert (logged_in.status_code, logged_in["Location"]) == (302, "/m/")
    assert SmsLoginGuard.objects.values_list("failed_attempts", "locked_until").get() == (0, None)


def test_an_expired_code_is_refused(client, li):
    post(client, "/m/login/", {"phone": PHONE_LI})
    SmsLoginCode.objects.update(
        created_at=F("created_at") - dt.timedelta(minutes=5, seconds=1),
        expires_at=F("expires_at") - dt.timedelta(minutes=5, seconds=1),
    )

    expired = post(client, "/m/login/code/", {"code": last_code(PHONE_LI)})

    assert errors(expired) == ["验证码已过期（5 分钟内有效），请重新获取。"]
    assert SESSION_FARMER not in client.session
    assert SmsLoginGuard.objects.get().failed_attempts == 0  # an old code is no guess


def test_a_code_just_inside_five_minutes_still_works(client, li):
    post(client, "/m/login/", {"phone": PHONE_LI})
    SmsLoginCode.objects.update(
        created_at=F("created_at") - dt.timedelta(minutes=4, seconds=50),
        expires_at=F("expires_at") - dt.timedelta(minutes=4, seconds=50),
    )

    response = post(client, "/m/login/code/", {"code": last_code(PHONE_LI)})

    assert (response.status_code, response["Location"]) == (302, "/m/")


def test_only_the_newest_code_counts(client, li):
    post(client, "/m/login/", {"phone": PHONE_LI})
    older = last_code(PHONE_LI)
    post(client, "/m/login/resend/", follow=True)
    newest = last_code(PHONE_LI)
    if older == newest:
        pytest.skip("the two random codes happen to be equal")

    response = post(client, "/m/login/code/", {"code": older})

    assert errors(response) == ["验证码不对，还可以再试 4 次。"]


@pytest.mark.parametrize(
    ("phone", "message"),
    [
        ("1391234567", "请输入 11 位手机号，例如 13812345678。"),
        ("12912345678", "请输入 11 位手机号，例如 13812345678。"),
    ],
)
def test_phone_numbers_are_checked(client, county, phone, message):
    response = post(client, "/m/login/", {"phone": phone})

    assert response.status_code == 200
    assert errors(response) == [message]
    assert SmsLoginCode.objects.count() == 0


def test_first_login_links_the_phone_to_the_farmer_matching_name_and_id(client, county):
    farmer = make_farmer(name="赵六", id_number=valid_id_number(seq=621))

    verified = log_in_by_sms(client, NEW_PHONE)
    page = get(client, "/m/login/identify/")
    linked = post(client, "/m/login/identify/", {"name": " 赵六 ", "id_number": valid_id_number(seq=621).lower()})

    farmer.refresh_from_db()
    assert (verified.status_code, verified["Location"]) == (302, "/m/login/identify/")
    assert "第一次登录" in page.content.decode()
    assert (linked.status_code, linked["Location"]) == (302, "/m/")
    assert client.session[SESSION_FARMER] == farmer.pk
    assert (farmer.phone_hash, decrypt(farmer.phone_encrypted)) == (blind_index(NEW_PHONE), NEW_PHONE)
    # The next login finds the farmer by phone straight away.
    client.cookies.clear()
    assert log_in_by_sms(client, NEW_PHONE)["Location"] == "/m/"


def test_first_login_replaces_an_older_phone_on_record(client, li):
    log_in_by_sms(client, NEW_PHONE)
    linked = post(client, "/m/login/identify/", {"name": "李四", "id_number": ID_LI})

    li.refresh_from_db()
    assert linked["Location"] == "/m/"
    assert decrypt(li.phone_encrypted) == NEW_PHONE
    assert Farmer.objects.filter(phone_hash=blind_index(PHONE_LI)).count() == 0


def test_a_phone_shared_by_two_farmers_logs_in_by_name_and_id(client, li):
    make_farmer(name="李四妻", id_number=valid_id_number(seq=622), phone=PHONE_LI)

    verified = log_in_by_sms(client, PHONE_LI)
    chosen = post(client, "/m/login/identify/", {"name": "李四", "id_number": ID_LI})

    assert verified["Location"] == "/m/login/identify/"
    assert chosen["Location"] == "/m/"
    assert client.session[SESSION_FARMER] == li.pk


def test_first_login_mismatch_never_tells_whether_the_id_exists(client, li):
    log_in_by_sms(client, NEW_PHONE)

    wrong_name = post(client, "/m/login/identify/", {"name": "李五", "id_number": ID_LI})
    unknown_id = post(client, "/m/login/identify/", {"name": "李四", "id_number": valid_id_number(seq=699)})
    bad_format = post(
        client,
        "/m/login/identify/",
        {"name": "李四", "id_number": ID_LI[:17] + "0" if ID_LI[17] != "0" else ID_LI[:17] + "1"},
    )

    li.refresh_from_db()
    assert errors(wrong_name) == ["姓名与身份证号不匹配，还可以再试 4 次。"]
    assert errors(unknown_id) == ["姓名与身份证号不匹配，还可以再试 3 次。"]
    assert errors(bad_format) == ["身份证号不对，请核对 18 位号码（最后一位可能是 X）。"]
    assert decrypt(li.phone_encrypted) == PHONE_LI
    assert SESSION_FARMER not in client.session


def test_first_login_needs_a_checked_code(client, li):
    post(client, "/m/login/", {"phone": NEW_PHONE})  # code sent, not entered

    response = post(client, "/m/login/identify/", {"name": "李四", "id_number": ID_LI})

    li.refresh_from_db()
    assert (response.status_code, response["Location"]) == (302, "/m/login/")
    assert decrypt(li.phone_encrypted) == PHONE_LI


def test_a_login_step_left_for_fifteen_minutes_starts_over(client, li):
    post(client, "/m/login/", {"phone": PHONE_LI})
    session = client.session
    session["mobile_login"]["at"] = (timezone.now() - dt.timedelta(minutes=16)).isoformat()
    session.save()

    response = get(client, "/m/login/code/")

    assert (response.status_code, response["Location"]) == (302, "/m/login/")


def test_pages_need_a_farmer_login_and_logout_ends_it(client, li):
    pages = ["/m/", "/m/consent/", "/m/data/", "/m/consent/1/receipt/"]
    anonymous = [get(client, page) for page in pages]
    log_in_by_sms(client, PHONE_LI)
    logged_in = get(client, "/m/").status_code
    logged_out = post(client, "/m/logout/")
    after = get(client, "/m/")

    assert [(response.status_code, response["Location"]) for response in anonymous] == [(302, "/m/login/")] * 4
    assert logged_in == 200
    assert (logged_out.status_code, logged_out["Location"]) == (302, "/m/login/")
    assert (after.status_code, after["Location"]) == (302, "/m/login/")


def test_an_official_login_is_not_a_farmer_login(client, county):
    from django.contrib.auth import get_user_model

    client.force_login(
        get_user_model().objects.get(username="admin"), backend="django.contrib.auth.backends.ModelBackend"
    )

    assert get(client, "/m/")["Location"] == "/m/login/"


def test_forms_refuse_a_post_without_the_csrf_token(li):
    client = Client(enforce_csrf_checks=True)

    assert post(client, "/m/login/", {"phone": PHONE_LI}).status_code == 403
    assert SmsLoginCode.objects.count() == 0


def test_log_lines_show_phones_masked(client, li, caplog):
    with caplog.at_level(logging.INFO):
        log_in_by_sms(client, PHONE_LI)
        post(client, "/m/login/", {"phone": PHONE_LI})
        post(client, "/m/login/code/", {"code": "000000" if last_code(PHONE_LI) != "000000" else "111111"})

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "login code sent to 139****5678" in text
    assert PHONE_LI not in text and ID_LI not in text
    assert last_code(PHONE_LI) not in text


def test_the_send_limit_is_kept_in_the_database(li):
    """The service keeps nothing in memory: each call counts the codes stored in PostgreSQL, so
    every web process sees the same limit."""
    for _ in range(services.SEND_LIMIT):
        services.login_code_send(phone=PHONE_LI)

    with pytest.raises(services.LoginRefused) as refused:
        services.login_code_send(phone=PHONE_LI)

    assert refused.value.code == "send_limit"
    first = SmsLoginCode.objects.order_by("created_at").first().created_at
    assert refused.value.retry_at == first + dt.timedelta(hours=1)


def test_old_codes_are_purged_by_business_date(li):
    services.login_code_send(phone=PHONE_LI)
    services.login_code_send(phone=PHONE_LI)
    SmsLoginCode.objects.filter(pk=SmsLoginCode.objects.order_by("id").first().pk).update(
        created_at=F("created_at") - dt.timedelta(days=2)
    )

    purged = services.login_codes_purge(business_date=timezone.localdate())

    assert purged == {"deleted": 1}
    assert SmsLoginCode.objects.count() == 1
