"""Credit features from the consent gate's tables: exact values per feature as of the business
date, what the gate keeps out (no consent, categories not consented, versions after D), the
repayment-history cut-off used for training, and the extra columns the nightly batch reads.

The helpers at the top (records, the credit agreement) are shared with the nightly-batch tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from decimal import Decimal

import numpy as np
import pytest
from dateutil.relativedelta import relativedelta
from django.utils import timezone

from data_sharing.catalog import CREDIT_PURPOSE
from data_sharing.gate import batch_gate
from data_sharing.models import DataCategory, GovernmentRecord, ImportBatch
from loans.features import ELIGIBILITY_CATEGORIES, EXTRA_COLUMNS, FEATURE_CATEGORIES, assessment_inputs, feature_columns
from loans.models import CreditLine, CreditOutcome
from loans.scorecard import FEATURE_NAMES
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.data_sharing.test_consent import grant, make_agreement, make_partner

CREDIT_CATEGORIES = sorted(FEATURE_CATEGORIES + ELIGIBILITY_CATEGORIES)
CONSENTABLE = sorted(FEATURE_CATEGORIES)


def add_record(farmer, code: str, key: str, data: dict, *, as_of: dt.date) -> GovernmentRecord:
    """One government record as an import would store it (decimals and dates as strings)."""
    category = DataCategory.objects.get(code=code)
    batch = ImportBatch.objects.create(
        category=category, source=ImportBatch.Source.SYNTHETIC,
        content_sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(), as_of_date=as_of, submitted_by="test",
    )
    return GovernmentRecord.objects.create(
        category=category, farmer=farmer, record_key=key, as_of_date=as_of, data=data, batch=batch
    )


def add_outcome(farmer, *, closed_on: dt.date, max_days_past_due: int, principal: str = "10000.00") -> CreditOutcome:
    return CreditOutcome.objects.create(
        farmer=farmer, started_on=closed_on - dt.timedelta(days=180), closed_on=closed_on,
        principal=Decimal(principal), max_days_past_due=max_days_past_due, bad=max_days_past_due >= 90,
    )


def credit_partner(code: str = "mybank"):
    """A lending partner with an agreement covering every category the assessment reads."""
    partner = make_partner(code, f"{code} 银行")
    make_agreement(partner, categories=CREDIT_CATEGORIES)
    return partner


def born(day: dt.date, *, years: int, days: int = 0) -> dt.date:
    """The birth date of someone who turns ``years`` on ``day`` (plus ``days`` later)."""
    return day - relativedelta(years=years) + dt.timedelta(days=days)


def farmer_born(birth: dt.date, seq: int, name: str = "农户"):
    return make_farmer(name=name, id_number=valid_id_number(birth=birth, seq=seq))


def completed_years(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def gate(partner, day: dt.date) -> None:
    batch_gate(partner=partner, categories=CREDIT_CATEGORIES, business_date=day, job="test:features", purpose=CREDIT_PURPOSE)


@pytest.fixture
def world(lankao):
    with in_county(lankao):
        day = timezone.localdate()
        yield {"day": day, "year": day.year, "partner": credit_partner()}


def test_features_are_computed_as_of_the_business_date_from_admitted_records_only(world):
    day, year, partner = world["day"], world["year"], world["partner"]
    ago = lambda days: day - dt.timedelta(days=days)  # noqa: E731

    full = farmer_born(dt.date(1980, 5, 17), 701, "全")
    grant(full, partner, CONSENTABLE)
    # Land contracts: C1's newest version by D counts (not the one dated after D); C2 ended
    # the day before D; C3 ends on D and still counts.  6.50 + 2.25 = 8.75 own.
    add_record(full, "land_contract", "C1", {"contract_no": "C1", "parcels": 3, "area_mu": "6.00"}, as_of=ago(10))
    add_record(full, "land_contract", "C1", {"contract_no": "C1", "parcels": 3, "area_mu": "6.50"}, as_of=ago(2))
    add_record(full, "land_contract", "C1", {"contract_no": "C1", "parcels": 9, "area_mu": "99.00"}, as_of=day + dt.timedelta(days=5))
    add_record(full, "land_contract", "C2", {"contract_no": "C2", "parcels": 1, "area_mu": "3.00", "term_end": ago(1).isoformat()}, as_of=ago(10))
    add_record(full, "land_contract", "C3", {"contract_no": "C3", "parcels": 1, "area_mu": "2.25", "term_end": day.isoformat()}, as_of=ago(10))
    # Transfers running on D: T1 in 4.00, T2 out 1.25; T3 ended, T4 not started.  → 11.50 mu.
    transfer = {"annual_rent_yuan": "800.00"}
    add_record(full, "land_transfer", "T1", {**transfer, "contract_no": "T1", "direction": "in", "area_mu": "4.00", "start_date": ago(30).isoformat(), "term_months": 12}, as_of=ago(5))
    add_record(full, "land_transfer", "T2", {**transfer, "contract_no": "T2", "direction": "out", "area_mu": "1.25", "start_date": ago(400).isoformat(), "term_months": 24}, as_of=ago(5))
    add_record(full, "land_transfer", "T3", {**transfer, "contract_no": "T3", "direction": "in", "area_mu": "10.00", "start_date": ago(800).isoformat(), "term_months": 12}, as_of=ago(5))
    add_record(full, "land_transfer", "T4", {**transfer, "contract_no": "T4", "direction": "in", "area_mu": "5.00", "start_date": (day + dt.timedelta(days=3)).isoformat(), "term_months": 12}, as_of=ago(5))
    # Insurance: this year 5 + 2 = 7 mu, last year 9 mu (the larger counts), older ignored.
    policy = {"crop": "wheat", "sum_insured_yuan": "4000.00"}
    add_record(full, "agri_insurance", "P1", {**policy, "policy_no": "P1", "year": year, "insured_area_mu": "5.00"}, as_of=ago(5))
    add_record(full, "agri_insurance", "P2", {**policy, "policy_no": "P2", "year": year, "insured_area_mu": "2.00"}, as_of=ago(5))
    add_record(full, "agri_insurance", "P3", {**policy, "policy_no": "P3", "year": year - 1, "insured_area_mu": "9.00"}, as_of=ago(5))
    add_record(full, "agri_insurance", "P4", {**policy, "policy_no": "P4", "year": year - 2, "insured_area_mu": "20.00"}, as_of=ago(5))
    # Subsidies: this year 300.00 + 150.50, last year 420.00 → 450.50.
    add_record(full, "agri_subsidy", f"{year}|arable_land", {"year": year, "kind": "arable_land", "amount_yuan": "300.00"}, as_of=ago(5))
    add_record(full, "agri_subsidy", f"{year}|grain", {"year": year, "kind": "grain", "amount_yuan": "150.50"}, as_of=ago(5))
    add_record(full, "agri_subsidy", f"{year - 1}|arable_land", {"year": year - 1, "kind": "arable_land", "amount_yuan": "420.00"}, as_of=ago(5))
    add_record(full, "social_insurance", "resident_pension", {"scheme": "resident_pension", "enrolled": True, "contribution_years": 7}, as_of=ago(5))
    add_record(full, "social_insurance", "medical", {"scheme": "medical", "enrolled": True, "contribution_years": 3}, as_of=ago(5))
    add_record(full, "coop_membership", "COOP1", {"cooperative_code": "COOP1", "cooperative_name": "红庙种植合作社", "joined_on": ago(100).isoformat()}, as_of=ago(5))
    add_record(full, "poverty_monitoring", "lifted", {"status": "lifted", "since_year": year - 3}, as_of=ago(5))
    add_record(full, "dishonest_debtor", "(2025)豫0225执1号", {"case_no": "(2025)豫0225执1号", "court": "兰考县人民法院", "listed_on": ago(50).isoformat(), "removed_on": ago(10).isoformat()}, as_of=ago(5))
    add_outcome(full, closed_on=ago(300), max_days_past_due=0)
    add_outcome(full, closed_on=ago(200), max_days_past_due=0)
    add_outcome(full, closed_on=ago(100), max_days_past_due=12)

    empty = farmer_born(dt.date(1990, 1, 2), 702, "空")
    grant(empty, partner, CONSENTABLE)

    outsider = farmer_born(dt.date(1975, 3, 4), 703, "未授权")
    add_record(outsider, "land_contract", "X1", {"contract_no": "X1", "parcels": 1, "area_mu": "50.00"}, as_of=ago(5))

    # Consented to land only: the insurance, the entity and the monitoring stay in the county;
    # the court's list needs no consent and is read for every admitted farmer.
    partial = farmer_born(dt.date(1970, 12, 31), 704, "部分")
    grant(partial, partner, ["land_contract"])
    add_record(partial, "land_contract", "L1", {"contract_no": "L1", "parcels": 2, "area_mu": "20.00"}, as_of=ago(5))
    add_record(partial, "agri_insurance", "P9", {**policy, "policy_no": "P9", "year": year, "insured_area_mu": "20.00"}, as_of=ago(5))
    add_record(partial, "business_entity", "FF1", {"registration_no": "FF1", "entity_type": "family_farm", "entity_name": "家庭农场", "registered_on": ago(30).isoformat()}, as_of=ago(5))
    add_record(partial, "poverty_monitoring", "monitored", {"status": "monitored", "since_year": year}, as_of=ago(5))
    add_record(partial, "dishonest_debtor", "(2025)豫0225执2号", {"case_no": "(2025)豫0225执2号", "court": "兰考县人民法院", "listed_on": ago(3).isoformat()}, as_of=ago(5))

    organised = farmer_born(dt.date(1985, 7, 8), 705, "合作")
    grant(organised, partner, CONSENTABLE)
    add_record(organised, "business_entity", "FF2", {"registration_no": "FF2", "entity_type": "family_farm", "entity_name": "家庭农场", "registered_on": ago(5).isoformat()}, as_of=ago(5))
    add_record(organised, "poverty_monitoring", "monitored", {"status": "monitored", "since_year": year}, as_of=ago(5))

    gate(partner, day)
    farmer_ids, columns = feature_columns(business_date=day)

    assert farmer_ids.dtype == np.int64
    assert farmer_ids.tolist() == sorted([full.pk, empty.pk, partial.pk, organised.pk])
    assert list(columns) == list(FEATURE_NAMES)
    rows = {int(farmer_id): {name: columns[name][i] for name in FEATURE_NAMES} for i, farmer_id in enumerate(farmer_ids)}
    assert rows[full.pk] == {
        "operated_area_mu": 11.5, "insured_share": 0.7826, "subsidy_yuan": 450.5, "social_insurance_years": 7.0,
        "organized": 1.0, "poverty_monitored": 0.0, "repaid_loans": 2.0, "max_days_past_due": 12.0,
        "age": float(completed_years(dt.date(1980, 5, 17), day)),
    }
    assert rows[empty.pk] == {
        "operated_area_mu": 0.0, "insured_share": 0.0, "subsidy_yuan": 0.0, "social_insurance_years": 0.0,
        "organized": 0.0, "poverty_monitored": 0.0, "repaid_loans": 0.0, "max_days_past_due": 0.0,
        "age": float(completed_years(dt.date(1990, 1, 2), day)),
    }
    assert rows[partial.pk] == {
        "operated_area_mu": 20.0, "insured_share": 0.0, "subsidy_yuan": 0.0, "social_insurance_years": 0.0,
        "organized": 0.0, "poverty_monitored": 0.0, "repaid_loans": 0.0, "max_days_past_due": 0.0,
        "age": float(completed_years(dt.date(1970, 12, 31), day)),
    }
    assert rows[organised.pk]["organized"] == 1.0
    assert rows[organised.pk]["poverty_monitored"] == 1.0

    # The training sample's cut-off: loans closed after it are not history yet.
    _ids, before = feature_columns(business_date=day, exclude_outcomes_after=day - dt.timedelta(days=150))
    index = farmer_ids.tolist().index(full.pk)
    assert (before["repaid_loans"][index], before["max_days_past_due"][index]) == (2.0, 0.0)


def test_nightly_inputs_add_the_court_list_and_the_current_line(world):
    day, partner = world["day"], world["partner"]
    listed = farmer_born(dt.date(1980, 1, 1), 711, "失信")
    removed = farmer_born(dt.date(1980, 1, 1), 712, "移出")
    later = farmer_born(dt.date(1980, 1, 1), 713, "将列入")
    for farmer in (listed, removed, later):
        grant(farmer, partner, CONSENTABLE)
    court = {"court": "兰考县人民法院"}
    add_record(listed, "dishonest_debtor", "A", {**court, "case_no": "A", "listed_on": day.isoformat()}, as_of=day)
    add_record(removed, "dishonest_debtor", "B", {**court, "case_no": "B", "listed_on": "2020-01-01", "removed_on": day.isoformat()}, as_of=day)
    add_record(later, "dishonest_debtor", "C", {**court, "case_no": "C", "listed_on": (day + dt.timedelta(days=1)).isoformat()}, as_of=day)
    CreditLine.objects.create(
        farmer=listed, amount=Decimal("12300.00"), outstanding_principal=Decimal("4567.89"), grade="B",
        annual_rate=Decimal("0.06"), valid_until=day, status="suspended", suspension="overdue", business_date=day,
    )
    CreditLine.objects.create(
        farmer=removed, amount=Decimal("5000.00"), grade="A", annual_rate=Decimal("0.05"), valid_until=day, business_date=day,
    )

    gate(partner, day)
    farmer_ids, columns = assessment_inputs(business_date=day)

    assert list(columns) == list(FEATURE_NAMES) + list(EXTRA_COLUMNS)
    table = {name: columns[name].tolist() for name in EXTRA_COLUMNS}
    assert farmer_ids.tolist() == [listed.pk, removed.pk, later.pk]
    assert table == {
        "dishonest_listed": [1.0, 0.0, 0.0],
        "line_exists": [1.0, 1.0, 0.0],
        "line_amount_fen": [1230000.0, 500000.0, -1.0],
        "outstanding_fen": [456789.0, 0.0, 0.0],
        "line_active": [0.0, 1.0, 0.0],
        "overdue": [1.0, 0.0, 0.0],
    }


def test_no_gated_farmers_gives_empty_columns(world):
    gate(world["partner"], world["day"])
    farmer_ids, columns = feature_columns(business_date=world["day"])
    assert farmer_ids.tolist() == []
    assert {name: column.tolist() for name, column in columns.items()} == {name: [] for name in FEATURE_NAMES}
