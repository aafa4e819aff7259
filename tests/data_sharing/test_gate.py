"""The consent gate: exact records for one farmer and for the nightly batch, the access log it
writes, what closes it (revocation, pause, a new text version, expiry, no agreement), the
farmer's and the auditor's views of the log — and a property test over random consent histories
against an independent model of who is admitted."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from counties.models import Official
from data_sharing.gate import (
    OutsideAgreementError,
    access_log_all,
    batch_gate,
    farmer_access_history,
    farmer_records,
)
from data_sharing.models import AccessLog, Consent, ConsentText, DataCategory, GovernmentRecord, ImportBatch
from data_sharing.services import (
    consent_pause,
    consent_resume,
    consent_revoke,
    consent_text_publish,
    consents_expire,
)
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.data_sharing.test_consent import grant, local, make_agreement, make_partner

SHANGHAI = ZoneInfo("Asia/Shanghai")
JOB = "nightly:assessment"
AGREEMENTS = {
    "mybank": ["agri_insurance", "agri_subsidy", "dishonest_debtor", "land_contract"],
    "otherbank": ["agri_subsidy", "dishonest_debtor", "land_contract"],
}
# (farmer index, category, record key, days after today, data)
RECORDS = [
    (0, "land_contract", "LC-1", -10, {"contract_no": "LC-1", "area_mu": "5.00"}),
    (0, "land_contract", "LC-1", 5, {"contract_no": "LC-1", "area_mu": "6.00"}),
    (0, "land_contract", "LC-2", -3, {"contract_no": "LC-2", "area_mu": "1.50"}),
    (0, "agri_subsidy", "2025|grain", -20, {"year": 2025, "kind": "grain", "amount_yuan": "120.00"}),
    (0, "social_insurance", "resident_pension", -5, {"scheme": "resident_pension", "contribution_years": 9}),
    (1, "land_contract", "LC-9", -10, {"contract_no": "LC-9", "area_mu": "8.00"}),
    (1, "land_contract", "LC-9", 40, {"contract_no": "LC-9", "area_mu": "9.00"}),
    (1, "agri_insurance", "P-1", 0, {"policy_no": "P-1", "crop": "wheat"}),
    (1, "dishonest_debtor", "(2025)豫0225执123号", -1, {"case_no": "(2025)豫0225执123号", "court": "兰考县人民法院"}),
    (2, "land_contract", "LC-7", -10, {"contract_no": "LC-7", "area_mu": "3.00"}),
    (2, "agri_subsidy", "2025|arable_land", 2, {"year": 2025, "kind": "arable_land", "amount_yuan": "80.00"}),
    (2, "dishonest_debtor", "(2024)豫0225执9号", -1, {"case_no": "(2024)豫0225执9号", "court": "兰考县人民法院"}),
]


def day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=SHANGHAI)


@pytest.fixture
def world(lankao):
    with in_county(lankao):
        today = timezone.localdate()
        partners = {code: make_partner(code, name) for code, name in [("mybank", "网商银行"), ("otherbank", "其他银行")]}
        for code, categories in AGREEMENTS.items():
            make_agreement(partners[code], categories=categories)
        farmers = [make_farmer(name=f"张{i}", id_number=valid_id_number(seq=400 + i)) for i in range(3)]
        batches = {}
        for index, code, key, offset, data in RECORDS:
            if code not in batches:
                batches[code] = ImportBatch.objects.create(
                    category=DataCategory.objects.get(code=code), source=ImportBatch.Source.SYNTHETIC,
                    content_sha256=hashlib.sha256(code.encode()).hexdigest(), as_of_date=today, submitted_by="test",
                )
            GovernmentRecord.objects.create(
                category=batches[code].category, farmer=farmers[index], record_key=key,
                as_of_date=today + dt.timedelta(days=offset), data=data, batch=batches[code],
            )
        yield {"today": today, "partners": partners, "farmers": farmers}


def gated() -> tuple[set[int], list[tuple]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT farmer_id FROM gated_farmers")
        farmers = {farmer_id for (farmer_id,) in cursor.fetchall()}
        cursor.execute("SELECT farmer_id, category_code, record_key, as_of_date, data FROM gated_records")
        records = sorted((f, c, k, d, json.dumps(json.loads(data), sort_keys=True)) for f, c, k, d, data in cursor.fetchall())
    return farmers, records


def row(farmer, code, key, offset, today) -> tuple:
    data = next(d for i, c, k, o, d in RECORDS if (c, k, o) == (code, key, offset))
    return (farmer.pk, code, key, today + dt.timedelta(days=offset), json.dumps(data, sort_keys=True))


def log_fields(log_id: int) -> dict:
    return AccessLog.objects.filter(pk=log_id).values(
        "accessor_type", "accessor", "partner__code", "farmer_id", "farmer_count", "categories", "purpose", "business_date"
    ).get()


def test_batch_reads_only_consented_records_in_their_newest_version(world):
    today, bank = world["today"], world["partners"]["mybank"]
    first, second, _third = world["farmers"]
    grant(first, bank, ["land_contract", "agri_subsidy"])
    grant(second, bank, ["agri_subsidy"])  # no land contract: LC-9 stays in the county
    # third has not consented: not even the court's public list is read about them.
    before = timezone.now()

    result = batch_gate(
        partner=bank, categories=["land_contract", "agri_subsidy", "dishonest_debtor"],
        business_date=today, job=JOB, purpose="credit",
    )

    farmers, records = gated()
    assert farmers == {first.pk, second.pk}
    assert records == sorted([
        row(first, "land_contract", "LC-1", -10, today),
        row(first, "land_contract", "LC-2", -3, today),
        row(first, "agri_subsidy", "2025|grain", -20, today),
        row(second, "dishonest_debtor", "(2025)豫0225执123号", -1, today),
    ])
    assert (result.farmer_count, result.record_count) == (2, 4)
    assert result.records_by_category == {"agri_subsidy": 1, "dishonest_debtor": 1, "land_contract": 2}
    assert result.categories == ["agri_subsidy", "dishonest_debtor", "land_contract"]
    assert log_fields(result.access_log_id) == {
        "accessor_type": "job", "accessor": JOB, "partner__code": "mybank", "farmer_id": None, "farmer_count": 2,
        "categories": ["agri_subsidy", "dishonest_debtor", "land_contract"], "purpose": "credit", "business_date": today,
    }
    assert before <= AccessLog.objects.get(pk=result.access_log_id).at <= timezone.now()
    assert AccessLog.objects.count() == 1

    # Five days on, the newer extract of LC-1 is the one read.
    later = batch_gate(partner=bank, categories=["land_contract"], business_date=today + dt.timedelta(days=5), job=JOB, purpose="credit")
    assert gated()[1] == sorted([row(first, "land_contract", "LC-1", 5, today), row(first, "land_contract", "LC-2", -3, today)])
    assert (later.farmer_count, later.record_count, later.records_by_category) == (2, 2, {"land_contract": 2})


def test_single_farmer_read_returns_admitted_categories_and_logs_it(world):
    today, bank = world["today"], world["partners"]["mybank"]
    first, _second, third = world["farmers"]
    grant(first, bank, ["land_contract"])
    ask = {"partner": bank, "business_date": today, "accessor_type": "official", "accessor": "officer-wang", "purpose": "credit"}

    records = farmer_records(farmer=first, categories=["land_contract", "agri_subsidy", "dishonest_debtor"], **ask)

    assert records == {
        "dishonest_debtor": [],
        "land_contract": [
            {"record_key": "LC-1", "as_of_date": today - dt.timedelta(days=10), "data": {"contract_no": "LC-1", "area_mu": "5.00"}},
            {"record_key": "LC-2", "as_of_date": today - dt.timedelta(days=3), "data": {"contract_no": "LC-2", "area_mu": "1.50"}},
        ],
    }
    assert farmer_records(farmer=third, categories=["land_contract", "dishonest_debtor"], **ask) == {}
    logs = [log_fields(pk) for pk in AccessLog.objects.order_by("id").values_list("id", flat=True)]
    common = {"accessor_type": "official", "accessor": "officer-wang", "partner__code": "mybank", "purpose": "credit", "business_date": today}
    assert logs == [
        {**common, "farmer_id": first.pk, "farmer_count": 1, "categories": ["dishonest_debtor", "land_contract"]},
        {**common, "farmer_id": third.pk, "farmer_count": 0, "categories": []},
    ]


def test_nothing_leaves_outside_an_agreement(world):
    today, other = world["today"], world["partners"]["otherbank"]
    grant(world["farmers"][0], other, ["land_contract"])

    with pytest.raises(OutsideAgreementError) as caught:
        batch_gate(partner=other, categories=["land_contract", "agri_insurance"], business_date=today, job=JOB, purpose="credit")
    assert caught.value.categories == ["agri_insurance"]
    assert "agri_insurance" in str(caught.value)
    with pytest.raises(OutsideAgreementError) as caught:
        farmer_records(
            farmer=world["farmers"][0], partner=other, categories=["social_insurance"], business_date=today,
            accessor_type="official", accessor="x", purpose="credit",
        )
    assert caught.value.categories == ["social_insurance"]
    # The agreement ends 400 days from today.
    with pytest.raises(OutsideAgreementError):
        batch_gate(partner=other, categories=["land_contract"], business_date=today + dt.timedelta(days=401), job=JOB, purpose="credit")
    assert AccessLog.objects.count() == 0


def test_consent_to_one_partner_opens_nothing_for_another(world):
    today, partners = world["today"], world["partners"]
    grant(world["farmers"][0], partners["otherbank"], ["land_contract"])

    result = batch_gate(partner=partners["mybank"], categories=["land_contract"], business_date=today, job=JOB, purpose="credit")

    assert (result.farmer_count, result.record_count) == (0, 0)
    assert gated() == (set(), [])


def test_revocation_and_pause_take_effect_at_once_even_for_an_old_date(world):
    today, bank = world["today"], world["partners"]["mybank"]
    farmer = world["farmers"][0]
    consent = grant(farmer, bank, ["land_contract"])

    def admitted() -> set[int]:
        batch_gate(partner=bank, categories=["land_contract"], business_date=today, job=JOB, purpose="credit")
        return gated()[0]

    assert admitted() == {farmer.pk}
    consent_pause(consent=consent, actor="farmer")
    assert admitted() == set()
    consent_resume(consent=consent, actor="farmer")
    assert admitted() == {farmer.pk}
    consent_revoke(consent=consent, actor="farmer")
    assert admitted() == set()  # rerunning today's date after the revocation reads nothing


def test_a_new_text_version_closes_the_gate_until_reconsent(world):
    today, bank = world["today"], world["partners"]["mybank"]
    farmer = world["farmers"][0]
    grant(farmer, bank, ["land_contract"])
    consent_text_publish(purpose_code="credit", text_zh="第二版", text_en="Version 2")

    result = batch_gate(partner=bank, categories=["land_contract"], business_date=today, job=JOB, purpose="credit")
    assert (result.farmer_count, gated()[0]) == (0, set())

    grant(farmer, bank, ["land_contract"])  # re-consent on version 2
    result = batch_gate(partner=bank, categories=["land_contract"], business_date=today, job=JOB, purpose="credit")
    assert (result.farmer_count, result.record_count, gated()[0]) == (1, 2, {farmer.pk})


def test_validity_window_is_judged_at_the_end_of_the_business_day(world):
    today, bank = world["today"], world["partners"]["mybank"]
    farmer = world["farmers"][0]
    start = today + dt.timedelta(days=2)
    consent = grant(farmer, bank, ["land_contract"], starts_at=local(start), months=1)
    last_day = consent.expires_at.astimezone(SHANGHAI).date() - dt.timedelta(days=1)  # expires at 00:00 after it

    def count(day: dt.date) -> int:
        return batch_gate(partner=bank, categories=["land_contract"], business_date=day, job=JOB, purpose="credit").farmer_count

    assert [count(start - dt.timedelta(days=1)), count(start), count(last_day), count(last_day + dt.timedelta(days=1))] == [0, 1, 1, 0]
    # The expiry step for the last day leaves it alone; the next day's expires it.
    assert consents_expire(business_date=last_day) == {"expired": 0}
    assert count(last_day) == 1
    assert consents_expire(business_date=last_day + dt.timedelta(days=1)) == {"expired": 1}
    assert count(last_day) == 0


def test_the_purpose_must_be_a_consent_purpose(world):
    bank = world["partners"]["mybank"]
    with pytest.raises(ValueError, match="unknown consent purpose"):
        batch_gate(partner=bank, categories=["land_contract"], business_date=world["today"], job=JOB, purpose="nightly")


def test_farmer_sees_direct_reads_and_the_batches_that_admitted_them(world):
    today, bank = world["today"], world["partners"]["mybank"]
    first, second, _third = world["farmers"]
    consent = grant(first, bank, ["land_contract"])
    grant(second, bank, ["agri_subsidy"])
    requested = ["agri_subsidy", "dishonest_debtor", "land_contract"]

    def run_batch(day: dt.date) -> int:
        return batch_gate(partner=bank, categories=requested, business_date=day, job=JOB, purpose="credit").access_log_id

    before_revoke = run_batch(today)
    direct = farmer_records(
        farmer=first, partner=bank, categories=["land_contract"], business_date=today,
        accessor_type="official", accessor="officer-li", purpose="credit",
    )
    assert list(direct) == ["land_contract"]
    consent_revoke(consent=consent, actor="farmer")
    after_revoke = run_batch(today)
    consent_text_publish(purpose_code="credit", text_zh="第二版", text_en="Version 2")
    after_new_text = run_batch(today)
    direct_id = AccessLog.objects.get(farmer=first).pk

    history = farmer_access_history(farmer=first)
    assert [(entry["id"], entry["kind"], entry["categories"]) for entry in history] == [
        (direct_id, "direct", ["land_contract"]),
        (before_revoke, "batch", ["dishonest_debtor", "land_contract"]),
    ]
    assert {key: history[1][key] for key in ("accessor_type", "accessor", "partner_code", "partner_name", "purpose", "business_date")} == {
        "accessor_type": "job", "accessor": JOB, "partner_code": "mybank", "partner_name": "网商银行",
        "purpose": "credit", "business_date": today,
    }
    # The second farmer was admitted until the new text version.
    assert [(entry["id"], entry["categories"]) for entry in farmer_access_history(farmer=second)] == [
        (after_revoke, ["agri_subsidy", "dishonest_debtor"]),
        (before_revoke, ["agri_subsidy", "dishonest_debtor"]),
    ]
    assert after_new_text not in {entry["id"] for entry in farmer_access_history(farmer=second)}


def test_only_an_auditor_sees_the_whole_log(world):
    today, bank = world["today"], world["partners"]["mybank"]
    first = world["farmers"][0]
    grant(first, bank, ["land_contract"])
    batch_gate(partner=bank, categories=["land_contract"], business_date=today, job=JOB, purpose="credit")
    farmer_records(
        farmer=first, partner=bank, categories=["land_contract", "agri_subsidy"], business_date=today,
        accessor_type="official", accessor="officer-li", purpose="credit",
    )
    users = get_user_model().objects
    auditor = users.create_user(username="auditor", password="x-auditor-pass")
    Official.objects.create(user=auditor, role=Official.Role.AUDITOR)
    officer = users.create_user(username="officer", password="x-officer-pass")
    Official.objects.create(user=officer, role=Official.Role.DATA_OFFICER)

    with pytest.raises(PermissionDenied):
        access_log_all(viewer=officer)
    page = access_log_all(viewer=auditor)
    assert [(log.accessor_type, log.farmer_id) for log in page] == [("official", first.pk), ("job", None)]
    assert [log.accessor for log in access_log_all(viewer=auditor, accessor_type="job")] == [JOB]
    assert [log.accessor for log in access_log_all(viewer=auditor, farmer=first)] == ["officer-li"]
    assert len(access_log_all(viewer=auditor, category="agri_subsidy")) == 0
    assert len(access_log_all(viewer=auditor, date_from=today + dt.timedelta(days=1))) == 0
    first_page = access_log_all(viewer=auditor, page_size=1)
    assert (len(first_page), first_page.paginator.num_pages, first_page.has_next()) == (1, 2, True)


# --- Property: the gate admits exactly what an independent model says ---------------------------

CONSENTABLE = ["agri_insurance", "agri_subsidy", "land_contract"]
PARTNERS = ["mybank", "otherbank"]
START_OFFSETS = [0, 1, 2, 33]
CHECK_OFFSETS = [0, 1, 3, 35, 70]


class Model:
    """Who the gate should admit, computed without the database: a consent admits reads for
    business day D if it is (now) active, started before D ended, had not expired by then, and
    its text is the newest version."""

    def __init__(self, *, today: dt.date, text_version: int):
        self.today = today
        self.text_version = text_version
        self.consents: list[dict] = []  # in grant order; "pk" links to the real row

    def latest(self, farmer: int, partner: str) -> dict | None:
        mine = [c for c in self.consents if (c["farmer"], c["partner"]) == (farmer, partner)]
        return mine[-1] if mine else None

    def admitted(self, partner: str, day: dt.date) -> dict[int, set[str]]:
        end = day_end(day)
        return {
            c["farmer"]: c["categories"]
            for c in self.consents
            if c["partner"] == partner and c["status"] == "active" and c["starts"] < end <= c["expires"]
            and c["version"] == self.text_version
        }

    def records(self, partner: str, day: dt.date, farmers) -> set[tuple]:
        admitted = self.admitted(partner, day)
        newest: dict[tuple, tuple] = {}
        for index, code, key, offset, data in RECORDS:
            as_of = self.today + dt.timedelta(days=offset)
            if index not in admitted or code not in AGREEMENTS[partner] or as_of > day:
                continue
            if code != "dishonest_debtor" and code not in admitted[index]:
                continue
            if (index, code, key) not in newest or newest[(index, code, key)][0] < as_of:
                newest[(index, code, key)] = (as_of, data)
        return {
            (farmers[index].pk, code, key, as_of, json.dumps(data, sort_keys=True))
            for (index, code, key), (as_of, data) in newest.items()
        }


farmer_index = st.integers(0, 2)
partner_code = st.sampled_from(PARTNERS)
grants = st.tuples(
    st.just("grant"), farmer_index, partner_code, st.frozensets(st.sampled_from(CONSENTABLE), min_size=1),
    st.sampled_from(START_OFFSETS), st.sampled_from([1, 2]),
)
# A status change names a consent by its position in grant order (any consent, ended ones too).
changes = st.tuples(st.sampled_from(["pause", "resume", "revoke"]), st.integers(0, 20))
operations = st.lists(
    st.one_of(
        grants, grants, grants, changes, changes, changes, changes,
        st.tuples(st.just("expire"), st.integers(0, 75)), st.just(("publish",)),
    ),
    min_size=2,
    max_size=14,
)


def apply(model: Model, operation: tuple, farmers, partners, now: dt.datetime) -> None:
    kind = operation[0]
    if kind == "grant":
        _kind, index, partner, categories, offset, months = operation
        starts = now + dt.timedelta(days=offset)
        if not categories <= set(AGREEMENTS[partner]):
            with pytest.raises(ValidationError) as caught:
                grant(farmers[index], partners[partner], sorted(categories), starts_at=starts, months=months)
            assert caught.value.code == "outside_agreement"
            return
        consent = grant(farmers[index], partners[partner], sorted(categories), starts_at=starts, months=months)
        previous = model.latest(index, partner)
        if previous and previous["status"] in {"active", "paused"}:
            previous["status"] = "revoked"
        model.consents.append({
            "pk": consent.pk, "farmer": index, "partner": partner, "categories": set(categories), "status": "active",
            "starts": starts, "expires": starts.astimezone(SHANGHAI) + relativedelta(months=months),
            "version": model.text_version,
        })
    elif kind in {"pause", "resume", "revoke"}:
        if not model.consents:
            return
        target = model.consents[operation[1] % len(model.consents)]
        service = {"pause": consent_pause, "resume": consent_resume, "revoke": consent_revoke}[kind]
        allowed = {"pause": {"active"}, "resume": {"paused"}, "revoke": {"active", "paused"}}[kind]
        expected_refusal = None
        if target["status"] not in allowed:
            expected_refusal = "invalid_transition"
        elif kind == "resume" and target["version"] != model.text_version:
            expected_refusal = "text_outdated"
        consent = Consent.objects.get(pk=target["pk"])
        if expected_refusal:
            with pytest.raises(ValidationError) as caught:
                service(consent=consent, actor="farmer")
            assert caught.value.code == expected_refusal
            return
        service(consent=consent, actor="farmer")
        target["status"] = {"pause": "paused", "resume": "active", "revoke": "revoked"}[kind]
    elif kind == "expire":
        day = model.today + dt.timedelta(days=operation[1])
        due = [c for c in model.consents if c["status"] in {"active", "paused"} and c["expires"] < day_end(day)]
        assert consents_expire(business_date=day) == {"expired": len(due)}
        for consent in due:
            consent["status"] = "expired"
    else:
        consent_text_publish(purpose_code="credit", text_zh="新版本", text_en="new version")
        model.text_version += 1


@settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=operations, single_day=st.sampled_from(CHECK_OFFSETS))
# Histories every run must include, whatever the random draw.
@example(history=[("grant", 0, "mybank", frozenset({"land_contract"}), 0, 1), ("pause", 0)], single_day=0)
@example(history=[("grant", 0, "mybank", frozenset({"land_contract"}), 0, 1), ("publish",)], single_day=0)
@example(
    history=[("grant", 1, "mybank", frozenset(CONSENTABLE), 1, 1), ("expire", 35), ("grant", 1, "otherbank", frozenset({"agri_subsidy"}), 0, 2)],
    single_day=3,
)
def test_gate_admits_exactly_what_the_consent_history_allows(world, history, single_day):
    farmers, partners = world["farmers"], world["partners"]
    with transaction.atomic():
        now = timezone.now()
        model = Model(
            today=timezone.localdate(now),
            text_version=ConsentText.objects.filter(purpose_code="credit").latest("version").version,
        )
        for operation in history:
            apply(model, operation, farmers, partners, now)
        for consent in model.consents:
            outdated = " on an outdated text" if consent["version"] != model.text_version else ""
            event(f"a consent {consent['status']}{outdated}")

        # Fixed days plus each consent's first and last day and the days just outside them.
        days = {model.today + dt.timedelta(days=offset) for offset in CHECK_OFFSETS}
        for consent in model.consents:
            first, after_last = consent["starts"].astimezone(SHANGHAI).date(), consent["expires"].date()
            days |= {first - dt.timedelta(days=1), first, after_last - dt.timedelta(days=1), after_last}
        for partner in PARTNERS:
            for day in sorted(days):
                result = batch_gate(partner=partners[partner], categories=AGREEMENTS[partner], business_date=day, job=JOB, purpose="credit")
                admitted = model.admitted(partner, day)
                gated_farmers, gated_records = gated()
                assert gated_farmers == {farmers[i].pk for i in admitted}
                assert set(gated_records) == model.records(partner, day, farmers)
                # Spelled out: no record of a farmer or a consent-bound category the model does not admit.
                by_pk = {farmers[i].pk: categories for i, categories in admitted.items()}
                assert all(
                    f in by_pk and (code == "dishonest_debtor" or code in by_pk[f]) for f, code, *_rest in gated_records
                )
                assert (result.farmer_count, result.record_count) == (len(admitted), len(gated_records))
                assert AccessLog.objects.get(pk=result.access_log_id).farmer_count == len(admitted)

            day = model.today + dt.timedelta(days=single_day)
            expected = model.records(partner, day, farmers)
            for farmer in farmers:
                found = farmer_records(
                    farmer=farmer, partner=partners[partner], categories=AGREEMENTS[partner], business_date=day,
                    accessor_type="partner", accessor=partner, purpose="credit",
                )
                assert {
                    (farmer.pk, code, r["record_key"], r["as_of_date"], json.dumps(r["data"], sort_keys=True))
                    for code, rows in found.items() for r in rows
                } == {record for record in expected if record[0] == farmer.pk}
        transaction.set_rollback(True)
