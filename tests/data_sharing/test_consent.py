"""Consent lifecycle: grant, pause, resume, revoke, expiry, re-consent on a new text version,
the purge of derived data after the data life, and the checks a grant makes.

The helpers at the top (partner, agreement, grant) are shared with the other data-sharing tests.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from data_sharing.consent_selectors import consent_allows_drawdown, consent_live, consent_needs_reconsent
from data_sharing.models import Consent, ConsentEvent, ConsentText, DataSharingAgreement
from data_sharing.services import (
    NIGHTLY_ACTOR,
    add_months,
    agreement_create,
    consent_grant,
    consent_pause,
    consent_resume,
    consent_revoke,
    consent_text_publish,
    consents_expire,
    derived_data_purge,
)
from platform.models import LendingPartner
from tests.conftest import in_county, make_farmer, valid_id_number

SHANGHAI = ZoneInfo("Asia/Shanghai")
AGREED = ["agri_insurance", "agri_subsidy", "dishonest_debtor", "land_contract"]


def make_partner(code: str = "mybank", name: str = "网商银行") -> LendingPartner:
    return LendingPartner.objects.create(code=code, name=name)


def make_agreement(partner, *, categories=AGREED, start: dt.date | None = None, end: dt.date | None = None) -> DataSharingAgreement:
    today = timezone.localdate()
    return agreement_create(
        partner=partner,
        categories=list(categories),
        effective_from=start or today - dt.timedelta(days=30),
        effective_to=end or today + dt.timedelta(days=400),
        reference=f"DSA-{partner.code}-{DataSharingAgreement.objects.count() + 1}",
    )


def grant(farmer, partner, categories=("land_contract", "agri_subsidy"), **options) -> Consent:
    options.setdefault("channel", Consent.Channel.SELF)
    options.setdefault("sms_confirmed", False)
    options.setdefault("actor", f"farmer:{farmer.pk}")
    return consent_grant(farmer=farmer, partner=partner, categories=list(categories), **options)


def local(day: dt.date, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=SHANGHAI)


def a_year_later(day: dt.date) -> dt.date:
    return day.replace(year=day.year + 1, day=28 if (day.month, day.day) == (2, 29) else day.day)


def events(consent) -> list[tuple[str, str, str, str]]:
    return list(
        ConsentEvent.objects.filter(consent=consent).order_by("at", "id").values_list("event", "to_status", "actor", "channel")
    )


@pytest.fixture
def world(lankao):
    with in_county(lankao):
        partner = make_partner()
        make_agreement(partner)
        farmer = make_farmer(name="李四", id_number=valid_id_number(seq=301))
        yield {"partner": partner, "farmer": farmer}


def test_full_lifecycle_records_every_change_in_order(world):
    farmer, partner = world["farmer"], world["partner"]
    tomorrow = timezone.localdate() + dt.timedelta(days=1)

    consent = grant(farmer, partner, ["land_contract", "agri_subsidy", "land_contract"], starts_at=local(tomorrow, 9, 30))

    assert consent.status == Consent.Status.ACTIVE
    assert consent.purpose_code == "credit"
    assert consent.text.version == 1
    assert consent.categories == ["agri_subsidy", "land_contract"]
    assert consent.starts_at == local(tomorrow, 9, 30)
    assert consent.expires_at == local(a_year_later(tomorrow), 9, 30)
    assert consent.fetch_frequency == "daily"
    assert consent.data_life_days == 180
    assert consent.channel == "self" and consent.assisted_by == ""
    assert consent.ended_at is None

    paused = consent_pause(consent=consent, actor="farmer:1", channel="self")
    assert paused.status == Consent.Status.PAUSED and paused.ended_at is None
    resumed = consent_resume(consent=consent, actor="farmer:1", channel="self")
    assert resumed.status == Consent.Status.ACTIVE
    revoked = consent_revoke(consent=consent, actor="farmer:1", channel="self")

    consent.refresh_from_db()
    assert consent.status == Consent.Status.REVOKED == revoked.status
    assert events(consent) == [
        ("granted", "active", f"farmer:{farmer.pk}", "self"),
        ("paused", "paused", "farmer:1", "self"),
        ("resumed", "active", "farmer:1", "self"),
        ("revoked", "revoked", "farmer:1", "self"),
    ]
    last = ConsentEvent.objects.filter(consent=consent).latest("id")
    assert consent.ended_at == consent.status_changed_at == last.at
    granted = ConsentEvent.objects.filter(consent=consent, event="granted").get()
    assert granted.detail == {
        "text_version": 1,
        "categories": ["agri_subsidy", "land_contract"],
        "sms_confirmed": False,
        "receipt_id": consent.receipt["receipt_id"],
        "supersedes": None,
    }


@pytest.mark.parametrize(
    ("steps", "refused"),
    [
        (["revoke"], "resume"),
        (["revoke"], "pause"),
        (["revoke"], "revoke"),
        ([], "resume"),
        (["pause"], "pause"),
    ],
)
def test_moves_the_lifecycle_does_not_allow_are_refused(world, steps, refused):
    consent = grant(world["farmer"], world["partner"])
    services = {"pause": consent_pause, "resume": consent_resume, "revoke": consent_revoke}
    for step in steps:
        services[step](consent=consent, actor="farmer")
    before = events(consent)

    with pytest.raises(ValidationError) as caught:
        services[refused](consent=consent, actor="farmer")

    assert caught.value.code == "invalid_transition"
    assert " / " in caught.value.messages[0]  # Chinese / English
    assert events(consent) == before


def test_validity_is_at_most_twelve_months(world):
    for months in (0, 13):
        with pytest.raises(ValidationError) as caught:
            grant(world["farmer"], world["partner"], months=months)
        assert caught.value.code == "validity"
    assert Consent.objects.count() == 0

    start = timezone.localdate() + dt.timedelta(days=3)
    consent = grant(world["farmer"], world["partner"], months=12, starts_at=local(start, 8))
    assert consent.expires_at == local(a_year_later(start), 8)


def test_add_months_keeps_the_local_time_and_clamps_the_day():
    assert add_months(local(dt.date(2027, 1, 31), 23, 30), 1) == local(dt.date(2027, 2, 28), 23, 30)
    assert add_months(local(dt.date(2028, 1, 31), 0, 0), 1) == local(dt.date(2028, 2, 29))
    assert add_months(local(dt.date(2027, 3, 15), 10), 12) == local(dt.date(2028, 3, 15), 10)
    assert add_months(local(dt.date(2027, 12, 1), 10), 1) == local(dt.date(2028, 1, 1), 10)


def test_a_consent_cannot_start_in_the_past(world):
    with pytest.raises(ValidationError) as caught:
        grant(world["farmer"], world["partner"], starts_at=timezone.now() - dt.timedelta(hours=1))
    assert caught.value.code == "backdated"


def test_assisted_consent_needs_the_farmers_sms_confirmation_and_the_agent(world):
    assisted = {"channel": Consent.Channel.ASSISTED}
    with pytest.raises(ValidationError) as caught:
        grant(world["farmer"], world["partner"], assisted_by="村服务点王五", sms_confirmed=False, **assisted)
    assert caught.value.code == "assisted_unconfirmed"
    with pytest.raises(ValidationError) as caught:
        grant(world["farmer"], world["partner"], assisted_by="", sms_confirmed=True, **assisted)
    assert caught.value.code == "assisted_unconfirmed"
    with pytest.raises(ValidationError) as caught:
        grant(world["farmer"], world["partner"], channel="wechat")
    assert caught.value.code == "channel"
    assert Consent.objects.count() == 0

    consent = grant(world["farmer"], world["partner"], assisted_by="村服务点王五", sms_confirmed=True, **assisted)
    assert (consent.channel, consent.assisted_by) == ("assisted", "村服务点王五")
    assert consent.receipt["channel"] == "assisted" and consent.receipt["sms_confirmed"] is True


@pytest.mark.parametrize(
    ("categories", "code", "named"),
    [
        ([], "no_categories", None),
        (["land_contract", "moon_rocks"], "unknown_category", "moon_rocks"),
        (["dishonest_debtor"], "no_consent_needed", "失信被执行人"),
        (["land_contract", "social_insurance"], "outside_agreement", "社会保险"),
    ],
)
def test_categories_must_exist_need_consent_and_be_agreed(world, categories, code, named):
    with pytest.raises(ValidationError) as caught:
        grant(world["farmer"], world["partner"], categories)
    assert caught.value.code == code
    if named:
        assert named in caught.value.messages[0]
    if code == "outside_agreement":
        assert "Social insurance" in caught.value.messages[0]


def test_categories_must_be_agreed_with_this_partner_on_the_start_date(world):
    other = make_partner("otherbank", "其他银行")
    today = timezone.localdate()
    make_agreement(other, categories=["land_contract"], start=today + dt.timedelta(days=10))

    with pytest.raises(ValidationError) as caught:
        grant(world["farmer"], other, ["land_contract"])
    assert caught.value.code == "outside_agreement"

    consent = grant(world["farmer"], other, ["land_contract"], starts_at=local(today + dt.timedelta(days=10), 8))
    assert consent.partner == other


def test_new_text_version_requires_reconsent(world):
    farmer, partner = world["farmer"], world["partner"]
    old = grant(farmer, partner)
    v1 = old.text
    assert consent_needs_reconsent(consent=old) is False

    v2 = consent_text_publish(purpose_code="credit", text_zh="新版授权书", text_en="New consent text")
    assert (v2.purpose_code, v2.version) == ("credit", 2)
    assert consent_needs_reconsent(consent=old) is True
    assert consent_allows_drawdown(farmer=farmer, partner=partner) is False

    # The outdated text cannot be accepted again, nor a paused consent on it resumed.
    with pytest.raises(ValidationError) as caught:
        grant(farmer, partner, text=v1)
    assert caught.value.code == "text_outdated"
    consent_pause(consent=old, actor="farmer")
    with pytest.raises(ValidationError) as caught:
        consent_resume(consent=old, actor="farmer")
    assert caught.value.code == "text_outdated"

    new = grant(farmer, partner, ["land_contract"])

    old.refresh_from_db()
    assert old.status == Consent.Status.REVOKED
    assert old.ended_at == new.status_changed_at
    assert events(old) == [
        ("granted", "active", f"farmer:{farmer.pk}", "self"),
        ("paused", "paused", "farmer", ""),
        ("superseded", "revoked", f"farmer:{farmer.pk}", "self"),
    ]
    assert ConsentEvent.objects.get(consent=old, event="superseded").detail == {"reason": "re-consent", "text_version": 2}
    assert (new.status, new.text, new.categories) == ("active", v2, ["land_contract"])
    assert ConsentEvent.objects.get(consent=new).detail["supersedes"] == old.pk
    assert consent_live(farmer=farmer, partner=partner) == new
    assert consent_allows_drawdown(farmer=farmer, partner=partner) is True


def test_regranting_replaces_the_live_consent_even_on_the_same_text(world):
    farmer, partner = world["farmer"], world["partner"]
    first = grant(farmer, partner)
    second = grant(farmer, partner, ["agri_insurance"])

    assert list(Consent.objects.filter(farmer=farmer).order_by("id").values_list("id", "status")) == [
        (first.pk, "revoked"),
        (second.pk, "active"),
    ]


def test_drawdowns_follow_the_consent(world):
    farmer, partner = world["farmer"], world["partner"]
    assert consent_allows_drawdown(farmer=farmer, partner=partner) is False
    consent = grant(farmer, partner)
    assert consent_allows_drawdown(farmer=farmer, partner=partner) is True
    consent_pause(consent=consent, actor="farmer")
    assert consent_allows_drawdown(farmer=farmer, partner=partner) is False
    consent_resume(consent=consent, actor="farmer")
    assert consent_allows_drawdown(farmer=farmer, partner=partner) is True
    consent_revoke(consent=consent, actor="farmer")
    assert consent_allows_drawdown(farmer=farmer, partner=partner) is False
    grant(farmer, partner)
    assert consent_allows_drawdown(farmer=farmer, partner=partner) is True


def test_resuming_after_expiry_asks_for_reconsent(world):
    consent = grant(world["farmer"], world["partner"])
    consent_pause(consent=consent, actor="farmer")
    Consent.objects.filter(pk=consent.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=1))

    with pytest.raises(ValidationError) as caught:
        consent_resume(consent=consent, actor="farmer")
    assert caught.value.code == "expired"


def test_expiry_step_expires_live_consents_that_ended_before_the_business_day_did(world):
    partner = world["partner"]
    start = timezone.localdate() + dt.timedelta(days=2)
    farmers = [world["farmer"]] + [make_farmer(name=f"农户{i}", id_number=valid_id_number(seq=310 + i)) for i in range(4)]
    # expires start+1 month at 10:00 (active), the same (paused), at 00:00 of the next day
    # (valid through the whole day), and a revoked one that is left alone.
    active = grant(farmers[0], partner, starts_at=local(start, 10), months=1)
    paused = grant(farmers[1], partner, starts_at=local(start, 10), months=1)
    consent_pause(consent=paused, actor="farmer")
    at_midnight = grant(farmers[2], partner, starts_at=local(start + dt.timedelta(days=1)), months=1)
    revoked = grant(farmers[3], partner, starts_at=local(start, 10), months=1)
    consent_revoke(consent=revoked, actor="farmer")
    later = grant(farmers[4], partner, starts_at=local(start, 10), months=2)
    expiry_day = add_months(local(start, 10), 1).date()

    assert consents_expire(business_date=expiry_day - dt.timedelta(days=1)) == {"expired": 0}
    assert consents_expire(business_date=expiry_day) == {"expired": 2}

    statuses = dict(Consent.objects.values_list("id", "status"))
    assert statuses == {
        active.pk: "expired", paused.pk: "expired", at_midnight.pk: "active", revoked.pk: "revoked", later.pk: "active"
    }
    for consent in (active, paused):
        consent.refresh_from_db()
        assert consent.ended_at == consent.expires_at == local(expiry_day, 10)
        event = ConsentEvent.objects.filter(consent=consent).latest("id")
        assert (event.event, event.to_status, event.actor, event.channel) == ("expired", "expired", NIGHTLY_ACTOR, "")
        assert event.detail["business_date"] == expiry_day.isoformat()
        assert dt.datetime.fromisoformat(event.detail["expires_at"]) == local(expiry_day, 10)

    # Idempotent: the rerun finds nothing; the next day takes the one valid through expiry_day.
    assert consents_expire(business_date=expiry_day) == {"expired": 0}
    assert consents_expire(business_date=expiry_day + dt.timedelta(days=1)) == {"expired": 1}
    assert Consent.objects.get(pk=at_midnight.pk).status == "expired"
    assert ConsentEvent.objects.filter(event="expired").count() == 3


PURGED: list[set[tuple[int, int]]] = []


def record_purge(*, targets_sql: str) -> int:
    """A stand-in purger: records the (farmer, partner) pairs it was asked to purge."""
    with connection.cursor() as cursor:
        cursor.execute(targets_sql)
        pairs = set(cursor.fetchall())
    PURGED.append(pairs)
    return len(pairs)


@override_settings(DERIVED_DATA_PURGERS=["tests.data_sharing.test_consent.record_purge"])
def test_derived_data_is_purged_once_the_data_life_has_passed(world):
    partner = world["partner"]
    today = timezone.localdate()
    done, waiting, reconsented, live = (
        [world["farmer"]] + [make_farmer(name=f"农户{i}", id_number=valid_id_number(seq=320 + i)) for i in range(3)]
    )
    consent_revoke(consent=grant(done, partner, data_life_days=0), actor="farmer")
    consent_revoke(consent=grant(waiting, partner, data_life_days=30), actor="farmer")
    grant(reconsented, partner, data_life_days=0)
    grant(reconsented, partner, data_life_days=0)  # supersedes: the newer consent still covers the data
    grant(live, partner)
    PURGED.clear()

    step = "tests.data_sharing.test_consent.record_purge"
    assert derived_data_purge(business_date=today) == {"pairs": 1, step: 1, "consents": 1}
    assert PURGED == [{(done.pk, partner.pk)}]
    purged = Consent.objects.filter(derived_data_purged_at__isnull=False)
    assert list(purged.values_list("farmer_id", flat=True)) == [done.pk]

    assert derived_data_purge(business_date=today) == {"pairs": 0, step: 0, "consents": 0}
    # "waiting" ended now with 30 days of data life: purged on the 30th day after, not before.
    assert derived_data_purge(business_date=today + dt.timedelta(days=29)) == {"pairs": 0, step: 0, "consents": 0}
    assert derived_data_purge(business_date=today + dt.timedelta(days=30)) == {"pairs": 1, step: 1, "consents": 1}
    assert PURGED[-1] == {(waiting.pk, partner.pk)}


def test_nightly_steps_run_inside_one_transaction_each(world):
    # nightly_run wraps each step in transaction.atomic and passes business_date only.
    grant(world["farmer"], world["partner"], months=1)
    far = timezone.localdate() + dt.timedelta(days=40)
    with transaction.atomic():
        assert consents_expire(business_date=far) == {"expired": 1}
    with transaction.atomic():
        assert derived_data_purge(business_date=far + dt.timedelta(days=180)) == {
        "pairs": 1, "consents": 1, "loans.purge.derived_credit_data_purge": 0,
    }


def test_publishing_numbers_versions_per_purpose(world):
    assert ConsentText.objects.filter(purpose_code="credit").count() == 1
    v2 = consent_text_publish(purpose_code="credit", text_zh="二", text_en="two")
    v3 = consent_text_publish(purpose_code="credit", text_zh="三", text_en="three")
    other = consent_text_publish(purpose_code="insurance", text_zh="保险", text_en="insurance")
    assert [v2.version, v3.version, other.version] == [2, 3, 1]
    with pytest.raises(ValidationError):
        consent_text_publish(purpose_code="credit", text_zh=" ", text_en="x")


def test_agreement_checks(world):
    partner = world["partner"]
    today = timezone.localdate()
    with pytest.raises(ValidationError) as caught:
        agreement_create(partner=partner, categories=["land_contract"], effective_from=today, effective_to=today - dt.timedelta(days=1), reference="X-1")
    assert caught.value.code == "dates"
    with pytest.raises(ValidationError) as caught:
        agreement_create(partner=partner, categories=["nope"], effective_from=today, effective_to=today, reference="X-2")
    assert caught.value.code == "unknown_category"
    agreement = agreement_create(partner=partner, categories=["land_contract"], effective_from=today, effective_to=today, reference="X-3")
    assert list(agreement.categories.values_list("code", flat=True)) == ["land_contract"]
    with pytest.raises(ValidationError) as caught:
        agreement_create(partner=partner, categories=["land_contract"], effective_from=today, effective_to=today, reference="X-3")
    assert caught.value.code == "duplicate"
