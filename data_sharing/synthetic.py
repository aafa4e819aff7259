"""Synthetic government data, consents and credit history for a synthetic county roster.

Builds on :func:`counties.synthetic.generate_county_data`: given its :class:`GenerationReport`
(the plaintext roster and the database ids aligned with it), :func:`government_data_generate`
writes, in one transaction and with PostgreSQL COPY,

* every data category's records, one :class:`~data_sharing.models.ImportBatch` (source
  ``synthetic``) per category, in exactly the normalised form the department importer writes
  (:mod:`data_sharing.imports`): decimals as strings with the schema's places, dates ISO,
  booleans true/false, choices by value, every schema field present (``null`` when absent), and
  ``record_key`` = the key fields' values joined with ``|``;
* the demo lending partner ``puhui-bank`` and the county's data-sharing agreement with it;
* consents of most farmers (some since revoked, paused or expired), each with its signed
  receipt and its append-only events;
* past loans (:class:`loans.models.CreditOutcome`) whose outcome follows a hidden logistic
  process of the farmer's true situation: labelled history for training and checking the
  scorecard.

The drawing is pure numpy (:func:`government_data_draw`, :func:`consents_draw`,
:func:`credit_history_draw`): the same roster and seed always give the same data. Each part
draws from its own numbered stream (:func:`_stream`), apart from the roster's, so changing or
adding a part leaves every other part's draws alone. The county's code and name enter only the
identifiers and names (contract, policy and case numbers, credit codes, entity and court names).

Calibration (DESIGN.md, "Synthetic county"). Household-level data belongs to the household
head: land contracts for ~95% of households, area lognormal with median ≈ 6 mu and 80% under
10 mu, 1.5% large farms of 50–500 mu; land rented in by ~15% (large farms more often) and out by
~15% (30–100% of their land); last year's arable-land subsidy at a county rate of 80–130 yuan
per contracted mu, plus the grain-grower subsidy for ~40%; crop insurance for 60–85% of the
households farming land; family farms ~2% of households (mostly the large operators),
cooperative founders ~0.5%, agri-businesses ~0.3%; cooperative members 40–47% of households;
poverty-alleviation households 3–10% (85% lifted, 15% monitored). Per farmer: a resident
pension record (~90% enrolled) and the court's dishonest-debtor list (~0.4%). Consents: ~90% of
household heads and ~55% of other adults, of which ~4% since revoked, ~3% expired, ~1% paused.
Loans: ~25% of the consenting heads had 1–3; the bad rate is calibrated to 2.25%.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import repeat
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from numpy.random import PCG64, Generator, SeedSequence
from psycopg.copy import QueuedLibpqWriter

from counties.synthetic import GenerationReport, Roster
from data_sharing import receipts
from data_sharing.catalog import CREDIT_PURPOSE
from data_sharing.consent_selectors import consent_text_current
from data_sharing.gate import agreed_category_codes
from data_sharing.models import (
    Consent,
    ConsentEvent,
    ConsentText,
    DataCategory,
    DataSharingAgreement,
    GovernmentRecord,
    ImportBatch,
)
from data_sharing.pii import mask_id_number
from data_sharing.services import NIGHTLY_ACTOR, agreement_create
from loans.models import CreditOutcome
from platform.bulk import rebuilt_after_load
from platform.models import County, LendingPartner

DEMO_PARTNER_CODE = "puhui-bank"
DEMO_PARTNER_NAME = "普惠合作银行"
SUBMITTED_BY = "system:synthetic"

# Each part draws from its own stream. The roster's are spawn keys (0,) … (5,); these are
# (1000, i), so neither side can ever meet the other's. A part's position is its seed: append
# new parts, never reorder.
_STREAM_BASE = 1000
_STREAMS = (
    "land", "transfer", "subsidy", "insurance", "social_insurance", "entities", "cooperatives", "poverty",
    "risk", "debtors", "consents", "receipts", "credit",
)


def _stream(seed: int, part: str) -> Generator:
    return Generator(PCG64(SeedSequence(seed, spawn_key=(_STREAM_BASE, _STREAMS.index(part)))))


# --- Calibration ---------------------------------------------------------------------------

_LAND_SHARE = 0.95
# ln(area) = ln 6 + village effect + household effect, sd √(0.3² + 0.45²) = 0.54: with the
# large farms, 80% of the households holding land hold under 10 mu.
_LAND_MEDIAN_MU = 6.0
_LAND_VILLAGE_SD, _LAND_HOUSEHOLD_SD = 0.3, 0.45
_LARGE_FARM_SHARE = 0.015
_LARGE_FARM_MU = (50.0, 500.0)  # log-uniform
_LARGE_FARM_HUNDREDTHS = 5_000
# About one parcel per 2 mu (land was split by quality and distance), capped for large farms.
_MU_PER_PARCEL = 2.0
_MAX_PARCELS = 30
# Second-round contracts (1997–1999, 30 years) end 2027–2029; pilot villages extend them 30 years.
_CONTRACT_END_YEARS = (2027, 2028, 2029)
_CONTRACT_EXTENDED_SHARE = 0.3
_CONTRACT_EXTENSION_YEARS = 30

_TRANSFER_IN_SHARE, _TRANSFER_OUT_SHARE = 0.15, 0.15
_TRANSFER_IN_MEDIAN_MU, _LARGE_TRANSFER_IN_MEDIAN_MU, _MAX_TRANSFER_IN_MU = 10.0, 120.0, 1000.0
_TRANSFER_IN_SD = 0.7
# Some landless or small households become large grain growers (种粮大户) by renting land in.
_BIG_RENTER_SHARE = 0.05
_TRANSFER_OUT_SHARE_OF_LAND = (0.3, 1.0)
_TRANSFER_TERMS_MONTHS = ((12, 0.25), (24, 0.20), (36, 0.25), (60, 0.20), (120, 0.10))
_TRANSFER_MAX_YEARS_BACK = 5
_RENT_YUAN_PER_MU = (400, 1000)

_ARABLE_SUBSIDY_YUAN_PER_MU = (80, 130)  # one county-wide rate
_GRAIN_SUBSIDY_SHARE = 0.40  # of the households with a land contract
_GRAIN_SUBSIDY_YUAN_PER_MU = (10, 30)

_INSURANCE_ENROLMENT = (0.62, 0.83)  # county rate among the households farming land
_INSURED_SHARE_OF_LAND = (0.6, 1.0)
# Crop (catalog value), weight, typical sum insured per mu (yuan).
_CROPS = (
    ("wheat", 0.35, 450), ("corn", 0.25, 420), ("rice", 0.15, 520), ("peanut", 0.10, 560),
    ("soybean", 0.05, 400), ("tea", 0.03, 950), ("other", 0.07, 600),
)
_SUM_INSURED_PER_MU = (400, 1000)

# Resident pension enrolment under 30 / from 30: about 90% overall. Contribution years count
# from age 16 and from the start of the rural resident pension (新农保, 2009), stop at 60, at most
# 45 — as the default scorecard's training sample assumes (loans/default_scorecard_build.py).
_PENSION_ENROLMENT = (0.80, 0.93)
_PENSION_FIRST_YEAR = 2009
_CONTRIBUTION_AGES = (16, 60)
_MAX_CONTRIBUTION_YEARS = 45
_LAPSED_WITH_YEARS_SHARE = 0.4  # of those not enrolled: paid some years, then stopped

_FAMILY_FARM_SHARE, _COOPERATIVE_FOUNDER_SHARE, _BUSINESS_SHARE = 0.02, 0.005, 0.003
_ENTITY_FIRST_DAYS = {  # registrations start with the policy: 合作社法 2007, family farms 2013
    "family_farm": dt.date(2014, 1, 1), "cooperative": dt.date(2008, 7, 1), "registered_business": dt.date(2010, 1, 1),
}
_COOPERATIVE_MEMBERSHIP = (0.40, 0.47)  # county rate of households
_NAME_WORDS = tuple("兴农 惠民 丰收 富民 金穗 绿源 众鑫 鑫达 宏达 助农 福康 沃土".split())
_COOPERATIVE_KINDS = ("种植", "种植", "种植", "养殖", "农机", "种养")
_BUSINESS_KINDS = ("农业发展有限公司", "农业科技有限公司", "农产品有限公司", "生态农业有限公司")

_POVERTY_SHARE = (0.03, 0.10)  # county rate of households
_POVERTY_MONITORED_SHARE = 0.15
_POVERTY_LIFTED_YEARS = (2014, 2020)  # 脱贫攻坚
_MONITORING_FROM_YEAR = 2020  # 防返贫动态监测

_DISHONEST_SHARE = 0.004
_DISHONEST_REMOVED_SHARE = 0.25
_DISHONEST_LISTED_DAYS_BACK = (30, 5 * 365)

_CONSENT_SHARE_HEADS, _CONSENT_SHARE_OTHERS = 0.90, 0.55
_REVOKED_SHARE, _EXPIRED_SHARE, _PAUSED_SHARE = 0.04, 0.03, 0.01
_CONSENT_MONTHS = 12
_CONSENT_SPREAD_DAYS = 335  # granted over the last 11 months: all still within their 12
_EXPIRED_DAYS_BACK = (2, 60)  # expired this long before as_of, so a nightly run has seen it
# The agreement has run for 14 months: the consents that have expired were granted under it.
_AGREEMENT_MONTHS_BEFORE, _AGREEMENT_MONTHS_AFTER = 14, 36
# Self-service needs the farmer's own phone; the others consent at the village service point.
_SELF_SHARE_WITH_PHONE = 0.82
_AGENT_AGES = (25, 55)
_DATA_LIFE_DAYS = 180
_WAKING_HOURS = (7, 22)
_NIGHTLY_HOUR = 2

_BORROWER_SHARE = 0.25  # of the consenting household heads
_LOANS_PER_BORROWER = (0.55, 0.30, 0.15)  # 1, 2, 3 loans
_LOAN_MONTHS_BACK = (48, 12)  # started between 4 years and 1 year before as_of
_LOAN_TERM_MONTHS = (6, 12)
_PRINCIPAL_YUAN = (5_000, 80_000)
_PRINCIPAL_MEDIAN_YUAN, _PRINCIPAL_SD = 12_000, 0.5
_BAD_RATE_TARGET = 0.0225
_BAD_RATE_BOUNDS = (0.015, 0.03)
# Below this many loans one loan more or less moves the rate by more than the bounds allow.
_MIN_LOANS_FOR_RATE_CHECK = 100
_LATE_DAYS = (1, 60)
_BAD_DAYS = (90, 400)
# The hidden process: log-odds of a loan going bad, before the calibrated intercept. Little
# land, little insurance, short social insurance, no cooperative, poverty, the very young and
# old, a large loan, an earlier delay or default, and a latent risk no record shows raise it.
_RISK = {
    "log1p_operated_mu": -0.45,
    "insured_share": -0.9,
    "social_insurance_years": -0.04,
    "organized": -0.5,
    "poverty_lifted": 0.3,
    "poverty_monitored": 1.0,
    "age_from_45_squared": 0.0008,
    "log_principal_over_20k": 0.2,
    "latent": 0.8,
    "earlier_late": 0.8,
    "earlier_bad": 2.0,
}

# Records per COPY chunk: ~10 MB of text (numpy builds it in UCS-4 first, four times that),
# sent by psycopg's writer thread while the next chunk is rendered.
_CHUNK_ROWS = 50_000

# GB/T 2260 province prefix → the province's one-character name, as in court case numbers.
_PROVINCE_SHORT = dict(
    pair.split(":")
    for pair in (
        "11:京 12:津 13:冀 14:晋 15:蒙 21:辽 22:吉 23:黑 31:沪 32:苏 33:浙 34:皖 35:闽 36:赣 37:鲁 41:豫 42:鄂"
        " 43:湘 44:粤 45:桂 46:琼 50:渝 51:川 52:黔 53:滇 54:藏 61:陕 62:甘 63:青 64:宁 65:新 71:台 81:港 82:澳"
    ).split()
)

# GB 32100 unified social credit code: 31 characters (no I, O, S, V, Z), position i weighs
# 3^i mod 31, check = (31 − sum mod 31) mod 31. Positions 9–17 are a GB 11714 organisation code
# (letters valued A=10 … Z=35, weights below, check 11 − sum mod 11, 10 written X, 11 as 0);
# codes issued since 2015 start it with MA.
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = np.array([pow(3, i, 31) for i in range(17)], dtype=np.int64)
_ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ORG_VALUES = np.array([int(c) if c.isdigit() else ord(c) - 55 for c in _USCC_CHARS], dtype=np.int64)
# Registration authority 9 (market regulation) + type: 2 sole proprietorship (most family
# farms), 3 farmers' cooperative, 1 enterprise.
_ENTITY_TYPES = ("family_farm", "cooperative", "registered_business")
_ENTITY_CODE_TYPE = np.array([2, 3, 1], dtype=np.int64)

_DAY = 86_400
_EPOCH_DAY = dt.date(1970, 1, 1)


# --- What is drawn -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CategoryRecords:
    """One category's records as columns. ``farmer`` is each record's roster row; ``columns``
    maps field names to values (string and choice: str, integer: int64, decimal: int64
    hundredths, date: datetime64[D], boolean: bool); ``present`` marks, for an optional field,
    the records that have a value (the others are null)."""

    code: str
    farmer: np.ndarray
    columns: dict[str, np.ndarray]
    present: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.farmer)


@dataclass(frozen=True, eq=False)
class Truth:
    """What is true of each household (aligned with the roster's households) and farmer; the
    records were drawn from it. Areas and money are int64 hundredths (of a mu, of a yuan)."""

    own_area: np.ndarray
    transfer_in_area: np.ndarray
    transfer_out_area: np.ndarray
    insured_area: np.ndarray
    subsidy: np.ndarray  # last year's total
    organized: np.ndarray  # cooperative member, or a registered family farm, cooperative or business
    poverty: np.ndarray  # 0 none, 1 lifted, 2 monitored
    social_insurance_years: np.ndarray  # per farmer
    latent_risk: np.ndarray  # per farmer, in no record
    dishonest: np.ndarray  # per farmer, on the list as of the roster date

    @property
    def operated_area(self) -> np.ndarray:
        return self.own_area + self.transfer_in_area - self.transfer_out_area

    @property
    def insured_share(self) -> np.ndarray:
        operated = self.operated_area
        return np.where(operated > 0, self.insured_area / np.maximum(operated, 1), 0.0)


@dataclass(frozen=True, eq=False)
class GovernmentData:
    records: dict[str, CategoryRecords]  # by category code
    truth: Truth


@dataclass(frozen=True, eq=False)
class Consents:
    """One consent per consenting farmer, as columns. Instants are int64 epoch seconds;
    ``changed_at`` is the later event's (revoked, paused, expired), -1 for none; ``agent`` is the
    roster row of the villager who assisted, -1 for self-service."""

    farmer: np.ndarray
    status: np.ndarray
    starts_at: np.ndarray
    expires_at: np.ndarray
    agent: np.ndarray
    changed_at: np.ndarray
    receipt_id: np.ndarray  # str: a UUID in version-4 form, drawn (reproducible)

    def __len__(self) -> int:
        return len(self.farmer)

    @property
    def self_service(self) -> np.ndarray:
        return self.agent < 0


@dataclass(frozen=True, eq=False)
class CreditHistory:
    farmer: np.ndarray  # roster row
    started_on: np.ndarray  # datetime64[D]
    closed_on: np.ndarray
    principal: np.ndarray  # int64 yuan
    max_days_past_due: np.ndarray
    bad: np.ndarray
    intercept: float  # of the hidden process, as calibrated

    def __len__(self) -> int:
        return len(self.farmer)

    @property
    def bad_rate(self) -> float:
        return float(self.bad.mean()) if len(self.bad) else 0.0


# --- numpy helpers -------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrated(score: np.ndarray, share: float, eligible: np.ndarray | None = None) -> np.ndarray:
    """Probabilities sigmoid(a + score) on the ``eligible`` rows (0 on the others), with ``a``
    solved so that they add up to ``share`` of all rows (Newton steps kept inside a shrinking
    bracket: a handful of passes over the rows)."""
    eligible = np.ones(len(score), dtype=bool) if eligible is None else eligible
    scores = score[eligible]
    target = share * len(score)
    probability = np.zeros(len(score))
    if target >= len(scores):
        probability[eligible] = 1.0
        return probability
    low, high, intercept = -60.0, 60.0, 0.0
    for _ in range(100):
        p = _sigmoid(intercept + scores)
        error = p.sum() - target
        if abs(error) <= 1e-9 * max(target, 1.0):
            break
        if error < 0:
            low = intercept
        else:
            high = intercept
        slope = (p * (1 - p)).sum()
        step = intercept - error / slope if slope > 0 else low - 1
        intercept = step if low < step < high else (low + high) / 2
    probability[eligible] = _sigmoid(intercept + scores)
    return probability


def _integers(rng: Generator, low, high, size: int) -> np.ndarray:
    """Integers uniform in [low, high], both inclusive and element-wise."""
    low, high = np.asarray(low), np.asarray(high)
    return (low + np.floor(rng.random(size) * (high - low + 1))).astype(np.int64)


def _days(count) -> np.ndarray:
    return np.asarray(count, dtype=np.int64).astype("timedelta64[D]")


def _add_months(days, months) -> np.ndarray:
    """The same day ``months`` calendar months later, clamped to the month's end, as
    :func:`data_sharing.services.add_months` does (31 Jan + 1 → 28/29 Feb)."""
    days = np.asarray(days, dtype="datetime64[D]")
    month = days.astype("datetime64[M]")
    target = month + np.asarray(months, dtype=np.int64).astype("timedelta64[M]")
    last = (target + 1).astype("datetime64[D]") - np.timedelta64(1, "D")
    return np.minimum(target.astype("datetime64[D]") + (days - month.astype("datetime64[D]")), last)


def _year(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[Y]").astype(np.int64) + 1970


def _hundredths(values: np.ndarray) -> np.ndarray:
    """Areas or amounts as int64 hundredths, at least 0.01."""
    return np.maximum(np.rint(values * 100), 1).astype(np.int64)


def _join(*parts) -> np.ndarray:
    joined = parts[0]
    for part in parts[1:]:
        joined = np.strings.add(joined, part)
    return joined


def _serials(count: int, width: int) -> np.ndarray:
    """1, 2, … zero-padded to ``width`` digits (np.strings.zfill refuses an empty array)."""
    return np.array([f"{serial:0{width}d}" for serial in range(1, count + 1)], dtype=f"<U{width}")


def _choose(rng: Generator, choices, size: int) -> np.ndarray:
    return np.asarray(choices)[rng.integers(0, len(choices), size)]


def _records(code: str, farmer: np.ndarray, columns: dict, present: dict | None = None) -> CategoryRecords:
    return CategoryRecords(code=code, farmer=np.asarray(farmer, dtype=np.int64), columns=columns, present=present or {})


# --- Drawing the government data (pure numpy) ----------------------------------------------


def government_data_draw(*, roster: Roster, seed: int, county_name: str) -> GovernmentData:
    """Every category's records for ``roster``, and the truth they record. No database access."""
    head = np.flatnonzero(roster.farmer_is_head)  # roster row of each household's head
    age = roster.farmer_age
    land, own = _land(_stream(seed, "land"), roster, head)
    transfer, rented_in, rented_out = _transfers(_stream(seed, "transfer"), roster, head, own, age[head])
    operated = own + rented_in - rented_out
    subsidy, subsidy_total = _subsidies(_stream(seed, "subsidy"), roster, head, own, operated)
    insurance, insured = _insurance(_stream(seed, "insurance"), roster, head, operated)
    pension, pension_years = _social_insurance(_stream(seed, "social_insurance"), roster, age)
    entities, entity_type = _entities(_stream(seed, "entities"), roster, head, operated, county_name)
    cooperatives, member = _cooperatives(_stream(seed, "cooperatives"), roster, head, operated, entity_type, entities)
    poverty, poverty_status = _poverty(_stream(seed, "poverty"), roster, head, operated, age[head])
    latent = _stream(seed, "risk").normal(0.0, 1.0, len(age))
    debtors, dishonest = _debtors(_stream(seed, "debtors"), roster, latent, county_name)
    truth = Truth(
        own_area=own, transfer_in_area=rented_in, transfer_out_area=rented_out, insured_area=insured,
        subsidy=subsidy_total, organized=member | (entity_type >= 0), poverty=poverty_status,
        social_insurance_years=pension_years, latent_risk=latent, dishonest=dishonest,
    )
    records = (land, transfer, subsidy, insurance, pension, entities, cooperatives, poverty, debtors)
    return GovernmentData(records={category.code: category for category in records}, truth=truth)


def _land(rng: Generator, roster: Roster, head: np.ndarray) -> tuple[CategoryRecords, np.ndarray]:
    households, villages = len(head), len(roster.village_code)
    has_land = rng.random(households) < _LAND_SHARE
    village_effect = rng.normal(0.0, _LAND_VILLAGE_SD, villages)[roster.household_village]
    area = np.exp(np.log(_LAND_MEDIAN_MU) + village_effect + rng.normal(0.0, _LAND_HOUSEHOLD_SD, households))
    large = rng.random(households) < _LARGE_FARM_SHARE
    low, high = np.log(_LARGE_FARM_MU)
    area = np.where(large, np.exp(low + rng.random(households) * (high - low)), area)
    area_mu = _hundredths(area)
    parcels = np.minimum(1 + np.floor(area_mu / 100 / _MU_PER_PARCEL * rng.uniform(0.7, 1.3, households)), _MAX_PARCELS)
    end_year = _choose(rng, _CONTRACT_END_YEARS, villages)
    extended = (rng.random(villages) < _CONTRACT_EXTENDED_SHARE) | (end_year < roster.as_of.year)
    end_year = (end_year + extended * _CONTRACT_EXTENSION_YEARS)[roster.household_village]
    term_end = (end_year - 1970 + 1).astype("datetime64[Y]").astype("datetime64[D]") - np.timedelta64(1, "D")
    # 土地承包经营权证 number: village (12 digits) + group 组 (2) + household (4) + J (family contract).
    serial = roster.household_code % 10_000
    group = np.minimum(1 + (serial - 1) // 40, 99)
    contract_no = np.strings.add(
        ((roster.village_code[roster.household_village] * 100 + group) * 10_000 + serial).astype(str), "J"
    )
    rows = np.flatnonzero(has_land)
    own = np.where(has_land, area_mu, 0)
    columns = {
        "contract_no": contract_no[rows], "parcels": parcels[rows].astype(np.int64), "area_mu": area_mu[rows],
        "term_end": term_end[rows],
    }
    return _records("land_contract", head[rows], columns), own


def _transfers(
    rng: Generator, roster: Roster, head: np.ndarray, own: np.ndarray, head_age: np.ndarray
) -> tuple[CategoryRecords, np.ndarray, np.ndarray]:
    households = len(head)
    as_of = np.datetime64(roster.as_of, "D")
    log_own = np.log1p(own / 100)
    # Large farms rent more land in; older heads with little land rent theirs out (the young
    # work in the cities) — a household does one or the other.
    rents_in = rng.random(households) < _calibrated(1.2 * (log_own - np.log1p(_LAND_MEDIAN_MU)), _TRANSFER_IN_SHARE)
    may_rent_out = (own > 0) & ~rents_in
    out_score = 0.04 * (head_age - 50) - 0.5 * (log_own - np.log1p(_LAND_MEDIAN_MU))
    rents_out = rng.random(households) < _calibrated(out_score, _TRANSFER_OUT_SHARE, may_rent_out)
    big = (own >= _LARGE_FARM_HUNDREDTHS) | (rng.random(households) < _BIG_RENTER_SHARE)
    median = np.where(big, _LARGE_TRANSFER_IN_MEDIAN_MU, _TRANSFER_IN_MEDIAN_MU)
    in_mu = np.minimum(median * np.exp(rng.normal(0.0, _TRANSFER_IN_SD, households)), _MAX_TRANSFER_IN_MU)
    out_area = np.maximum(np.floor(own * rng.uniform(*_TRANSFER_OUT_SHARE_OF_LAND, households)), 1).astype(np.int64)
    rented_in = np.where(rents_in, _hundredths(in_mu), 0)
    rented_out = np.where(rents_out, out_area, 0)

    terms, weights = zip(*_TRANSFER_TERMS_MONTHS, strict=True)
    term = np.array(terms)[rng.choice(len(terms), size=households, p=weights)]
    # Started so that the contract still runs on as_of.
    days_back = _integers(rng, 15, np.minimum(term * 30, _TRANSFER_MAX_YEARS_BACK * 365) - 15, households)
    start = as_of - _days(days_back)
    rent_per_mu = np.floor(rng.uniform(_RENT_YUAN_PER_MU[0], _RENT_YUAN_PER_MU[1] + 1, households))
    area = rented_in + rented_out
    rent = np.rint(area * rent_per_mu).astype(np.int64)  # hundredths of a mu x yuan/mu = fen

    rows = np.flatnonzero(rents_in | rents_out)
    columns = {
        "contract_no": _join("LZ", roster.county_code, _year(start[rows]).astype(str), _serials(len(rows), 6)),
        "direction": np.where(rents_in[rows], "in", "out"),
        "area_mu": area[rows],
        "start_date": start[rows],
        "term_months": term[rows].astype(np.int64),
        "annual_rent_yuan": rent[rows],
    }
    return _records("land_transfer", head[rows], columns), rented_in, rented_out


def _subsidies(
    rng: Generator, roster: Roster, head: np.ndarray, own: np.ndarray, operated: np.ndarray
) -> tuple[CategoryRecords, np.ndarray]:
    households = len(head)
    # One rate per county (the province sets it), in fen per mu; amounts in fen.
    arable_rate = np.rint(rng.uniform(*_ARABLE_SUBSIDY_YUAN_PER_MU) * 100)
    grain_rate = np.rint(rng.uniform(*_GRAIN_SUBSIDY_YUAN_PER_MU) * 100)
    has_land = own > 0
    grain_share = _GRAIN_SUBSIDY_SHARE * has_land.sum() / max(households, 1)
    grows_grain = rng.random(households) < _calibrated(0.8 * np.log1p(operated / 100), grain_share, operated > 0)
    arable = np.flatnonzero(has_land)
    grain = np.flatnonzero(grows_grain)
    arable_amount = np.maximum(np.rint(own[arable] * arable_rate / 100), 1).astype(np.int64)
    grain_amount = np.maximum(np.rint(operated[grain] * grain_rate / 100), 1).astype(np.int64)
    household = np.concatenate([arable, grain])
    amount = np.concatenate([arable_amount, grain_amount])
    order = np.argsort(household, kind="stable")
    household, amount = household[order], amount[order]
    kind = np.concatenate([np.full(len(arable), "arable_land"), np.full(len(grain), "grain")])[order]
    columns = {"year": np.full(len(household), roster.as_of.year - 1, dtype=np.int64), "kind": kind, "amount_yuan": amount}
    return _records("agri_subsidy", head[household], columns), np.bincount(household, amount, households).astype(np.int64)


def _insurance(
    rng: Generator, roster: Roster, head: np.ndarray, operated: np.ndarray
) -> tuple[CategoryRecords, np.ndarray]:
    households = len(head)
    farming = operated > 0
    rate = rng.uniform(*_INSURANCE_ENROLMENT)
    share = rate * farming.sum() / max(households, 1)
    insured = rng.random(households) < _calibrated(0.6 * np.log1p(operated / 100), share, farming)
    insured_area = np.maximum(np.floor(operated * rng.uniform(*_INSURED_SHARE_OF_LAND, households)), 1).astype(np.int64)
    crops, weights, per_mu = zip(*_CROPS, strict=True)
    crop = rng.choice(len(crops), size=households, p=weights)
    sum_per_mu = np.clip(np.rint(np.array(per_mu)[crop] * rng.uniform(0.9, 1.1, households)), *_SUM_INSURED_PER_MU)
    rows = np.flatnonzero(insured)
    year = roster.as_of.year
    columns = {
        # The insurer's policy number: product, year, county, serial.
        "policy_no": np.strings.add(f"PZAA{year}{roster.county_code}", _serials(len(rows), 8)),
        "year": np.full(len(rows), year, dtype=np.int64),
        "crop": np.array(crops)[crop[rows]],
        "insured_area_mu": insured_area[rows],
        "sum_insured_yuan": np.rint(insured_area[rows] * sum_per_mu[rows]).astype(np.int64),
    }
    return _records("agri_insurance", head[rows], columns), np.where(insured, insured_area, 0)


def _social_insurance(rng: Generator, roster: Roster, age: np.ndarray) -> tuple[CategoryRecords, np.ndarray]:
    farmers = len(age)
    enrolled = rng.random(farmers) < np.where(age < 30, *_PENSION_ENROLMENT)
    possible = np.minimum(np.minimum(age, _CONTRIBUTION_AGES[1]) - _CONTRIBUTION_AGES[0], roster.as_of.year - _PENSION_FIRST_YEAR)
    possible = np.clip(possible, 0, _MAX_CONTRIBUTION_YEARS)
    paying = np.floor(possible * rng.beta(3.0, 1.5, farmers))
    lapsed = np.where(rng.random(farmers) < _LAPSED_WITH_YEARS_SHARE, np.floor(possible * rng.beta(1.0, 4.0, farmers)), 0)
    years = np.where(enrolled, paying, lapsed).astype(np.int64)
    columns = {"scheme": np.full(farmers, "resident_pension"), "enrolled": enrolled, "contribution_years": years}
    return _records("social_insurance", np.arange(farmers), columns), years


def _credit_codes(rng: Generator, code_type: np.ndarray, county_code: str) -> np.ndarray:
    """Distinct unified social credit codes (GB 32100) with valid check characters: 9 + type,
    region, organisation code MA + 6 drawn characters + its GB 11714 check, the overall check."""
    count = len(code_type)
    chars = np.empty((count, 18), dtype=np.int64)
    chars[:, 0] = 9
    chars[:, 1] = code_type
    chars[:, 2:8] = [int(digit) for digit in county_code]
    chars[:, 8] = _USCC_CHARS.index("M")
    chars[:, 9] = _USCC_CHARS.index("A")
    # Six base-31 digits of numbers drawn without replacement: no two entities share a code.
    serial = rng.choice(len(_USCC_CHARS) ** 6, size=count, replace=False)
    chars[:, 10:16] = serial[:, np.newaxis] // len(_USCC_CHARS) ** np.arange(5, -1, -1) % len(_USCC_CHARS)
    org_check = 11 - (_ORG_VALUES[chars[:, 8:16]] @ _ORG_WEIGHTS) % 11
    chars[:, 16] = np.where(org_check == 10, _USCC_CHARS.index("X"), org_check % 11)
    chars[:, 17] = (31 - (chars[:, :17] @ _USCC_WEIGHTS) % 31) % 31
    letters = np.array(list(_USCC_CHARS))[chars]
    return np.ascontiguousarray(letters).view("<U18").ravel() if count else np.array([], dtype="<U18")


def _entities(
    rng: Generator, roster: Roster, head: np.ndarray, operated: np.ndarray, county_name: str
) -> tuple[CategoryRecords, np.ndarray]:
    """Family farms (mostly the large operators), cooperatives and agri-businesses, one at most
    per household. Returns the records and each household's entity type (index into
    _ENTITY_TYPES, -1 for none); records are in household order."""
    households = len(head)
    log_operated = np.log1p(operated / 100)
    family_farm = rng.random(households) < _calibrated(2.5 * (log_operated - np.log1p(50)), _FAMILY_FARM_SHARE)
    cooperative = rng.random(households) < _calibrated(log_operated, _COOPERATIVE_FOUNDER_SHARE, ~family_farm)
    business = rng.random(households) < _calibrated(0.8 * log_operated, _BUSINESS_SHARE, ~family_farm & ~cooperative)
    if households and not cooperative.any():
        # Even a small roster gets one cooperative, or nobody could be a member of one.
        candidates = np.flatnonzero(~family_farm)
        if len(candidates):
            founder = candidates[np.argmax(operated[candidates])]
            cooperative[founder], business[founder] = True, False
    entity_type = np.select([family_farm, cooperative, business], [0, 1, 2], -1)

    rows = np.flatnonzero(entity_type >= 0)
    kind = entity_type[rows]
    as_of = np.datetime64(roster.as_of, "D")
    first = np.array([np.datetime64(_ENTITY_FIRST_DAYS[name], "D") for name in _ENTITY_TYPES])[kind]
    last = as_of - np.timedelta64(30, "D")
    first = np.minimum(first, last)
    registered_on = first + _days(_integers(rng, 0, (last - first).astype(np.int64), len(rows)))
    village = np.strings.rstrip(roster.village_name[roster.household_village[rows]], "村")
    word = _choose(rng, _NAME_WORDS, len(rows))
    cooperative_kind = _choose(rng, _COOPERATIVE_KINDS, len(rows))
    business_kind = _choose(rng, _BUSINESS_KINDS, len(rows))
    name = np.select(
        [kind == 0, kind == 1],
        [
            _join(county_name, roster.farmer_name[head[rows]], "家庭农场"),
            _join(county_name, village, word, cooperative_kind, "专业合作社"),
        ],
        _join(county_name, village, word, business_kind),
    )
    columns = {
        "registration_no": _credit_codes(rng, _ENTITY_CODE_TYPE[kind], roster.county_code),
        "entity_type": np.array(_ENTITY_TYPES)[kind],
        "entity_name": name,
        "registered_on": registered_on,
    }
    return _records("business_entity", head[rows], columns), entity_type


def _cooperatives(
    rng: Generator,
    roster: Roster,
    head: np.ndarray,
    operated: np.ndarray,
    entity_type: np.ndarray,
    entities: CategoryRecords,
) -> tuple[CategoryRecords, np.ndarray]:
    """Members join a cooperative of their village, else of their township, else any; the
    founders of the county's cooperatives are members of their own."""
    households = len(head)
    entity_household = np.flatnonzero(entity_type >= 0)
    is_cooperative = entities.columns["entity_type"] == "cooperative"
    founder = entity_household[is_cooperative]
    coop_code = entities.columns["registration_no"][is_cooperative]
    coop_name = entities.columns["entity_name"][is_cooperative]
    coop_registered = entities.columns["registered_on"][is_cooperative]

    rate = rng.uniform(*_COOPERATIVE_MEMBERSHIP)
    is_founder = np.zeros(households, dtype=bool)
    is_founder[founder] = True
    score = 0.5 * np.log1p(operated / 100) + 1.5 * (entity_type == 0) + 1.0 * (entity_type == 2)
    share = max(rate - len(founder) / max(households, 1), 0.0)
    member = is_founder | ((rng.random(households) < _calibrated(score, share, ~is_founder)) & (len(founder) > 0))
    pick = rng.random(households)
    joined = rng.random(households)

    # Cooperatives are in household order, so their villages and townships are sorted.
    coop_village = roster.household_village[founder]
    coop_township = roster.village_township[coop_village]
    village = roster.household_village
    township = roster.village_township[village]
    in_village = np.searchsorted(coop_village, village), np.searchsorted(coop_village, village, side="right")
    in_township = np.searchsorted(coop_township, township), np.searchsorted(coop_township, township, side="right")
    chosen = np.select(
        [in_village[1] > in_village[0], in_township[1] > in_township[0]],
        [
            in_village[0] + np.floor(pick * (in_village[1] - in_village[0])),
            in_township[0] + np.floor(pick * (in_township[1] - in_township[0])),
        ],
        np.floor(pick * len(founder)),
    ).astype(np.int64)
    chosen[founder] = np.arange(len(founder))

    rows = np.flatnonzero(member)
    coop = chosen[rows]
    as_of = np.datetime64(roster.as_of, "D")
    registered = coop_registered[coop]
    gap = np.maximum((as_of - registered).astype(np.int64) - 1, 0)
    joined_on = np.where(is_founder[rows], registered, registered + _days(1 + np.floor(joined[rows] * gap)))
    columns = {"cooperative_code": coop_code[coop], "cooperative_name": coop_name[coop], "joined_on": joined_on}
    return _records("coop_membership", head[rows], columns), member


def _poverty(
    rng: Generator, roster: Roster, head: np.ndarray, operated: np.ndarray, head_age: np.ndarray
) -> tuple[CategoryRecords, np.ndarray]:
    households = len(head)
    rate = rng.uniform(*_POVERTY_SHARE)
    score = -0.6 * np.log1p(operated / 100) + 0.03 * (head_age - 50) + 0.2 * (roster.household_members - 3)
    poor = rng.random(households) < _calibrated(score, rate)
    monitored = rng.random(households) < _POVERTY_MONITORED_SHARE
    year = roster.as_of.year
    lifted_from, lifted_to = min(_POVERTY_LIFTED_YEARS[0], year), min(_POVERTY_LIFTED_YEARS[1], year)
    lifted_year = _integers(rng, lifted_from, lifted_to, households)
    monitored_year = _integers(rng, min(_MONITORING_FROM_YEAR, year), year, households)
    status = np.where(poor, np.where(monitored, 2, 1), 0)
    rows = np.flatnonzero(poor)
    columns = {
        "status": np.where(monitored[rows], "monitored", "lifted"),
        "since_year": np.where(monitored[rows], monitored_year[rows], lifted_year[rows]),
    }
    return _records("poverty_monitoring", head[rows], columns), status


def _debtors(
    rng: Generator, roster: Roster, latent: np.ndarray, county_name: str
) -> tuple[CategoryRecords, np.ndarray]:
    """The court's list: people with a higher latent risk are more often on it."""
    farmers = len(latent)
    listed = rng.random(farmers) < _calibrated(latent, _DISHONEST_SHARE)
    as_of = np.datetime64(roster.as_of, "D")
    listed_on = as_of - _days(_integers(rng, *_DISHONEST_LISTED_DAYS_BACK, farmers))
    case_year = _year(listed_on) - (rng.random(farmers) < 0.4)
    case_serial = _integers(rng, 1, 2999, farmers)
    removed = rng.random(farmers) < _DISHONEST_REMOVED_SHARE
    removed_on = listed_on + _days(1 + np.floor(rng.random(farmers) * ((as_of - listed_on).astype(np.int64) - 1)))
    rows = np.flatnonzero(listed)
    # Case number: （year）province + the county's court code (last four digits of the county code) 执 n 号.
    court_code = _PROVINCE_SHORT.get(roster.county_code[:2], "") + roster.county_code[2:]
    columns = {
        "case_no": _join("（", case_year[rows].astype(str), f"）{court_code}执", case_serial[rows].astype(str), "号"),
        "court": np.full(len(rows), f"{county_name}人民法院"),
        "listed_on": listed_on[rows],
        "removed_on": removed_on[rows],
    }
    return _records("dishonest_debtor", rows, columns, {"removed_on": removed[rows]}), listed & ~removed


# --- Drawing the consents (pure numpy) -----------------------------------------------------


def _zone_offset(as_of: dt.date) -> int:
    """The county zone's UTC offset in seconds, which must not change over the years the
    synthetic history covers (Asia/Shanghai has had no daylight saving time since 1991)."""
    zone = ZoneInfo(settings.TIME_ZONE)
    offsets = {
        zone.utcoffset(dt.datetime(year, month, 1))
        for year in range(as_of.year - 6, as_of.year + 5)
        for month in (1, 7)
    }
    if len(offsets) != 1:
        raise NotImplementedError(f"synthetic consents assume a zone without daylight saving time, not {zone}")
    return int(offsets.pop().total_seconds())


def _epoch(days: np.ndarray, offset: int) -> np.ndarray:
    """Epoch seconds of local midnight of each day."""
    return days.astype("datetime64[D]").astype(np.int64) * _DAY - offset


def _village_agents(rng: Generator, roster: Roster) -> np.ndarray:
    """The roster row of each village's service-point agent (村级服务站协理员): a villager of
    25–55 with a phone where there is one, else the village's first farmer."""
    age = roster.farmer_age
    village = roster.farmer_village  # sorted: households are in village order
    villages = np.arange(len(roster.village_code))
    candidates = np.flatnonzero((roster.farmer_phone != "") & (age >= _AGENT_AGES[0]) & (age <= _AGENT_AGES[1]))
    left = np.searchsorted(village[candidates], villages)
    count = np.searchsorted(village[candidates], villages, side="right") - left
    pick = left + np.floor(rng.random(len(villages)) * count).astype(np.int64)
    first = np.searchsorted(village, villages)
    if not len(candidates):
        return first
    return np.where(count > 0, candidates[np.minimum(pick, len(candidates) - 1)], first)


def consents_draw(*, roster: Roster, seed: int) -> Consents:
    """One consent (partner puhui-bank, purpose credit) for ~90% of household heads and ~55% of
    the other adults: granted over the last 11 months, ~4% since revoked and ~1% paused; ~3%
    granted 12–14 months ago and since expired. No database access."""
    rng = _stream(seed, "consents")
    farmers = len(roster.farmer_household)
    offset = _zone_offset(roster.as_of)
    as_of = np.datetime64(roster.as_of, "D")
    midnight = int(_epoch(as_of, offset))

    consenting = rng.random(farmers) < np.where(roster.farmer_is_head, _CONSENT_SHARE_HEADS, _CONSENT_SHARE_OTHERS)
    outcome = rng.random(farmers)
    status = np.select(
        [outcome < _REVOKED_SHARE, outcome < _REVOKED_SHARE + _EXPIRED_SHARE,
         outcome < _REVOKED_SHARE + _EXPIRED_SHARE + _PAUSED_SHARE],
        [Consent.Status.REVOKED.value, Consent.Status.EXPIRED.value, Consent.Status.PAUSED.value],
        Consent.Status.ACTIVE.value,
    )
    expired = status == Consent.Status.EXPIRED
    expiry_day = as_of - _days(_integers(rng, *_EXPIRED_DAYS_BACK, farmers))
    start_day = np.where(
        expired,
        _add_months(expiry_day, -_CONSENT_MONTHS),
        as_of - _days(_integers(rng, 1, _CONSENT_SPREAD_DAYS, farmers)),
    )
    time_of_day = _integers(rng, _WAKING_HOURS[0] * 3600, _WAKING_HOURS[1] * 3600 - 1, farmers)
    starts_at = _epoch(start_day, offset) + time_of_day
    expires_at = _epoch(_add_months(start_day, _CONSENT_MONTHS), offset) + time_of_day
    later = rng.random(farmers)
    # Revoked or paused at least a minute after the grant and before as_of began; expired
    # consents were closed by the nightly run in the early hours after their expiry day.
    by_farmer = starts_at + 60 + np.floor(later * (midnight - starts_at - 120)).astype(np.int64)
    local_expiry_day = (expires_at + offset) // _DAY
    by_nightly = (local_expiry_day + 1) * _DAY - offset + _NIGHTLY_HOUR * 3600 + np.floor(later * 600).astype(np.int64)
    changed_at = np.select(
        [(status == Consent.Status.REVOKED) | (status == Consent.Status.PAUSED), expired], [by_farmer, by_nightly], -1
    )

    agents = _village_agents(rng, roster)
    has_phone = roster.farmer_phone != ""
    is_agent = np.zeros(farmers, dtype=bool)
    is_agent[agents] = True
    self_service = is_agent | (has_phone & (rng.random(farmers) < _SELF_SHARE_WITH_PHONE))
    agent = np.where(self_service, -1, agents[roster.farmer_village])

    rows = np.flatnonzero(consenting)
    return Consents(
        farmer=rows,
        status=status[rows],
        starts_at=starts_at[rows],
        expires_at=expires_at[rows],
        agent=agent[rows],
        changed_at=changed_at[rows],
        receipt_id=_uuids(_stream(seed, "receipts"), len(rows)),
    )


def _uuids(rng: Generator, count: int) -> np.ndarray:
    """Random UUIDs in version-4 form, drawn from ``rng`` so that a seed reproduces them."""
    raw = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    nibbles = np.stack([raw >> 4, raw & 0x0F], axis=2).reshape(count, 32)
    text = np.full((count, 36), "-", dtype="<U1")
    text[:, [i for i in range(36) if i not in _UUID_DASHES]] = np.array(list("0123456789abcdef"))[nibbles]
    return text.view("<U36").ravel()


_UUID_DASHES = (8, 13, 18, 23)


# --- Drawing the credit history (pure numpy) -----------------------------------------------


def credit_history_draw(*, roster: Roster, truth: Truth, consents: Consents, seed: int) -> CreditHistory:
    """Past loans of ~25% of the consenting household heads, 1–3 each, one after another,
    started 1–4 years before as_of and closed 6–12 months later. Whether each went bad follows
    a hidden logistic process of the farmer's true features (and of how their earlier loans
    went), its intercept solved so that the realised bad rate is 2.25%. No database access."""
    rng = _stream(seed, "credit")
    heads = consents.farmer[roster.farmer_is_head[consents.farmer]]
    borrowers = heads[rng.random(len(heads)) < _BORROWER_SHARE]
    loans_each = rng.choice(np.arange(1, len(_LOANS_PER_BORROWER) + 1), size=len(borrowers), p=_LOANS_PER_BORROWER)
    borrower = np.repeat(np.arange(len(borrowers)), loans_each)  # index into borrowers, per loan
    farmer = borrowers[borrower]
    count = len(farmer)
    sequence = np.arange(count) - np.searchsorted(borrower, borrower)  # 0 for a farmer's first loan
    of_loans = loans_each[borrower]

    as_of = np.datetime64(roster.as_of, "D")
    window_start = _add_months(as_of, -_LOAN_MONTHS_BACK[0])
    window = (_add_months(as_of, -_LOAN_MONTHS_BACK[1]) - window_start).astype(np.int64)
    term = _integers(rng, *_LOAN_TERM_MONTHS, count)
    # Each loan in its own part of the window, so that a farmer's loans follow each other.
    part = window // of_loans
    slack = np.maximum(part - term * 31, 1)
    started_on = window_start + _days(sequence * part + np.floor(rng.random(count) * slack))
    closed_on = _add_months(started_on, term)

    household = roster.farmer_household[farmer]
    operated_mu = truth.operated_area[household] / 100
    principal_yuan = np.exp(
        np.log(_PRINCIPAL_MEDIAN_YUAN) + 0.4 * np.log1p(operated_mu / _LAND_MEDIAN_MU)
        + rng.normal(0.0, _PRINCIPAL_SD, count)
    )
    principal = np.clip(np.rint(principal_yuan / 1000) * 1000, *_PRINCIPAL_YUAN).astype(np.int64)
    age_then = roster.farmer_age[farmer] - ((as_of - started_on).astype(np.int64) // 365)
    poverty = truth.poverty[household]
    static = (
        _RISK["log1p_operated_mu"] * np.log1p(operated_mu)
        + _RISK["insured_share"] * truth.insured_share[household]
        + _RISK["social_insurance_years"] * truth.social_insurance_years[farmer]
        + _RISK["organized"] * truth.organized[household]
        + _RISK["poverty_lifted"] * (poverty == 1)
        + _RISK["poverty_monitored"] * (poverty == 2)
        + _RISK["age_from_45_squared"] * (age_then - 45) ** 2
        + _RISK["log_principal_over_20k"] * np.log(principal / 20_000)
        + _RISK["latent"] * truth.latent_risk[farmer]
    )
    bad_draw, late_draw = rng.random(count), rng.random(count)

    def outcomes(intercept: float) -> tuple[np.ndarray, np.ndarray]:
        # The same draws for every intercept, so the number of bad loans only grows with it.
        bad = np.zeros(count, dtype=bool)
        late = np.zeros(count, dtype=bool)
        was_late = np.zeros(len(borrowers), dtype=bool)
        was_bad = np.zeros(len(borrowers), dtype=bool)
        for step in range(len(_LOANS_PER_BORROWER)):
            rows = np.flatnonzero(sequence == step)
            who = borrower[rows]
            pd = _sigmoid(
                intercept + static[rows] + _RISK["earlier_late"] * was_late[who] + _RISK["earlier_bad"] * was_bad[who]
            )
            bad[rows] = bad_draw[rows] < pd
            late[rows] = ~bad[rows] & (late_draw[rows] < np.minimum(0.04 + 3 * pd, 0.5))
            was_late[who] |= late[rows]
            was_bad[who] |= bad[rows]
        return bad, late

    target = round(_BAD_RATE_TARGET * count)
    low, high = -30.0, 10.0
    for _ in range(60):
        middle = (low + high) / 2
        bad_count = outcomes(middle)[0].sum()
        if bad_count < target:
            low = middle
        else:
            high = middle
            if bad_count == target:
                break
    bad, late = outcomes(high)
    days = rng.random(count)
    max_days_past_due = np.select(
        [bad, late],
        [
            _BAD_DAYS[0] + np.floor(days**1.5 * (_BAD_DAYS[1] - _BAD_DAYS[0] + 1)),
            _LATE_DAYS[0] + np.floor(days**2 * (_LATE_DAYS[1] - _LATE_DAYS[0] + 1)),
        ],
        0,
    ).astype(np.int64)
    history = CreditHistory(
        farmer=farmer, started_on=started_on, closed_on=closed_on, principal=principal,
        max_days_past_due=max_days_past_due, bad=bad, intercept=high,
    )
    if count >= _MIN_LOANS_FOR_RATE_CHECK and not _BAD_RATE_BOUNDS[0] <= history.bad_rate <= _BAD_RATE_BOUNDS[1]:
        raise RuntimeError(f"calibrated bad rate {history.bad_rate:.4f} outside {_BAD_RATE_BOUNDS}")
    return history


# --- Writing it (COPY, one transaction) ----------------------------------------------------


def government_data_generate(*, report: GenerationReport, seed: int) -> dict:
    """Write every category's records, the demo partner and its agreement, consents with their
    receipts and events, and the credit history for the roster ``report`` describes, in one
    transaction inside that county's schema. Returns counts and seconds per phase.

    Meant right after :func:`counties.synthetic.generate_county_data` (``report`` is what it
    returned): the roster is new, so nothing refers to it yet. The same roster and ``seed``
    give the same records, consents and loans; only database ids differ between runs.
    """
    county = County.objects.filter(code=report.county_code).first()
    if county is None or connection.schema_name != county.schema_name:
        raise ValueError(f"government_data_generate must run inside county {report.county_code}'s schema (schema_context)")
    roster = report.roster
    seconds: dict[str, float] = {}
    began = time.monotonic()
    data = government_data_draw(roster=roster, seed=seed, county_name=county.name)
    consents = consents_draw(roster=roster, seed=seed)
    credit = credit_history_draw(roster=roster, truth=data.truth, consents=consents, seed=seed)
    seconds["draw"] = _since(began)

    with transaction.atomic(durable=True), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # psycopg's own cursor, for COPY
        # Foreign keys are checked as each statement ends: a wrong id fails the COPY that wrote it.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # Registrations, imports and grants wait until this commits (readers carry on), so the
        # emptiness checks and the consent ids reserved below stay true.
        cursor.execute(f"LOCK TABLE counties_farmer, {', '.join(_TABLES)} IN EXCLUSIVE MODE")
        _roster_check(cursor, report)

        began = time.monotonic()
        categories = _categories(data)
        batches = _batches_record(categories, data, seed=seed, as_of=extract_date(roster.as_of))
        with _rebuilt_if_empty(cursor, _RECORDS_TABLE):
            _copy(cursor, _RECORDS_TABLE, _RECORD_COLUMNS, _record_chunks(data, categories, batches, report))
        seconds["records"] = _since(began)

        began = time.monotonic()
        partner, agreement = _partner_and_agreement(county=county, as_of=roster.as_of)
        text = consent_text_current(purpose_code=CREDIT_PURPOSE)
        consent_codes = sorted(
            DataCategory.objects.filter(is_active=True, requires_consent=True).values_list("code", flat=True)
        )
        offset = _zone_offset(roster.as_of)
        earliest = _EPOCH_DAY + dt.timedelta(days=(int(consents.starts_at.min()) + offset) // _DAY) if len(consents) else roster.as_of
        for day in {earliest, roster.as_of}:
            if agreed_category_codes(partner=partner, on=day, codes=consent_codes) != set(consent_codes):
                raise ValueError(f"agreement {agreement.reference} does not cover every category on {day}")
        seconds["agreement"] = _since(began)

        began = time.monotonic()
        consent_ids = _reserve_ids(cursor, _CONSENT_TABLE, len(consents))
        signed = _receipts_sign(
            consents, consent_ids, roster=roster, partner=partner, text=text, categories=consent_codes, offset=offset
        )
        seconds["receipts"] = _since(began)

        began = time.monotonic()
        with _rebuilt_if_empty(cursor, _CONSENT_TABLE):
            _copy(cursor, _CONSENT_TABLE, _CONSENT_COLUMNS, _consent_chunks(
                consents, consent_ids, signed, report=report, partner=partner, text=text, categories=consent_codes,
                offset=offset,
            ))
        with _rebuilt_if_empty(cursor, _EVENT_TABLE):
            events = _copy(cursor, _EVENT_TABLE, _EVENT_COLUMNS, _event_chunks(
                consents, consent_ids, signed, report=report, text=text, categories=consent_codes, offset=offset,
            ))
        seconds["consents"] = _since(began)

        began = time.monotonic()
        with _rebuilt_if_empty(cursor, _CREDIT_TABLE):
            _copy(cursor, _CREDIT_TABLE, _CREDIT_COLUMNS, _credit_chunks(credit, report))
        seconds["credit"] = _since(began)

        began = time.monotonic()
        cursor.execute(f"ANALYZE {', '.join(_TABLES)}")
        seconds["analyze"] = _since(began)
        began = time.monotonic()
    seconds["commit"] = _since(began)

    statuses, counts = np.unique(consents.status, return_counts=True)
    return {
        "records": {code: len(data.records[code]) for code in categories},
        "partner": partner.code,
        "agreement": agreement.reference,
        "consents": {str(status): int(count) for status, count in zip(statuses, counts, strict=True)},
        "consent_events": events,
        "credit_outcomes": len(credit),
        "bad_loans": int(credit.bad.sum()),
        "bad_rate": round(credit.bad_rate, 6),
        "seconds": seconds,
    }


_RECORDS_TABLE = GovernmentRecord._meta.db_table
_CONSENT_TABLE = Consent._meta.db_table
_EVENT_TABLE = ConsentEvent._meta.db_table
_CREDIT_TABLE = CreditOutcome._meta.db_table
# Empty for a new roster (their rows all refer to farmers); loaded in this order.
_TABLES = (_RECORDS_TABLE, _CONSENT_TABLE, _EVENT_TABLE, _CREDIT_TABLE)
_RECORD_COLUMNS = ("category_id", "farmer_id", "record_key", "as_of_date", "data", "batch_id")
_CONSENT_COLUMNS = (
    "id", "farmer_id", "partner_id", "purpose_code", "text_id", "categories", "starts_at", "expires_at",
    "fetch_frequency", "data_life_days", "channel", "assisted_by", "status", "status_changed_at", "ended_at",
    "receipt", "receipt_signature", "created_at",
)
_EVENT_COLUMNS = ("consent_id", "event", "to_status", "at", "actor", "channel", "detail")
_CREDIT_COLUMNS = ("farmer_id", "started_on", "closed_on", "principal", "max_days_past_due", "bad")
_FETCH_FREQUENCY = Consent._meta.get_field("fetch_frequency").default


def _since(began: float) -> float:
    return round(time.monotonic() - began, 3)


def _roster_check(cursor: psycopg.Cursor, report: GenerationReport) -> None:
    """The schema's roster is the one ``report`` describes (and not, say, a replaced one)."""
    cursor.execute("SELECT count(*), min(id), max(id) FROM counties_farmer")
    found = cursor.fetchone()
    ids = report.ids.farmer
    expected = (len(ids), int(ids.min()), int(ids.max())) if len(ids) else (0, None, None)
    if tuple(found) != expected:
        raise ValueError(f"the county's roster (farmers, first id, last id) is {tuple(found)}, the report's {expected}")


def _rebuilt_if_empty(cursor: psycopg.Cursor, table: str):
    """Build the table's indexes and check its foreign keys once after the load when it is
    empty (it always is after a new roster); otherwise load into it as it is."""
    cursor.execute(f"SELECT EXISTS (SELECT FROM {table})")
    return nullcontext() if cursor.fetchone()[0] else rebuilt_after_load(cursor, table)


def _reserve_ids(cursor: psycopg.Cursor, table: str, count: int) -> np.ndarray:
    """Take ``count`` consecutive ids from the table's sequence (the table is locked, so no
    default can interleave): events name their consent before it is written."""
    if not count:
        return np.array([], dtype=np.int64)
    cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
    (first,) = cursor.fetchone()
    cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, first + count - 1])
    return np.arange(first, first + count, dtype=np.int64)


def _copy(cursor: psycopg.Cursor, table: str, columns: tuple[str, ...], chunks: Iterable[tuple[bytes, int]]) -> int:
    """COPY the chunks (text, rows) into ``table``; returns the rows written. The writer thread
    sends one chunk while this thread renders the next."""
    rows = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN", writer=QueuedLibpqWriter(cursor)) as copy:
        for text, count in chunks:
            copy.write(text)
            rows += count
    return rows


def _rows(*parts) -> list[str]:
    """Concatenate, row by row, columns (arrays or lists of str) and constants (str)."""
    columns = [repeat(part) if isinstance(part, str) else (part.tolist() if isinstance(part, np.ndarray) else part) for part in parts]
    return list(map("".join, zip(*columns, strict=False)))  # repeat() is endless


def _tsv(*columns) -> tuple[bytes, int]:
    """Rows in COPY text format from equal-length columns (str constants repeat). Every value
    here is digits, dates, codes, JSON without backslashes or Chinese names: nothing to escape."""
    lines = _rows(*[part for column in columns for part in ("\t", column)][1:])
    return ("\n".join(lines) + "\n").encode(), len(lines)


def _slices(count: int) -> Iterator[slice]:
    for start in range(0, count, _CHUNK_ROWS):
        yield slice(start, min(start + _CHUNK_ROWS, count))


def _local_iso(epoch: np.ndarray, offset: int) -> np.ndarray:
    """ISO 8601 in the county's zone, as ``timezone.localtime(moment).isoformat()`` writes it."""
    sign = "+" if offset >= 0 else "-"
    suffix = f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    return np.strings.add((np.asarray(epoch, dtype=np.int64) + offset).astype("datetime64[s]").astype(str), suffix)


# Records ----------------------------------------------------------------------------------


def _categories(data: GovernmentData) -> dict[str, DataCategory]:
    found = DataCategory.objects.in_bulk(list(data.records), field_name="code")
    missing = sorted(set(data.records) - set(found))
    if missing:
        raise ValueError(f"data categories {missing} are not in the catalog: run manage.py sync_catalog")
    return {code: found[code] for code in data.records}


def extract_date(generated_on: dt.date) -> dt.date:
    """The departments' extracts are as of the last closed day before generation, so the
    nightly run for that business date (yesterday, by default) already reads them."""
    return generated_on - dt.timedelta(days=1)


def _batches_record(
    categories: dict[str, DataCategory], data: GovernmentData, *, seed: int, as_of: dt.date
) -> dict[str, ImportBatch]:
    """One succeeded batch per category, as if each department had sent its file today."""
    now = timezone.now()
    batches = {}
    for code, category in categories.items():
        rows = len(data.records[code])
        sha256 = hashlib.sha256(f"synthetic:{seed}:{code}".encode()).hexdigest()
        # A batch for the same seed and date is left from an earlier roster (its records went
        # with it, or there were none): it is this one.
        batches[code], _created = ImportBatch.objects.update_or_create(
            category=category, content_sha256=sha256, as_of_date=as_of,
            defaults={
                "source": ImportBatch.Source.SYNTHETIC, "status": ImportBatch.Status.SUCCEEDED, "file_name": "",
                "stored_path": "", "encoding": "", "rows_total": rows, "rows_done": rows, "rows_imported": rows,
                "errors": [], "error_count": 0, "submitted_by": SUBMITTED_BY, "finished_at": now,
            },
        )
    return batches


def _decimal_text(hundredths: np.ndarray, places: int) -> np.ndarray:
    if places < 2:
        raise ValueError(f"synthetic decimals carry 2 places; the catalog asks for {places}")
    fraction = np.strings.zfill((hundredths % 100).astype(str), 2)
    return _join((hundredths // 100).astype(str), ".", fraction, "0" * (places - 2))


def _field_text(spec: dict, values: np.ndarray) -> tuple[np.ndarray, bool]:
    """A column in the importer's normalised form: (text, whether JSON quotes it)."""
    kind = spec["type"]
    if kind in ("string", "choice"):
        return values, True
    if kind == "integer":
        return values.astype(str), False
    if kind == "decimal":
        return _decimal_text(values, int(spec.get("places", 2))), True
    if kind == "date":
        return values.astype("datetime64[D]").astype(str), True
    if kind == "boolean":
        return np.where(values, "true", "false"), False
    raise ValueError(f"unknown field type {kind!r}")


_UNSAFE_CHARACTERS = ('"', "\\", "\t", "\n", "\r")


def _schema_check(category: DataCategory, records: CategoryRecords) -> None:
    """The drawn columns are exactly the schema's fields (required ones always present), and
    the strings fit and need no escaping in JSON or COPY."""
    fields = {spec["name"]: spec for spec in category.field_schema["fields"]}
    unknown = sorted(set(records.columns) - set(fields))
    missing = sorted(name for name, spec in fields.items() if spec.get("required") and name not in records.columns)
    if unknown or missing:
        raise ValueError(f"{category.code}: the catalog's fields changed (unknown {unknown}, missing {missing})")
    for name, values in records.columns.items():
        spec = fields[name]
        if spec["type"] not in ("string", "choice") or not len(values):
            continue
        if any(np.strings.find(values, character).max() >= 0 for character in _UNSAFE_CHARACTERS):
            raise ValueError(f"{category.code}.{name}: a value would need escaping")
        if spec.get("max_length") and np.strings.str_len(values).max() > spec["max_length"]:
            raise ValueError(f"{category.code}.{name}: a value is longer than {spec['max_length']}")


def _record_chunks(
    data: GovernmentData, categories: dict[str, DataCategory], batches: dict[str, ImportBatch], report: GenerationReport
) -> Iterator[tuple[bytes, int]]:
    as_of = extract_date(report.as_of).isoformat()
    for code, category in categories.items():
        records = data.records[code]
        _schema_check(category, records)
        for part in _slices(len(records)):
            key, data_json = _record_texts(category.field_schema, records, part)
            yield _tsv(
                str(category.pk), report.ids.farmer[records.farmer[part]].astype(str), key, as_of, data_json,
                str(batches[code].pk),
            )


def _record_texts(schema: dict, records: CategoryRecords, part: slice) -> tuple[list[str], list[str]]:
    """(record key, data JSON) of some records: every schema field in the importer's normalised
    form, null where absent; the key is the key fields' values joined with |."""
    texts: dict[str, np.ndarray] = {}
    pieces: list = ["{"]  # constants (str) and columns, merged as rows; adjacent constants merged
    for index, spec in enumerate(schema["fields"]):
        name = spec["name"]
        pieces[-1] += f'{", " if index else ""}"{name}": '
        if name not in records.columns:
            pieces[-1] += "null"
            continue
        text, quoted = _field_text(spec, records.columns[name][part])
        texts[name] = text
        if name in records.present:
            value = _join('"', text, '"') if quoted else text
            pieces += [np.where(records.present[name][part], value, "null"), ""]
        elif quoted:
            pieces[-1] += '"'
            pieces += [text, '"']
        else:
            pieces += [text, ""]
    pieces[-1] += "}"
    key = _rows(*[piece for name in schema["key"] for piece in ("|", texts[name])][1:])
    return key, _rows(*pieces)


# Partner and agreement --------------------------------------------------------------------


def _months_after(day: dt.date, months: int) -> dt.date:
    return _add_months(np.array([day], dtype="datetime64[D]"), months)[0].item()


def _partner_and_agreement(*, county: County, as_of: dt.date) -> tuple[LendingPartner, DataSharingAgreement]:
    """The demo lending partner (public schema) and the county's agreement with it, covering
    every active category: found, or made."""
    partner, _created = LendingPartner.objects.get_or_create(code=DEMO_PARTNER_CODE, defaults={"name": DEMO_PARTNER_NAME})
    reference = f"AGR-{county.code}-001"
    agreement = DataSharingAgreement.objects.filter(reference=reference).first()
    if agreement is None:
        effective_from = _months_after(as_of, -_AGREEMENT_MONTHS_BEFORE)
        signed_on = effective_from - dt.timedelta(days=7)
        agreement = agreement_create(
            partner=partner,
            categories=list(DataCategory.objects.filter(is_active=True).values_list("code", flat=True)),
            effective_from=effective_from,
            effective_to=_months_after(as_of, _AGREEMENT_MONTHS_AFTER),
            reference=reference,
            signed_at=dt.datetime.combine(signed_on, dt.time(10), tzinfo=ZoneInfo(settings.TIME_ZONE)),
        )
    return partner, agreement


# Consents, receipts and events ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Signed:
    receipt: list[str]  # canonical JSON text
    signature: list[str]
    starts_at: np.ndarray  # local ISO text
    expires_at: np.ndarray


def _receipts_sign(
    consents: Consents,
    consent_ids: np.ndarray,
    *,
    roster: Roster,
    partner: LendingPartner,
    text: ConsentText,
    categories: list[str],
    offset: int,
) -> _Signed:
    """Every consent's receipt, as :func:`data_sharing.receipts.receipt_issue` builds it for a
    grant (issued as the consent starts), signed with the current key.

    The canonical JSON is assembled column-wise: :func:`receipts.canonical_json` of the fixed
    fields around placeholders, the per-consent values (all plain ASCII) put in their places.
    The first receipt is re-serialised through ``canonical_json`` to prove the two agree.
    Signing stays one Ed25519 call per consent (about 45 µs: the biggest cost of this phase).
    """
    key_id, private_key = receipts.signing_key()
    starts_at = _local_iso(consents.starts_at, offset)
    expires_at = _local_iso(consents.expires_at, offset)
    # (text, whether JSON quotes it) of each value that differs between consents.
    varying = {
        "receipt_id": (consents.receipt_id, True),
        "consent_id": (consent_ids.astype(str), False),
        "farmer_id_masked": (list(map(mask_id_number, roster.farmer_id_number[consents.farmer].tolist())), True),
        "starts_at": (starts_at, True),
        "expires_at": (expires_at, True),
        "channel": (np.where(consents.self_service, Consent.Channel.SELF.value, Consent.Channel.ASSISTED.value), True),
        # The self-service grant is the farmer's own login; an assisted one needs their SMS code.
        "sms_confirmed": (np.where(consents.self_service, "false", "true"), False),
        "issued_at": (starts_at, True),
    }
    fixed = {
        "format": receipts.RECEIPT_FORMAT,
        "county_code": roster.county_code,
        "partner_code": partner.code,
        "partner_name": partner.name,
        "purpose_code": text.purpose_code,
        "text_version": text.version,
        "text_sha256": receipts.consent_text_sha256(text),
        "categories": sorted(categories),
        "fetch_frequency": _FETCH_FREQUENCY,
        "data_life_days": _DATA_LIFE_DAYS,
        "algorithm": receipts.ALGORITHM,
        "key_id": key_id,
    }
    template = receipts.canonical_json({**fixed, **{name: f"@@{name}@@" for name in varying}}).decode()
    if "\\" in template:
        raise ValueError("a receipt field would need escaping in COPY")
    pieces = re.split(r'"@@(\w+)@@"', template)
    parts: list = [pieces[0]]
    for name, after in zip(pieces[1::2], pieces[2::2], strict=True):
        value, quoted = varying[name]
        parts += [parts.pop() + '"', value, '"' + after] if quoted else [value, after]
    document = _rows(*parts)
    if document and receipts.canonical_json(json.loads(document[0])).decode() != document[0]:
        raise RuntimeError("the assembled receipt is not canonical JSON")
    sign, encode = private_key.sign, base64.b64encode
    signature = [encode(sign(row.encode())).decode("ascii") for row in document]
    return _Signed(receipt=document, signature=signature, starts_at=starts_at, expires_at=expires_at)


def _actors(consents: Consents, report: GenerationReport) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(actor, channel, assisted_by) of each consent's grant."""
    roster = report.roster
    farmer_id = report.ids.farmer[consents.farmer].astype(str)
    helped = ~consents.self_service
    agent = np.where(helped, consents.agent, 0)
    agent_id = report.ids.farmer[agent].astype(str)
    # The village service point (村级便民服务站) and the agent who helped, as the consent names them.
    point = _join(roster.village_name[roster.farmer_village[agent]], "便民服务站 ", roster.farmer_name[agent])
    actor = np.where(helped, np.strings.add("agent:", agent_id), np.strings.add("farmer:", farmer_id))
    channel = np.where(helped, Consent.Channel.ASSISTED.value, Consent.Channel.SELF.value)
    return actor, channel, np.where(helped, point, "")


def _consent_chunks(
    consents: Consents,
    consent_ids: np.ndarray,
    signed: _Signed,
    *,
    report: GenerationReport,
    partner: LendingPartner,
    text: ConsentText,
    categories: list[str],
    offset: int,
) -> Iterator[tuple[bytes, int]]:
    _actor, channel, assisted_by = _actors(consents, report)
    Status = Consent.Status
    status_changed = np.where(consents.changed_at >= 0, consents.changed_at, consents.starts_at)
    ended = np.select(
        [consents.status == Status.REVOKED, consents.status == Status.EXPIRED], [consents.changed_at, consents.expires_at], -1
    )
    ended_at = np.where(ended >= 0, _local_iso(ended, offset), "\\N")
    array_literal = "{" + ",".join(categories) + "}"
    for part in _slices(len(consents)):
        yield _tsv(
            consent_ids[part].astype(str), report.ids.farmer[consents.farmer[part]].astype(str), str(partner.pk),
            text.purpose_code, str(text.pk), array_literal, signed.starts_at[part], signed.expires_at[part],
            _FETCH_FREQUENCY, str(_DATA_LIFE_DAYS), channel[part], assisted_by[part], consents.status[part],
            _local_iso(status_changed[part], offset), ended_at[part], signed.receipt[part],
            signed.signature[part], signed.starts_at[part],
        )


def _event_chunks(
    consents: Consents,
    consent_ids: np.ndarray,
    signed: _Signed,
    *,
    report: GenerationReport,
    text: ConsentText,
    categories: list[str],
    offset: int,
) -> Iterator[tuple[bytes, int]]:
    """The ``granted`` event of every consent, then the later one (revoked, paused, expired)
    of those that have one — as consent_grant, consent_status_change and the nightly
    consents_expire write them."""
    actor, channel, _assisted_by = _actors(consents, report)
    Status = Consent.Status
    detail_head = json.dumps({"text_version": text.version, "categories": categories}, ensure_ascii=False)[:-1]
    for part in _slices(len(consents)):
        detail = _rows(
            detail_head + ', "sms_confirmed": ', np.where(consents.self_service[part], "false", "true"),
            ', "receipt_id": "', consents.receipt_id[part], '", "supersedes": null}',
        )
        yield _tsv(
            consent_ids[part].astype(str), ConsentEvent.Event.GRANTED.value, Status.ACTIVE.value,
            signed.starts_at[part], actor[part], channel[part], detail,
        )
    later = np.flatnonzero(consents.changed_at >= 0)
    for chunk in _slices(len(later)):
        rows = later[chunk]
        # Each later event is named as the status it leads to: revoked, paused or expired.
        status = consents.status[rows]
        by_nightly = status == Status.EXPIRED
        # The nightly run that expired it ran for the business date the consent expired on.
        expiry_day = ((consents.expires_at[rows] + offset) // _DAY).astype("datetime64[D]").astype(str)
        yield _tsv(
            consent_ids[rows].astype(str), status, status, _local_iso(consents.changed_at[rows], offset),
            np.where(by_nightly, NIGHTLY_ACTOR, actor[rows]), np.where(by_nightly, "", channel[rows]),
            np.where(
                by_nightly,
                _join(np.strings.add('{"business_date": "', expiry_day), '", "expires_at": "', signed.expires_at[rows], '"}'),
                "{}",
            ),
        )


# Credit history ---------------------------------------------------------------------------


def _credit_chunks(credit: CreditHistory, report: GenerationReport) -> Iterator[tuple[bytes, int]]:
    for part in _slices(len(credit)):
        yield _tsv(
            report.ids.farmer[credit.farmer[part]].astype(str), credit.started_on[part].astype(str),
            credit.closed_on[part].astype(str), np.strings.add(credit.principal[part].astype(str), ".00"),
            credit.max_days_past_due[part].astype(str), np.where(credit.bad[part], "t", "f"),
        )
