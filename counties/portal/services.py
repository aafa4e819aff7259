"""Writes of the officials' portal: officials and their second factor, the nightly rerun and
an official's logged look-up of a farmer."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from dataclasses import dataclass

from axes.utils import reset as axes_reset
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from counties.models import Farmer, FarmerLookup, NightlyRun, Official, Township

logger = logging.getLogger(__name__)

TOTP_DEVICE_NAME = "portal"
# A run queued or running for longer than this is taken to be lost (a killed worker, a lost
# message) and may be queued again; before it, a second click only says it is under way.
NIGHTLY_RERUN_STALE_AFTER = dt.timedelta(hours=2)


# --- Officials -----------------------------------------------------------------------------------


def official_create(
    *, username: str, password: str, role: str, township: Township | None, actor: str
) -> Official:
    """A new official with a login of their own. A township officer must have a township and
    nobody else has one. The password must pass the project's validators; the official enrols
    their TOTP device at first login."""
    username = username.strip()
    if role not in Official.Role.values:
        raise ValidationError(_("未知的角色。"))
    if role == Official.Role.TOWNSHIP_OFFICER and township is None:
        raise ValidationError(_("乡镇专员必须指定所属乡镇。"))
    if role != Official.Role.TOWNSHIP_OFFICER and township is not None:
        raise ValidationError(_("只有乡镇专员需要指定乡镇。"))
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        raise ValidationError(_("用户名 %(username)s 已被使用。") % {"username": username})
    candidate = user_model(username=username)
    validate_password(password, user=candidate)
    with transaction.atomic():
        user = user_model.objects.create_user(username=username, password=password)
        official = Official.objects.create(user=user, role=role, township=township)
    logger.info("official %s (%s) created by %s", username, role, actor)
    return official


def official_second_factor_reset(*, official: Official, actor: str) -> int:
    """Remove every TOTP device of the official: a session verified with one is no longer
    verified, and the next login asks them to enrol a new device. Returns devices removed."""
    removed, _by_model = TOTPDevice.objects.filter(user_id=official.user_id).delete()
    logger.info("second factor of %s reset by %s (%d devices)", official.user.get_username(), actor, removed)
    return removed


def official_unlock(*, official: Official, actor: str) -> int:
    """Clear the official's failed login attempts (a django-axes lock-out). Returns attempts cleared."""
    cleared = axes_reset(username=official.user.get_username())
    logger.info("login lock-out of %s cleared by %s (%d attempts)", official.user.get_username(), actor, cleared)
    return cleared


def official_set_active(*, official: Official, active: bool, actor: str) -> None:
    """Disable (or re-enable) an official's login; their records stay."""
    user = official.user
    user.is_active = active
    user.save(update_fields=["is_active"])
    logger.info("official %s %s by %s", user.get_username(), "enabled" if active else "disabled", actor)


# --- TOTP enrolment ------------------------------------------------------------------------------


def totp_confirmed_device(*, user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()


def totp_enrolment_device(*, user) -> TOTPDevice:
    """The unconfirmed device an official without a confirmed one enrols: the same secret on
    every visit of the enrolment page until a code confirms it."""
    if totp_confirmed_device(user=user) is not None:
        raise ValidationError(_("已经绑定了验证器。"))
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("id").first()
    return device or TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


def totp_enrolment_confirm(*, device: TOTPDevice, token: str) -> bool:
    """A correct code from the app confirms the device (and is spent: it cannot be used again)."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        if device.confirmed or not device.verify_token(token):
            return False
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return True


def totp_secret_base32(device: TOTPDevice) -> str:
    """The secret as an authenticator app asks for it when typed in by hand."""
    return base64.b32encode(device.bin_key).decode().rstrip("=")


# --- The nightly rerun ---------------------------------------------------------------------------


def nightly_rerun_request(*, business_date: dt.date, actor: str) -> NightlyRun:
    """Queue the county's nightly run of ``business_date`` again (one Celery message, sent
    when this transaction commits). Every step is idempotent for its date, so a rerun only
    completes what is missing. A run already queued or running — unless it has been so for
    longer than :data:`NIGHTLY_RERUN_STALE_AFTER` — is not queued twice."""

    failures: list[Exception] = []
    with transaction.atomic():
        run = NightlyRun.objects.select_for_update().filter(business_date=business_date).first()
        if run is None:
            raise ValidationError(_("%(day)s 没有夜间批处理记录。") % {"day": business_date})
        busy = run.status in (NightlyRun.Status.QUEUED, NightlyRun.Status.RUNNING)
        if busy and run.started_at and timezone.now() - run.started_at < NIGHTLY_RERUN_STALE_AFTER:
            raise ValidationError(_("%(day)s 的夜间批处理已在排队或运行中。") % {"day": business_date})
        previous = (run.status, run.started_at, run.finished_at)
        run.status = NightlyRun.Status.QUEUED
        # The time it was queued, until the worker takes it and records its own start.
        run.started_at, run.finished_at = timezone.now(), None
        run.save(update_fields=["status", "started_at", "finished_at"])
        # Sent from this county's schema, so tenant-schemas-celery runs it there; after the
        # commit, so the worker sees the QUEUED row.
        transaction.on_commit(lambda: _send_rerun(run, previous, failures))
    if failures:
        raise ValidationError(_("任务队列暂时不可用，没有排队；请稍后再试。")) from failures[0]
    logger.info("nightly run %s queued again by %s", business_date, actor)
    return run


def _send_rerun(run: NightlyRun, previous: tuple, failures: list[Exception]) -> None:
    """Queue the rerun; if the broker is down, nothing was queued: put the run back as it was
    (so the button can be pressed again later) and let the caller say so."""
    from counties.tasks import nightly_county

    try:
        nightly_county.apply_async(kwargs={"business_date": run.business_date.isoformat()})
    except Exception as error:
        logger.warning("nightly run %s could not be queued: %s", run.business_date, error)
        NightlyRun.objects.filter(pk=run.pk, status=NightlyRun.Status.QUEUED).update(
            status=previous[0], started_at=previous[1], finished_at=previous[2]
        )
        failures.append(error)


# --- Farmer look-up ------------------------------------------------------------------------------


def _last_access_log_id() -> int:
    """The id of the access-log row this connection wrote last (the gate's, just now): the
    sequence's value in this session, which no concurrent request can change."""
    from data_sharing.models import AccessLog

    with connection.cursor() as cursor:
        cursor.execute("SELECT currval(pg_get_serial_sequence(%s, 'id'))", [AccessLog._meta.db_table])
        return cursor.fetchone()[0]


@dataclass(frozen=True)
class FarmerRead:
    lookup: FarmerLookup
    partner: object | None  # platform.models.LendingPartner the gate read for, if any
    records: dict[str, list[dict]]  # admitted government records by category ({} if none)


def _lookup_partner(farmer: Farmer):
    """The lending partner whose consent the read goes through: the partner of the active
    credit policy, or else the partner of the farmer's newest live consent."""
    from data_sharing.consent_selectors import LIVE_STATUSES
    from data_sharing.models import Consent
    from loans.policy import policy_active

    policy = policy_active()
    if policy is not None:
        return policy.partner
    consent = (
        Consent.objects.filter(farmer=farmer, status__in=LIVE_STATUSES).select_related("partner").order_by("-created_at").first()
    )
    return consent.partner if consent else None


def farmer_lookup(
    *, farmer: Farmer, user, role: str, purpose: str, note: str, business_date: dt.date | None = None
) -> FarmerRead:
    """An official opens a farmer's page: the farmer's consented government data is read
    through the consent gate (which writes the access-log row — a refused read is logged too),
    and the official's stated purpose and note are recorded against that row."""
    from data_sharing.catalog import CREDIT_PURPOSE
    from data_sharing.gate import agreed_category_codes, farmer_records
    from data_sharing.models import AccessLog, DataCategory

    if purpose not in FarmerLookup.Purpose.values:
        raise ValidationError(_("请选择查询目的。"))
    day = business_date or timezone.localdate()
    partner = _lookup_partner(farmer)
    records: dict[str, list[dict]] = {}
    access_log = None
    with transaction.atomic():
        if partner is not None:
            codes = agreed_category_codes(
                partner=partner, on=day, codes=DataCategory.objects.filter(is_active=True).values_list("code", flat=True)
            )
            if codes:
                records = farmer_records(
                    farmer=farmer, partner=partner, categories=codes, business_date=day,
                    accessor_type=AccessLog.Accessor.OFFICIAL, accessor=user.get_username(), purpose=CREDIT_PURPOSE,
                )
                access_log = AccessLog.objects.get(pk=_last_access_log_id())
        lookup = FarmerLookup.objects.create(
            user=user, username=user.get_username(), role=role, farmer=farmer, purpose=purpose, note=note.strip()[:200],
            access_log=access_log,
        )
    return FarmerRead(lookup=lookup, partner=partner, records=records)
