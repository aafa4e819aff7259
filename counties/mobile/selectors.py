"""Reads for the farmer portal: who the lending partner is, the farmer's line and why, their
messages, the consent screen, and what was shared about them and who read it.

Texts are chosen for the current language here (``_pick``), so templates only lay them out.
Government data is read only through the consent gate (:func:`data_sharing.gate.farmer_records`),
which logs the farmer's own look-up like every other access.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise

from django.conf import settings
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.module_loading import import_string
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from counties.models import Farmer
from data_sharing.catalog import CREDIT_PURPOSE
from data_sharing.consent_selectors import (
    consent_live,
    consent_needs_reconsent,
    consent_screen_categories,
    consent_text_current,
    farmer_consents,
)
from data_sharing.gate import agreed_category_codes, farmer_access_history, farmer_records
from data_sharing.models import AccessLog, Consent, DataCategory, DataSharingAgreement
from data_sharing.pii import blind_index, decrypt
from loans.models import CreditAssessment, CreditLine
from loans.policy import policy_active
from loans.selectors import farmer_loan_messages
from platform.models import LendingPartner

# Messages about a line change or an expiry are shown for this long.
RECENT = dt.timedelta(days=30)
# How many past assessments are searched for the last change of the line.
LINE_HISTORY = 31


def english() -> bool:
    return (get_language() or "").startswith("en")


def _pick(zh: str, en: str) -> str:
    return en if english() and en else zh


def yuan(amount: Decimal | None) -> str:
    """``9,000`` or ``9,000.50``: whole yuan without the fen, grouped by thousands."""
    if amount is None:
        return ""
    return f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"


def percent(rate: Decimal) -> str:
    """An annual rate fraction as a percentage: ``0.0435`` → ``4.35%``, ``0.08`` → ``8%``."""
    return format((rate * 100).quantize(Decimal("0.01")).normalize(), "f") + "%"


# --- Identity ----------------------------------------------------------------------------------


def farmer_for_phone(*, phone: str) -> Farmer | None:
    """The one farmer with this phone, or None — also when several share it (a household's one
    phone): they then log in by name and ID number, which picks one."""
    matches = list(Farmer.objects.filter(phone_hash=blind_index(phone)).order_by("id")[:2])
    return matches[0] if len(matches) == 1 else None


def demo_phones(*, limit: int = 3) -> list[dict]:
    """Local (demo) mode only: a few synthetic farmers' phones to log in with — one with a
    line, one with a consent but no line, one without a consent."""
    if settings.PUHUI_MODE != "local":
        return []
    with_phone = Farmer.objects.exclude(phone_hash="").order_by("id")
    picks = [
        (_("有额度"), with_phone.filter(credit_line__status=CreditLine.Status.ACTIVE).first()),
        (
            _("已授权，还没有额度"),
            with_phone.filter(consents__status=Consent.Status.ACTIVE, credit_line__isnull=True).first(),
        ),
        (_("还没有授权"), with_phone.filter(consents__isnull=True).first()),
    ]
    return [{"label": label, "phone": decrypt(farmer.phone_encrypted)} for label, farmer in picks if farmer][:limit]


# --- The lending partner -----------------------------------------------------------------------


def portal_partner() -> LendingPartner | None:
    """The lending partner the county's farmers consent to and borrow from: the partner of the
    credit policy in force, else of the newest data-sharing agreement effective today."""
    policy = policy_active()
    if policy is not None:
        return policy.partner
    today = timezone.localdate()
    agreement = (
        DataSharingAgreement.objects.filter(effective_from__lte=today, effective_to__gte=today)
        .select_related("partner")
        .order_by("-effective_from", "-id")
        .first()
    )
    return agreement.partner if agreement and agreement.partner.is_active else None


# --- The line and why --------------------------------------------------------------------------


def _exclusion_texts() -> dict[str, str]:
    return {
        "age": _("年龄不在可以贷款的范围内"),
        "dishonest_debtor": _("在法院的失信被执行人名单上"),
        "overdue": _("有逾期没还的借款"),
        "grade": _("综合评分还没有达到授信标准"),
    }


@dataclass
class LineStatus:
    """What the home page says about the farmer's line.

    ``state``: ``active`` · ``suspended`` · ``expired`` · ``no_consent`` (no consent yet: the
    big consent button) · ``paused`` · ``reconsent`` (the consent text changed) · ``pending``
    (consented, not yet assessed: computed tonight) · ``ineligible`` · ``unavailable`` (no
    lending partner in the county yet)."""

    state: str
    explanation: str = ""
    line: CreditLine | None = None
    consent: Consent | None = None
    partner: LendingPartner | None = None
    assessment: CreditAssessment | None = None
    reasons: list[str] = field(default_factory=list)
    hint: str = ""
    needs_consent_action: bool = False

    @property
    def figures(self) -> dict[str, str]:
        line = self.line
        if line is None:
            return {}
        return {
            "amount": yuan(line.amount),
            "available": yuan(line.available),
            "grade": line.grade,
            "rate": percent(line.annual_rate),
        }


def _consent_problem(consent: Consent | None) -> tuple[str, str] | None:
    """(state, explanation) when the consent keeps the line from being used, else None."""
    if consent is None:
        return "no_consent", _("您还没有授权。授权后，今晚就会为您计算额度。")
    if consent.status == Consent.Status.PAUSED:
        return "paused", _("您暂停了授权，额度暂时不能用。恢复授权后就能继续用。")
    if consent_needs_reconsent(consent=consent):
        if consent.expires_at <= timezone.now():
            return "reconsent", _("您的授权已到期。请重新授权，额度才能继续用。")
        return "reconsent", _("授权书内容有更新。请阅读后重新授权，额度才能继续用。")
    return None


def _assessment_why(assessment: CreditAssessment | None) -> tuple[list[str], str]:
    if assessment is None:
        return [], ""
    reasons = [_pick(reason.get("text_zh", ""), reason.get("text_en", "")) for reason in (assessment.reasons or [])[:3]]
    hint = assessment.hint or {}
    return [text for text in reasons if text], _pick(hint.get("text_zh", ""), hint.get("text_en", ""))


def _ineligible_explanation(assessment: CreditAssessment) -> str:
    texts = _exclusion_texts()
    why = ("; " if english() else "；").join(texts.get(code, code) for code in assessment.exclusions)
    return _("暂时不能给您额度：%(why)s。") % {"why": why or _("不符合授信条件")}


def line_status(*, farmer: Farmer) -> LineStatus:
    partner = portal_partner()
    consent = consent_live(farmer=farmer, partner=partner) if partner else None
    line = CreditLine.objects.filter(farmer=farmer).select_related("assessment").first()
    assessment = line.assessment if line and line.assessment_id else None
    if assessment is None:
        assessment = CreditAssessment.objects.filter(farmer=farmer).order_by("-business_date").first()
    reasons, hint = _assessment_why(assessment)
    status = LineStatus(
        state="", line=line, consent=consent, partner=partner, assessment=assessment, reasons=reasons, hint=hint
    )
    problem = _consent_problem(consent) if partner else None

    if line is not None and line.status == CreditLine.Status.ACTIVE:
        status.state = "active"
        if problem is not None:  # e.g. a new consent text: tonight's run will suspend the line
            status.explanation = problem[1]
            status.needs_consent_action = True
    elif line is not None and line.status == CreditLine.Status.SUSPENDED:
        status.state = "suspended"
        if line.suspension == CreditLine.Suspension.OVERDUE:
            status.explanation = _("您有逾期没还的借款，额度已冻结。还清后额度会恢复。")
        elif line.suspension == CreditLine.Suspension.INELIGIBLE and assessment is not None:
            status.explanation = _ineligible_explanation(assessment)
        elif problem is not None:
            status.explanation = {
                "no_consent": _("您撤回了授权，额度已冻结。重新授权后，今晚会重新计算额度。"),
            }.get(problem[0], problem[1])
            status.needs_consent_action = True
        else:
            status.explanation = _("额度已冻结。")
    elif line is not None:
        status.state = "expired"
        expired = _("您的额度已于 %(day)s 到期。") % {"day": _day(line.valid_until)}
        next_step = problem[1] if problem is not None else _("今晚会为您重新计算额度。")
        status.explanation = _sentences(expired, next_step)
        status.needs_consent_action = problem is not None
    elif partner is None:
        status.state = "unavailable"
        status.explanation = _("本县还没有开通信用贷款，请留意村里的通知。")
    elif problem is not None:
        status.state, status.explanation = problem
        status.needs_consent_action = True
    elif assessment is not None and assessment.business_date >= timezone.localdate(consent.starts_at):
        status.state = "ineligible"
        status.explanation = _ineligible_explanation(assessment)
    else:
        status.state = "pending"
        status.explanation = _("您已授权，额度将在今晚计算，明天来看。")
    return status


def _day(day: dt.date) -> str:
    return date_format(day, "DATE_FORMAT")


def _sentences(*sentences: str) -> str:
    """Chinese sentences run on; English ones take a space."""
    return (" " if english() else "").join(sentences)


# --- Messages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FarmerMessage:
    """One item of the home page's message list. ``level``: ``alert`` (act now), ``warn`` (act
    soon) or ``info``; ``url_name`` (optional) is where to act."""

    key: str
    level: str
    text: str
    on: dt.date | None = None
    url_name: str = ""
    url_label: str = ""


LEVEL_ORDER = {"alert": 0, "warn": 1, "info": 2}

# Each source is called as ``source(farmer=...)`` and returns FarmerMessage items; other apps
# add theirs here as a dotted path. The loan messages (a payment due within 7 days, an overdue
# loan) come from loans.selectors.farmer_loan_messages through :func:`loan_messages`, which
# words them for the farmer.
MESSAGE_SOURCES: list[str] = [
    "counties.mobile.selectors.credit_line_messages",
    "counties.mobile.selectors.consent_messages",
    "counties.mobile.selectors.loan_messages",
]


def farmer_messages(farmer: Farmer) -> list[FarmerMessage]:
    """Every source's messages for the farmer: most urgent first, then newest first."""
    messages: list[FarmerMessage] = []
    for dotted in MESSAGE_SOURCES:
        messages.extend(import_string(dotted)(farmer=farmer))
    messages.sort(key=lambda message: message.on or dt.date.min, reverse=True)
    messages.sort(key=lambda message: LEVEL_ORDER.get(message.level, 9))
    return messages


def _last_line_change(farmer: Farmer) -> tuple[dt.date, Decimal | None, Decimal] | None:
    """(date, from, to) of the most recent change of the assessed line amount, looking back
    over the last :data:`LINE_HISTORY` assessments; ``from`` None means a first line."""
    history = list(
        CreditAssessment.objects.filter(farmer=farmer)
        .order_by("-business_date")
        .values_list("business_date", "line_amount")[:LINE_HISTORY]
    )
    for (day, amount), (_before, previous) in pairwise(history):
        if amount != previous:
            return (day, previous, amount) if amount is not None else None
    # No change in the window: the first assessment, if within it, granted the line.
    if history and len(history) < LINE_HISTORY and history[-1][1] is not None:
        return history[-1][0], None, history[-1][1]
    return None


def credit_line_messages(*, farmer: Farmer) -> Iterable[FarmerMessage]:
    status = line_status(farmer=farmer)
    line = status.line
    today = timezone.localdate()
    if line is None:
        return []
    messages = []
    if status.state == "suspended":
        messages.append(
            FarmerMessage(
                "line_suspended",
                "alert",
                status.explanation,
                timezone.localdate(line.updated_at),
                "mobile-consent" if status.needs_consent_action else "",
                _("去授权") if status.needs_consent_action else "",
            )
        )
    elif status.state == "expired":
        messages.append(
            FarmerMessage(
                "line_expired",
                "warn",
                _("您的额度已于 %(day)s 到期。") % {"day": _day(line.valid_until)},
                line.valid_until,
            )
        )
    else:
        change = _last_line_change(farmer)
        if change is not None and change[0] >= today - RECENT:
            day, before, after = change
            if before is None:
                text = _("您获得了 %(amount)s 元的额度。") % {"amount": yuan(after)}
            else:
                text = _("您的额度从 %(before)s 元调整为 %(after)s 元。") % {
                    "before": yuan(before),
                    "after": yuan(after),
                }
            messages.append(FarmerMessage("line_changed", "info", text, day))
        if line.valid_until <= today + RECENT:
            messages.append(
                FarmerMessage(
                    "line_expiring", "warn", _("您的额度将于 %(day)s 到期。") % {"day": _day(line.valid_until)}, today
                )
            )
    return messages


def loan_messages(*, farmer: Farmer) -> Iterable[FarmerMessage]:
    """Adapter for :func:`loans.selectors.farmer_loan_messages` (plain dicts, by business
    date): an overdue loan (act now) and a payment due within 7 days (act soon), in plain words,
    each linking to "my loans"."""
    today = timezone.localdate()
    link = ("mobile-loans", _("去还款"))
    messages = []
    for item in farmer_loan_messages(farmer=farmer, on=today):
        if item["kind"] == "overdue":
            text = (
                _("您有一笔借款已逾期 %(days)s 天，请尽快还款。逾期会多收罚息，也会影响额度。") % {"days": item["days"]}
                if item.get("days")
                else _("您有一笔借款已逾期，请尽快还款。逾期会多收罚息，也会影响额度。")
            )
            messages.append(FarmerMessage("loan_overdue", "alert", text, today, *link))
        elif item["kind"] == "due":
            figures = {"amount": f"{item['amount']:,.2f}", "day": _day(item["due_date"])}
            text = (
                _("今天要还 %(amount)s 元。") % figures
                if item["due_date"] <= today
                else _("%(day)s 要还 %(amount)s 元，请提前准备。") % figures
            )
            messages.append(FarmerMessage("loan_due", "warn", text, item["due_date"], *link))
    return messages


def consent_messages(*, farmer: Farmer) -> Iterable[FarmerMessage]:
    partner = portal_partner()
    consent = consent_live(farmer=farmer, partner=partner) if partner else None
    if consent is None:
        return []
    link = ("mobile-consent", _("查看授权"))
    if consent_needs_reconsent(consent=consent):
        return [FarmerMessage("consent_reconsent", "warn", _("授权书有更新或已到期，请重新授权。"), None, *link)]
    if consent.status == Consent.Status.PAUSED:
        since = timezone.localdate(consent.status_changed_at)
        return [FarmerMessage("consent_paused", "info", _("您暂停了授权，额度暂时不能用。"), since, *link)]
    expires = timezone.localdate(consent.expires_at)
    if expires <= timezone.localdate() + RECENT:
        return [
            FarmerMessage(
                "consent_expiring",
                "warn",
                _("您的授权将于 %(day)s 到期，请及时续期。") % {"day": _day(expires)},
                None,
                *link,
            )
        ]
    return []


# --- Consent -----------------------------------------------------------------------------------


@dataclass
class ConsentScreen:
    partner: LendingPartner | None
    text: str = ""
    text_version: int = 0
    categories: list[dict] = field(default_factory=list)  # general and important: preselected
    sensitive: list[dict] = field(default_factory=list)  # PIPL separate consent, not preselected
    live: Consent | None = None
    needs_reconsent: bool = False
    history: list[dict] = field(default_factory=list)


def _category(category: DataCategory) -> dict:
    return {
        "code": category.code,
        "name": _pick(category.name_zh, category.name_en),
        "purpose": _pick(category.purpose_zh, category.purpose_en),
        "department": _pick(category.department_zh, category.department_en),
    }


def consent_screen(*, farmer: Farmer, county_name: str) -> ConsentScreen:
    partner = portal_partner()
    screen = ConsentScreen(partner=partner)
    if partner is None:
        return screen
    text = consent_text_current(purpose_code=CREDIT_PURPOSE)
    screen.text = _pick(text.text_zh, text.text_en).replace("{county}", county_name)
    screen.text_version = text.version
    for category in consent_screen_categories(partner=partner):
        bucket = screen.sensitive if category.sensitivity == DataCategory.Sensitivity.SENSITIVE else screen.categories
        bucket.append(_category(category))
    screen.live = consent_live(farmer=farmer, partner=partner)
    screen.needs_reconsent = bool(screen.live and consent_needs_reconsent(consent=screen.live))
    names = category_names()
    screen.history = [
        {
            "consent": consent,
            "status": consent.get_status_display(),
            "categories": (", " if english() else "、").join(names.get(code, code) for code in consent.categories),
            "starts": timezone.localdate(consent.starts_at),
            "expires": timezone.localdate(consent.expires_at),
            "has_receipt": bool(consent.receipt),
        }
        for consent in farmer_consents(farmer=farmer)[:10]
    ]
    return screen


def category_names() -> dict[str, str]:
    return {category.code: _pick(category.name_zh, category.name_en) for category in DataCategory.objects.all()}


def farmer_consent(*, farmer: Farmer, consent_id: int) -> Consent | None:
    """One of the farmer's own consents (None for anyone else's: the caller answers 404)."""
    return Consent.objects.filter(pk=consent_id, farmer=farmer).select_related("text", "partner").first()


# --- My data -----------------------------------------------------------------------------------


def _value(field_spec: dict, value) -> str:
    if value is None or value == "":
        return "—"
    kind = field_spec.get("type")
    if kind == "choice":
        labels = field_spec.get("choices", {}).get(str(value))
        return _pick(labels[0], labels[1]) if labels else str(value)
    if kind == "boolean":
        return _("是") if value else _("否")
    if kind == "date":
        try:
            return _day(dt.date.fromisoformat(str(value)))
        except ValueError:
            return str(value)
    return str(value)


def my_data(*, farmer: Farmer) -> dict:
    """What the county shares about the farmer, per category the partner's agreement covers, as
    of today, read through the consent gate (which logs this look-up). Categories the farmer
    has not consented to (or while the consent is paused) show as not shared."""
    partner = portal_partner()
    if partner is None:
        return {"partner": None, "categories": []}
    today = timezone.localdate()
    categories = list(DataCategory.objects.filter(is_active=True).order_by("id"))
    agreed = agreed_category_codes(partner=partner, on=today, codes=[category.code for category in categories])
    consent = consent_live(farmer=farmer, partner=partner)
    records: dict[str, list[dict]] = {}
    if agreed and consent is not None and consent.status == Consent.Status.ACTIVE:
        records = farmer_records(
            farmer=farmer,
            partner=partner,
            categories=sorted(agreed),
            business_date=today,
            accessor_type=AccessLog.Accessor.FARMER,
            accessor=f"farmer:{farmer.pk}",
            purpose=CREDIT_PURPOSE,
        )
    shown = []
    for category in categories:
        if category.code not in agreed:
            continue
        fields = category.field_schema.get("fields", [])
        rows = [
            {
                "as_of": record["as_of_date"],
                "fields": [
                    (
                        _pick(spec.get("label_zh", spec["name"]), spec.get("label_en", "")),
                        _value(spec, record["data"].get(spec["name"])),
                    )
                    for spec in fields
                ],
            }
            for record in records.get(category.code, [])
        ]
        shown.append(
            {
                **_category(category),
                "shared": category.code in records,
                "requires_consent": category.requires_consent,
                "records": rows,
            }
        )
    return {"partner": partner, "categories": shown, "as_of": today}


def access_history(*, farmer: Farmer) -> list[dict]:
    """Every access to the farmer's data (newest first) in words: who, when, why, what."""
    names = category_names()
    join = ", " if english() else "、"
    rows = []
    for access in farmer_access_history(farmer=farmer):
        partner_name = access.get("partner_name") or ""
        kind = access["accessor_type"]
        if kind == AccessLog.Accessor.JOB:
            who = _("%(partner)s（夜间额度计算）") % {"partner": partner_name}
        elif kind == AccessLog.Accessor.FARMER:
            who = _("您本人查看")
        elif kind == AccessLog.Accessor.OFFICIAL:
            who = _("县级工作人员")
        else:
            who = partner_name or _("贷款机构")
        why = _("评估和发放您的信用贷款") if access["purpose"] == CREDIT_PURPOSE else access["purpose"]
        rows.append(
            {
                "at": access["at"],
                "who": who,
                "why": why,
                "what": join.join(names.get(code, code) for code in access["categories"]),
                "business_date": access["business_date"],
            }
        )
    return rows
