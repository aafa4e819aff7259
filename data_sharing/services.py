"""Writes for data sharing: agreements, consent texts, consents and their nightly steps.

A consent's ``status`` is its current state; its :class:`~data_sharing.models.ConsentEvent`
rows (insert-only, the database refuses UPDATE and DELETE) are the history. Every status change
goes through :func:`consent_status_change`, which checks the move and writes the event in the
same transaction. Re-consent is a new grant: the live consent for the same farmer, partner and
purpose is superseded (revoked, with a ``superseded`` event) and a new one starts.

Nightly steps (``settings.NIGHTLY_STEPS``) take ``business_date`` and return counts:
:func:`consents_expire`, then :func:`derived_data_purge`.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from counties.models import Farmer
from data_sharing.catalog import CREDIT_PURPOSE
from data_sharing.consent_selectors import consent_text_current
from data_sharing.gate import agreed_category_codes, day_end_sql
from data_sharing.models import Consent, ConsentEvent, ConsentText, DataCategory, DataSharingAgreement
from data_sharing.receipts import receipt_issue
from platform.models import LendingPartner

Status = Consent.Status
Event = ConsentEvent.Event

MAX_CONSENT_MONTHS = 12
# A grant's start may trail "now" by this much (a form filled in a minute ago); earlier would
# be consent backdated over reads that already happened.
START_GRACE = dt.timedelta(minutes=5)
NIGHTLY_ACTOR = "system:nightly"
LIVE_STATUSES = (Status.ACTIVE, Status.PAUSED)
# Purgers registered in settings.DERIVED_DATA_PURGERS are called as
# ``purger(targets_sql=PURGE_TARGETS_SQL) -> int`` and delete derived data of the
# (farmer_id, partner_id) pairs that subquery selects, returning rows deleted.
PURGE_TARGETS_TABLE = "derived_data_purge_targets"
PURGE_TARGETS_SQL = f"SELECT farmer_id, partner_id FROM pg_temp.{PURGE_TARGETS_TABLE}"

# event -> (statuses it may leave, status it leads to)
_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    Event.PAUSED: (frozenset({Status.ACTIVE}), Status.PAUSED),
    Event.RESUMED: (frozenset({Status.PAUSED}), Status.ACTIVE),
    Event.REVOKED: (frozenset(LIVE_STATUSES), Status.REVOKED),
    Event.SUPERSEDED: (frozenset(LIVE_STATUSES), Status.REVOKED),
    Event.EXPIRED: (frozenset(LIVE_STATUSES), Status.EXPIRED),
}
_ENDED = frozenset({Status.REVOKED, Status.EXPIRED})


def _refusal(event: str) -> ValidationError:
    messages = {
        Event.PAUSED: _("只有有效的授权可以暂停 / Only an active consent can be paused"),
        Event.RESUMED: _("只有已暂停的授权可以恢复；已撤回或已过期的授权请重新授权 / "
                         "Only a paused consent can be resumed; after revoking or expiry, please consent again"),
        Event.REVOKED: _("授权已经终止，无需撤回 / The consent has already ended"),
        Event.SUPERSEDED: _("授权已经终止 / The consent has already ended"),
        Event.EXPIRED: _("授权已经终止 / The consent has already ended"),
    }
    return ValidationError(messages[event], code="invalid_transition")


def _names(codes: Iterable[str]) -> dict[str, str]:
    """Category names for a bilingual message, in both languages."""
    codes = list(codes)
    found = {c.code: c for c in DataCategory.objects.filter(code__in=codes)}
    return {
        "names_zh": "、".join(found[c].name_zh if c in found else c for c in codes),
        "names_en": ", ".join(found[c].name_en if c in found else c for c in codes),
    }


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """The same local time ``months`` calendar months later (31 Jan + 1 → 28/29 Feb)."""
    local = timezone.localtime(moment)
    month_index = local.month - 1 + months
    year, month = local.year + month_index // 12, month_index % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day)


# --- Agreements and texts ------------------------------------------------------------------------


@transaction.atomic
def agreement_create(
    *,
    partner: LendingPartner,
    categories: list[str],
    effective_from: dt.date,
    effective_to: dt.date,
    reference: str,
    signed_at: dt.datetime | None = None,
) -> DataSharingAgreement:
    """Record the county's agreement with a lending partner: the categories that may leave the
    county for that partner, and when."""
    reference = (reference or "").strip()
    if not reference:
        raise ValidationError(_("协议编号不能为空 / The agreement reference is required"), code="reference")
    if DataSharingAgreement.objects.filter(reference=reference).exists():
        raise ValidationError(
            _("协议编号 %(reference)s 已存在 / Agreement %(reference)s already exists") % {"reference": reference},
            code="duplicate",
        )
    if effective_from > effective_to:
        raise ValidationError(_("终止日期不能早于生效日期 / The agreement cannot end before it starts"), code="dates")
    if not partner.is_active:
        raise ValidationError(_("该贷款机构已停用 / This lending partner is not active"), code="partner_inactive")
    codes = sorted(set(categories))
    if not codes:
        raise ValidationError(_("协议至少要包含一类数据 / Name at least one data category"), code="no_categories")
    found = dict(DataCategory.objects.filter(code__in=codes, is_active=True).values_list("code", "id"))
    missing = [code for code in codes if code not in found]
    if missing:
        raise ValidationError(
            _("数据类别不存在或已停用：%(names_zh)s / Unknown or inactive data categories: %(names_en)s") % _names(missing),
            code="unknown_category",
        )
    agreement = DataSharingAgreement.objects.create(
        partner=partner, effective_from=effective_from, effective_to=effective_to, reference=reference,
        signed_at=signed_at or timezone.now(),
    )
    agreement.categories.set(found.values())
    return agreement


@transaction.atomic
def consent_text_publish(*, purpose_code: str, text_zh: str, text_en: str) -> ConsentText:
    """Publish a new version of a purpose's consent text. From now on the gate admits only
    consents on this version: every farmer with a live consent on an older one must consent
    again (their consent stays live but lets no data through until then)."""
    text_zh, text_en = (text_zh or "").strip(), (text_en or "").strip()
    if not text_zh or not text_en:
        raise ValidationError(_("授权书中英文文本都不能为空 / Both the Chinese and English texts are required"), code="empty")
    # Lock the purpose's versions so two publications cannot pick the same number.
    latest = ConsentText.objects.select_for_update().filter(purpose_code=purpose_code).order_by("-version").first()
    return ConsentText.objects.create(
        purpose_code=purpose_code, version=(latest.version + 1) if latest else 1,
        text_zh=text_zh, text_en=text_en, published_at=timezone.now(),
    )


def _text_is_current(text: ConsentText) -> bool:
    return not ConsentText.objects.filter(purpose_code=text.purpose_code, version__gt=text.version).exists()


# --- Consent status changes ----------------------------------------------------------------------


def consent_status_change(
    *,
    consent: Consent,
    event: str,
    actor: str,
    channel: str = "",
    at: dt.datetime | None = None,
    detail: dict | None = None,
) -> Consent:
    """Move ``consent`` by ``event`` (refusing moves the lifecycle does not allow) and append the
    event. Callers hold the consent's row lock. Ending events stamp ``ended_at``, from which
    the data life of derived data is counted."""
    allowed_from, to_status = _TRANSITIONS[event]
    if consent.status not in allowed_from:
        raise _refusal(event)
    at = at or timezone.now()
    consent.status = to_status
    consent.status_changed_at = at
    fields = ["status", "status_changed_at"]
    if to_status in _ENDED:
        consent.ended_at = at
        fields.append("ended_at")
    consent.save(update_fields=fields)
    ConsentEvent.objects.create(
        consent=consent, event=event, to_status=to_status, at=at, actor=actor, channel=channel, detail=detail or {}
    )
    _consent_changed(consent)
    return consent


def _consent_changed(consent: Consent) -> None:
    """Tell the apps that act on consent (the credit line stops drawdowns at once) in the same
    transaction; they are named in settings.CONSENT_CHANGE_HANDLERS so data_sharing does not
    import them."""
    for dotted in settings.CONSENT_CHANGE_HANDLERS:
        import_string(dotted)(farmer_ids=[consent.farmer_id])


def _locked(consent: Consent) -> Consent:
    return Consent.objects.select_for_update().select_related("text").get(pk=consent.pk)


@transaction.atomic
def consent_grant(
    *,
    farmer: Farmer,
    partner: LendingPartner,
    categories: list[str],
    channel: str,
    text: ConsentText | None = None,
    starts_at: dt.datetime | None = None,
    months: int = 12,
    data_life_days: int = 180,
    assisted_by: str = "",
    sms_confirmed: bool,
    actor: str,
) -> Consent:
    """The farmer consents to ``partner`` reading ``categories`` for the text's purpose (default:
    the current credit text). Expires ``months`` calendar months after ``starts_at`` (at most
    12). A live consent for the same farmer, partner and purpose is superseded — that is
    re-consent, e.g. after a new text version. Stores the signed receipt on the consent."""
    now = timezone.now()
    text = text or consent_text_current(purpose_code=CREDIT_PURPOSE)
    if not _text_is_current(text):
        raise ValidationError(
            _("授权书已更新，请阅读并同意最新版本 / The consent text has changed; please read and accept the current version"),
            code="text_outdated",
        )
    starts_at = starts_at or now
    if starts_at < now - START_GRACE:
        raise ValidationError(_("授权不能追溯到过去 / A consent cannot start in the past"), code="backdated")
    if not 1 <= months <= MAX_CONSENT_MONTHS:
        raise ValidationError(
            _("授权期限为 1 到 12 个月 / A consent lasts from 1 to 12 months"), code="validity"
        )
    if data_life_days < 0:
        raise ValidationError(_("衍生数据保留天数不能为负 / The data life cannot be negative"), code="data_life")
    if channel == Consent.Channel.ASSISTED:
        if not sms_confirmed or not (assisted_by or "").strip():
            raise ValidationError(
                _("村服务点协助授权需要协助人和农户本人的短信确认 / "
                  "An assisted consent needs the assisting agent and the farmer's SMS confirmation"),
                code="assisted_unconfirmed",
            )
    elif channel == Consent.Channel.SELF:
        if assisted_by:
            raise ValidationError(_("本人授权不能填写协助人 / A self-service consent has no assisting agent"), code="channel")
    else:
        raise ValidationError(_("授权渠道无效 / Unknown consent channel"), code="channel")
    if not partner.is_active:
        raise ValidationError(_("该贷款机构已停用 / This lending partner is not active"), code="partner_inactive")
    codes = _consent_categories_checked(categories, partner=partner, on=timezone.localdate(starts_at))

    previous = (
        Consent.objects.select_for_update()
        .filter(farmer=farmer, partner=partner, purpose_code=text.purpose_code, status__in=LIVE_STATUSES)
        .first()
    )
    if previous is not None:
        consent_status_change(
            consent=previous, event=Event.SUPERSEDED, actor=actor, channel=channel, at=now,
            detail={"reason": "re-consent", "text_version": text.version},
        )
    consent = Consent.objects.create(
        farmer=farmer, partner=partner, purpose_code=text.purpose_code, text=text, categories=codes,
        starts_at=starts_at, expires_at=add_months(starts_at, months), data_life_days=data_life_days,
        channel=channel, assisted_by=(assisted_by or "").strip(), status=Status.ACTIVE, status_changed_at=now,
        receipt={}, receipt_signature="",
    )
    consent.receipt, consent.receipt_signature = receipt_issue(consent=consent, sms_confirmed=sms_confirmed)
    consent.save(update_fields=["receipt", "receipt_signature"])
    ConsentEvent.objects.create(
        consent=consent, event=Event.GRANTED, to_status=Status.ACTIVE, at=now, actor=actor, channel=channel,
        detail={
            "text_version": text.version, "categories": codes, "sms_confirmed": sms_confirmed,
            "receipt_id": consent.receipt["receipt_id"], "supersedes": previous.pk if previous else None,
        },
    )
    _consent_changed(consent)
    return consent


def _consent_categories_checked(categories: Iterable[str], *, partner: LendingPartner, on: dt.date) -> list[str]:
    codes = sorted(set(categories))
    if not codes:
        raise ValidationError(_("请至少选择一类数据 / Choose at least one data category"), code="no_categories")
    found = {c.code: c for c in DataCategory.objects.filter(code__in=codes)}
    unknown = [code for code in codes if code not in found or not found[code].is_active]
    if unknown:
        raise ValidationError(
            _("数据类别不存在或已停用：%(names_zh)s / Unknown or inactive data categories: %(names_en)s") % _names(unknown),
            code="unknown_category",
        )
    public = [code for code in codes if not found[code].requires_consent]
    if public:
        raise ValidationError(
            _("%(names_zh)s 是公开信息，不需要授权 / %(names_en)s is public and needs no consent") % _names(public),
            code="no_consent_needed",
        )
    agreed = agreed_category_codes(partner=partner, on=on, codes=codes)
    outside = [code for code in codes if code not in agreed]
    if outside:
        raise ValidationError(
            _("%(names_zh)s 不在与该贷款机构有效的数据共享协议内 / "
              "%(names_en)s: not covered by an active data-sharing agreement with this lending partner") % _names(outside),
            code="outside_agreement",
        )
    return codes


@transaction.atomic
def consent_pause(*, consent: Consent, actor: str, channel: str = "") -> Consent:
    """Pause: the gate stops admitting the farmer at once; resuming restores it."""
    return consent_status_change(consent=_locked(consent), event=Event.PAUSED, actor=actor, channel=channel)


@transaction.atomic
def consent_resume(*, consent: Consent, actor: str, channel: str = "") -> Consent:
    """Resume a paused consent — refused once it has expired or its text is outdated: the
    farmer must then consent again (a new grant)."""
    consent = _locked(consent)
    if consent.status == Status.PAUSED and consent.expires_at <= timezone.now():
        raise ValidationError(
            _("授权已到期，请重新授权 / The consent has expired; please consent again"), code="expired"
        )
    if consent.status == Status.PAUSED and not _text_is_current(consent.text):
        raise ValidationError(
            _("授权书已更新，请阅读最新版本并重新授权 / The consent text has changed; please read it and consent again"),
            code="text_outdated",
        )
    return consent_status_change(consent=consent, event=Event.RESUMED, actor=actor, channel=channel)


@transaction.atomic
def consent_revoke(*, consent: Consent, actor: str, channel: str = "") -> Consent:
    """Revoke at once: the gate admits nothing more under this consent (the next nightly run
    included) and the credit line stops taking new drawdowns; loans already drawn go on."""
    return consent_status_change(consent=_locked(consent), event=Event.REVOKED, actor=actor, channel=channel)


# --- Nightly steps -----------------------------------------------------------------------------


@transaction.atomic
def consents_expire(*, business_date: dt.date) -> dict[str, int]:
    """Nightly: expire every live consent that expired before ``business_date`` ended, in one
    statement that also appends their ``expired`` events. ``ended_at`` is the expiry instant.

    The business date is the clock, as for every batch step: a consent still valid at the end
    of D is left for the next night, which keeps this step and the gate (which admits exactly
    the consents valid at the end of D) in agreement whichever runs first. Rerunning a date
    finds nothing left to expire.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH expired AS (
                UPDATE data_sharing_consent c
                   SET status = 'expired', status_changed_at = %(now)s, ended_at = c.expires_at
                 WHERE c.status IN ('active', 'paused') AND c.expires_at < {day_end_sql("%(business_date)s")}
             RETURNING c.id, c.expires_at
            )
            INSERT INTO data_sharing_consentevent (consent_id, event, to_status, at, actor, channel, detail)
            SELECT id, 'expired', 'expired', %(now)s, %(actor)s, '',
                   jsonb_build_object('business_date', %(business_date)s::date, 'expires_at', expires_at)
              FROM expired
            """,
            {"now": timezone.now(), "business_date": business_date, "actor": NIGHTLY_ACTOR, "tz": settings.TIME_ZONE},
        )
        return {"expired": cursor.rowcount}


@transaction.atomic
def derived_data_purge(*, business_date: dt.date) -> dict[str, int]:
    """Nightly: delete derived data (features, assessments, …) kept past a consent's data life.

    Derived data belongs to a (farmer, partner) pair, so a pair is purged only when every one of
    its consents has ended and every data life has run out by the end of ``business_date`` — a
    superseded consent's clock does not delete what the consent replacing it still covers.
    Each purger in ``settings.DERIVED_DATA_PURGERS`` is called with
    ``targets_sql=PURGE_TARGETS_SQL`` (a subquery of those pairs); then the ended consents of
    the pairs are stamped ``derived_data_purged_at``. A rerun finds nothing left.
    """
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{PURGE_TARGETS_TABLE}")
        cursor.execute(
            f"""CREATE TEMP TABLE {PURGE_TARGETS_TABLE} (
                    farmer_id bigint NOT NULL, partner_id bigint NOT NULL, PRIMARY KEY (farmer_id, partner_id)
                ) ON COMMIT DROP"""
        )
        cursor.execute(
            f"""
            INSERT INTO {PURGE_TARGETS_TABLE} (farmer_id, partner_id)
            SELECT DISTINCT c.farmer_id, c.partner_id
              FROM data_sharing_consent c
             WHERE c.status IN ('revoked', 'expired') AND c.derived_data_purged_at IS NULL
               AND NOT EXISTS (
                   SELECT 1 FROM data_sharing_consent k
                    WHERE k.farmer_id = c.farmer_id AND k.partner_id = c.partner_id
                      AND (k.status IN ('active', 'paused')
                           OR COALESCE(k.ended_at, k.status_changed_at) + make_interval(days => k.data_life_days)
                              >= {day_end_sql("%(business_date)s")}))
            """,
            {"business_date": business_date, "tz": settings.TIME_ZONE},
        )
        counts = {"pairs": cursor.rowcount}
        for dotted in settings.DERIVED_DATA_PURGERS:
            counts[dotted] = import_string(dotted)(targets_sql=PURGE_TARGETS_SQL)
        cursor.execute(
            f"""
            UPDATE data_sharing_consent c SET derived_data_purged_at = %(now)s
              FROM {PURGE_TARGETS_TABLE} t
             WHERE c.farmer_id = t.farmer_id AND c.partner_id = t.partner_id
               AND c.status IN ('revoked', 'expired') AND c.derived_data_purged_at IS NULL
            """,
            {"now": now},
        )
        counts["consents"] = cursor.rowcount
    return counts
