"""Writes for the farmer portal's SMS codes: login, and confirming a loan drawdown.

A farmer logs in with their phone: a 6-digit code is sent by SMS (:func:`login_code_send`) and
checked (:func:`login_code_verify`). On a first login, when no single farmer has that phone,
they give their name and ID number and the phone is linked to the farmer they match
(:func:`farmer_identify`). A drawdown is confirmed the same way with a code sent to the
farmer's phone (:func:`drawdown_code_send`, :func:`drawdown_code_verify`), bound to the
amount, term and method the farmer saw: it confirms that loan and no other.

Limits (all in PostgreSQL, in the county's schema, so they hold across every web process):

* a code expires :data:`CODE_TTL` after it is sent and works once; only the newest code of a
  phone counts;
* at most :data:`SEND_LIMIT` codes per phone per :data:`SEND_WINDOW`;
* :data:`MAX_FAILURES` wrong codes (or wrong name/ID pairs) lock the phone out for
  :data:`LOCKOUT` — even the right code is refused until then.

Each operation locks the phone's :class:`~counties.models.SmsLoginGuard` row first, so two
requests for one phone run one after the other. Codes are kept as keyed hashes only; phones as
their blind index; log lines show phones masked.

Drawdown codes use the same tables and limits under a key of their own per phone (a keyed hash
of the purpose and the phone's blind index, see :func:`_purpose_key`), so they neither count
towards the login limits nor can be used to log in, and a login code cannot confirm a loan.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _

from counties.models import Farmer, SmsLoginCode, SmsLoginGuard
from data_sharing.pii import blind_index, decrypt, encrypt, mask_phone, normalize_id_number, validate_phone
from platform.sms import SmsDeliveryError, sms_send

logger = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_TTL = dt.timedelta(minutes=5)
SEND_LIMIT = 5
SEND_WINDOW = dt.timedelta(hours=1)
MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=30)
_CODE_SALT = "puhui.counties.mobile.login-code"
_PURPOSE_SALT = "puhui.counties.mobile.code-purpose"
DRAWDOWN = "drawdown"


class LoginRefused(ValidationError):
    """A login step refused, with a message for the farmer and, when waiting helps, the moment
    they may try again (``retry_at``)."""

    def __init__(self, message: str, *, code: str, retry_at: dt.datetime | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_at = retry_at


@dataclass(frozen=True)
class SentCode:
    # The plain code: only ever shown on the page in local (demo) mode, never logged or stored.
    code: str
    expires_at: dt.datetime


def _clock(moment: dt.datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M")


def _minutes(period: dt.timedelta) -> int:
    return int(period.total_seconds() // 60)


def _code_hash(phone_hash: str, code: str, bound: str = "") -> str:
    # Keyed (SECRET_KEY) and bound to the phone: a leaked table does not give the codes away by
    # hashing the million 6-digit candidates. ``bound``: what else the code confirms (a
    # drawdown's terms) — the same code checked against other terms is a wrong code.
    message = f"{phone_hash}:{bound}:{code}" if bound else f"{phone_hash}:{code}"
    return salted_hmac(_CODE_SALT, message, algorithm="sha256").hexdigest()


def _purpose_key(phone_hash: str, purpose: str) -> str:
    """The key a phone's codes and guard are kept under for ``purpose``: the phone's blind index
    itself for login, a keyed hash of it for anything else (the same length, never equal)."""
    if purpose == "login":
        return phone_hash
    return salted_hmac(_PURPOSE_SALT, f"{purpose}:{phone_hash}", algorithm="sha256").hexdigest()


def _guard(phone_hash: str) -> SmsLoginGuard:
    """The phone's guard row, created if needed, locked until the transaction ends."""
    SmsLoginGuard.objects.bulk_create([SmsLoginGuard(phone_hash=phone_hash)], ignore_conflicts=True)
    return SmsLoginGuard.objects.select_for_update().get(phone_hash=phone_hash)


def _locked_refusal(guard: SmsLoginGuard, now: dt.datetime) -> LoginRefused | None:
    if guard.locked_until and guard.locked_until > now:
        return LoginRefused(
            _("错误次数太多，已暂时锁定。请在 %(time)s 以后再试。") % {"time": _clock(guard.locked_until)},
            code="locked",
            retry_at=guard.locked_until,
        )
    return None


def _forget_old_failures(guard: SmsLoginGuard, now: dt.datetime) -> None:
    """A lock-out that has run out, or failures older than the lock-out period, start afresh."""
    stale = guard.last_failed_at is None or guard.last_failed_at <= now - LOCKOUT
    if (guard.locked_until and guard.locked_until <= now) or (guard.failed_attempts and stale):
        guard.failed_attempts, guard.locked_until = 0, None
        guard.save(update_fields=["failed_attempts", "locked_until"])


def _failure(guard: SmsLoginGuard, now: dt.datetime, *, message: str, code: str) -> LoginRefused:
    """Count one failure; the last one allowed locks the phone out. ``message`` names the
    attempts left as ``%(left)s``."""
    guard.failed_attempts += 1
    guard.last_failed_at = now
    if guard.failed_attempts >= MAX_FAILURES:
        guard.locked_until = now + LOCKOUT
    guard.save(update_fields=["failed_attempts", "last_failed_at", "locked_until"])
    locked = _locked_refusal(guard, now)
    if locked is not None:
        logger.warning("farmer login locked for %s after %s failures", guard.phone_hash[:12], guard.failed_attempts)
        return locked
    return LoginRefused(message % {"left": MAX_FAILURES - guard.failed_attempts}, code=code)


def _succeeded(guard: SmsLoginGuard) -> None:
    if guard.failed_attempts or guard.locked_until:
        guard.failed_attempts, guard.locked_until = 0, None
        guard.save(update_fields=["failed_attempts", "locked_until"])


def login_code_send(*, phone: str, now: dt.datetime | None = None) -> SentCode:
    """Send a new login code to ``phone`` — refused while the phone is locked out or when it
    has had :data:`SEND_LIMIT` codes in the last :data:`SEND_WINDOW`. The code counts towards
    the limit even if the SMS service then fails (so a failing gateway is not hammered)."""
    phone = validate_phone(phone)

    def text(code: str) -> str:
        return _("【普惠】您的登录验证码是 %(code)s，%(minutes)s 分钟内有效。请不要告诉任何人。") % {
            "code": code,
            "minutes": _minutes(CODE_TTL),
        }

    sent = _code_send(phone=phone, key=blind_index(phone), text=text, now=now)
    logger.info("login code sent to %s", mask_phone(phone))
    return sent


def _code_send(*, phone: str, key: str, text, bound: str = "", now: dt.datetime | None = None) -> SentCode:
    """Send a new code to ``phone``, kept under ``key`` (see :func:`_purpose_key`); ``text``
    makes the message from the code."""
    now = now or timezone.now()
    with transaction.atomic():
        guard = _guard(key)
        locked = _locked_refusal(guard, now)
        if locked is not None:
            raise locked
        # Codes older than the window count for nothing any more.
        SmsLoginCode.objects.filter(phone_hash=key, created_at__lte=now - SEND_WINDOW).delete()
        recent = sorted(SmsLoginCode.objects.filter(phone_hash=key).values_list("created_at", flat=True))
        if len(recent) >= SEND_LIMIT:
            retry_at = recent[len(recent) - SEND_LIMIT] + SEND_WINDOW
            logger.info("SMS code refused for %s: %s sends in the last hour", mask_phone(phone), len(recent))
            raise LoginRefused(
                _("验证码发送太频繁（每小时最多 %(limit)s 次）。请在 %(time)s 以后再试。")
                % {"limit": SEND_LIMIT, "time": _clock(retry_at)},
                code="send_limit",
                retry_at=retry_at,
            )
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        SmsLoginCode.objects.create(
            phone_hash=key, code_hash=_code_hash(key, code, bound), created_at=now, expires_at=now + CODE_TTL
        )
    try:
        sms_send(phone=phone, text=text(code))
    except SmsDeliveryError:
        raise LoginRefused(_("短信没有发出去，请稍后再试。"), code="delivery") from None
    return SentCode(code=code, expires_at=now + CODE_TTL)


def login_code_verify(*, phone: str, code: str, now: dt.datetime | None = None) -> None:
    """Check ``code`` against the newest code sent to ``phone`` and use it up; raises
    :class:`LoginRefused` saying why not. A wrong code counts towards the lock-out."""
    _code_verify(key=blind_index(validate_phone(phone)), code=code, now=now)


def _code_verify(*, key: str, code: str, bound: str = "", now: dt.datetime | None = None) -> None:
    now = now or timezone.now()
    refusal: LoginRefused | None = None
    with transaction.atomic():
        guard = _guard(key)
        refusal = _locked_refusal(guard, now)
        if refusal is None:
            _forget_old_failures(guard, now)
            latest = (
                SmsLoginCode.objects.select_for_update().filter(phone_hash=key).order_by("-created_at", "-id").first()
            )
            if latest is None:
                refusal = LoginRefused(_("请先获取验证码。"), code="no_code")
            elif latest.used_at is not None:
                refusal = LoginRefused(_("这个验证码已经用过了，请重新获取。"), code="used")
            elif latest.expires_at <= now:
                refusal = LoginRefused(
                    _("验证码已过期（%(minutes)s 分钟内有效），请重新获取。") % {"minutes": _minutes(CODE_TTL)},
                    code="expired",
                )
            elif not constant_time_compare(latest.code_hash, _code_hash(key, (code or "").strip(), bound)):
                refusal = _failure(guard, now, message=_("验证码不对，还可以再试 %(left)s 次。"), code="wrong_code")
            else:
                latest.used_at = now
                latest.save(update_fields=["used_at"])
                _succeeded(guard)
    # Raised only now so the failure count above is committed, not rolled back.
    if refusal is not None:
        raise refusal


# --- Confirming a drawdown -----------------------------------------------------------------------


def _farmer_phone(farmer: Farmer) -> str:
    if not farmer.phone_encrypted:
        raise LoginRefused(_("您的账户还没有手机号，不能用短信确认。"), code="no_phone")
    return decrypt(farmer.phone_encrypted)


def _drawdown_terms(amount: Decimal, term_months: int, method: str) -> str:
    return f"{DRAWDOWN}|{Decimal(amount).quantize(Decimal('0.01'))}|{int(term_months)}|{method}"


def drawdown_code_send(
    *, farmer: Farmer, amount: Decimal, term_months: int, method: str, now: dt.datetime | None = None
) -> SentCode:
    """Send the farmer's phone a code confirming a drawdown of ``amount`` over ``term_months``
    by ``method`` — the message names the amount and term, so the farmer knows what the code
    is for. Same limits as login codes, counted separately."""
    phone = _farmer_phone(farmer)

    def text(code: str) -> str:
        return _(
            "【普惠】借款确认码 %(code)s，%(minutes)s 分钟内有效。您正在借款 %(amount)s 元，%(months)s 个月。"
            "如果不是您本人操作，请不要告诉任何人。"
        ) % {
            "code": code,
            "minutes": _minutes(CODE_TTL),
            "amount": f"{Decimal(amount):,.2f}",
            "months": term_months,
        }

    sent = _code_send(
        phone=phone,
        key=_purpose_key(blind_index(phone), DRAWDOWN),
        text=text,
        bound=_drawdown_terms(amount, term_months, method),
        now=now,
    )
    logger.info("drawdown code sent to %s for farmer %s", mask_phone(phone), farmer.pk)
    return sent


def drawdown_code_verify(
    *, farmer: Farmer, code: str, amount: Decimal, term_months: int, method: str, now: dt.datetime | None = None
) -> None:
    """Check and use up the drawdown code; raises :class:`LoginRefused` saying why not (wrong,
    expired, used, locked out). A code sent for other terms counts as a wrong code."""
    phone = _farmer_phone(farmer)
    _code_verify(
        key=_purpose_key(blind_index(phone), DRAWDOWN),
        code=code,
        bound=_drawdown_terms(amount, term_months, method),
        now=now,
    )


def _same_name(a: str, b: str) -> bool:
    return "".join((a or "").split()) == "".join((b or "").split())


def farmer_identify(*, phone: str, name: str, id_number: str, now: dt.datetime | None = None) -> Farmer:
    """First login: the farmer whose ID number and name match, with ``phone`` (already proved by
    a code) linked to them — stored encrypted with its blind index, replacing an older phone.
    A mismatch says only that name and ID number do not match (never whether the ID exists)
    and counts towards the phone's lock-out."""
    phone = validate_phone(phone)
    phone_hash = blind_index(phone)
    now = now or timezone.now()
    refusal: LoginRefused | None = None
    farmer: Farmer | None = None
    with transaction.atomic():
        guard = _guard(phone_hash)
        refusal = _locked_refusal(guard, now)
        if refusal is None:
            _forget_old_failures(guard, now)
            farmer = (
                Farmer.objects.select_for_update()
                .filter(id_number_hash=blind_index(normalize_id_number(id_number)))
                .first()
            )
            if farmer is None or not _same_name(farmer.name, name):
                farmer = None
                refusal = _failure(
                    guard, now, message=_("姓名与身份证号不匹配，还可以再试 %(left)s 次。"), code="mismatch"
                )
            else:
                if farmer.phone_hash != phone_hash:
                    replaced = bool(farmer.phone_hash)
                    farmer.phone_encrypted = encrypt(phone)
                    farmer.phone_hash = phone_hash
                    farmer.save(update_fields=["phone_encrypted", "phone_hash"])
                    logger.info(
                        "phone %s linked to farmer %s at first login%s",
                        mask_phone(phone),
                        farmer.pk,
                        " (replacing the phone on record)" if replaced else "",
                    )
                _succeeded(guard)
    if refusal is not None:
        raise refusal
    assert farmer is not None
    return farmer


def login_codes_purge(*, business_date: dt.date) -> dict[str, int]:
    """Nightly-step shaped: delete the login codes sent before ``business_date`` began (they
    count for nothing after an hour; sending to a phone already drops its own old ones)."""
    start = timezone.make_aware(dt.datetime.combine(business_date, dt.time.min))
    deleted, _by_model = SmsLoginCode.objects.filter(created_at__lt=start).delete()
    return {"deleted": deleted}
