"""Reads about consent: current texts, a farmer's consents and their history, what the consent
screen offers, and whether a consent is in force. Reads of the government data itself go through
:mod:`data_sharing.gate` only."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet
from django.utils import timezone

from counties.models import Farmer
from data_sharing.catalog import CREDIT_PURPOSE
from data_sharing.gate import agreed_category_codes, consent_in_force
from data_sharing.models import Consent, ConsentEvent, ConsentText, DataCategory
from platform.models import LendingPartner

LIVE_STATUSES = (Consent.Status.ACTIVE, Consent.Status.PAUSED)


def consent_text_current(*, purpose_code: str = CREDIT_PURPOSE) -> ConsentText:
    """The newest text version for the purpose: the one a farmer must be shown and accept."""
    return ConsentText.objects.filter(purpose_code=purpose_code).latest("version")


def consent_screen_categories(*, partner: LendingPartner, on: dt.date | None = None) -> list[DataCategory]:
    """Categories a farmer may consent to for ``partner``: active, needing consent, and covered
    by an agreement with the partner effective ``on`` (default today)."""
    candidates = list(DataCategory.objects.filter(is_active=True, requires_consent=True).order_by("id"))
    agreed = agreed_category_codes(partner=partner, on=on or timezone.localdate(), codes=[c.code for c in candidates])
    return [category for category in candidates if category.code in agreed]


def farmer_consents(*, farmer: Farmer) -> QuerySet[Consent]:
    """All of the farmer's consents, newest first (live ones and their history)."""
    return Consent.objects.filter(farmer=farmer).select_related("text", "partner").order_by("-created_at", "-id")


def consent_live(*, farmer: Farmer, partner: LendingPartner, purpose_code: str = CREDIT_PURPOSE) -> Consent | None:
    """The farmer's active or paused consent to ``partner`` for the purpose (at most one)."""
    return (
        Consent.objects.filter(farmer=farmer, partner=partner, purpose_code=purpose_code, status__in=LIVE_STATUSES)
        .select_related("text")
        .first()
    )


def consent_events(*, consent: Consent) -> QuerySet[ConsentEvent]:
    return ConsentEvent.objects.filter(consent=consent).order_by("at", "id")


def consent_needs_reconsent(*, consent: Consent) -> bool:
    """A live consent on an outdated text, or past its expiry: it lets no data through and the
    farmer should be asked to consent again."""
    if consent.status not in LIVE_STATUSES:
        return False
    outdated = ConsentText.objects.filter(purpose_code=consent.purpose_code, version__gt=consent.text.version).exists()
    return outdated or consent.expires_at <= timezone.now()


def consent_allows_drawdown(*, farmer: Farmer, partner: LendingPartner, at: dt.datetime | None = None) -> bool:
    """Whether the farmer's credit line with ``partner`` may take a new drawdown now: their
    credit consent is in force (active, started, unexpired, on the current text). Loans already
    drawn are not affected by this."""
    return consent_in_force(farmer=farmer, partner=partner, purpose=CREDIT_PURPOSE, at=at)
