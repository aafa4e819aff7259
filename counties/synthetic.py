"""A synthetic county roster: townships, villages, households and farmers, for demos, load
tests and calibrating the nightly batch at county scale.

Two halves:

* :func:`roster_generate` draws the plaintext roster as column arrays (numpy, vectorised, no
  database). The same ``farmers``, ``seed`` and ``as_of`` always give the same names, ID
  numbers, phones, birth dates and structure; the county code only enters the codes (township,
  village, household) and the region prefix (and so the check digit) of the ID numbers.
* :func:`generate_county_data` writes it into the current county schema with PostgreSQL COPY
  in one transaction. ID and phone numbers are stored the way :class:`counties.models.Farmer`
  expects: :func:`data_sharing.pii.encrypt` ciphertext plus :func:`data_sharing.pii.blind_index`.

Calibration (DESIGN.md, "Synthetic county"): 1–3 registered adults per household (mean 2.1, so
210k–630k farmers give the 100k–300k households of a real county); 10–20 townships; ages
18–75 shaped like the rural age pyramid; about 85% of farmers with a mobile phone, fewer
among the old.

Later government-data categories (land, subsidies, insurance…) are meant to be further phases
that read :class:`Roster` and :class:`RosterIds` from the returned :class:`GenerationReport`
and draw from their own :func:`_stream`, so adding one never changes the roster itself.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import psycopg
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from numpy.random import PCG64, Generator, SeedSequence
from psycopg.copy import QueuedLibpqWriter

from counties.models import Farmer
from data_sharing import pii
from platform.bulk import rebuilt_after_load
from platform.models import County

# The ID sequence space (499 numbers per birth date and gender) and this process's memory
# (arrays plus COPY text in flight: 760 MB peak at 1M farmers) both stay comfortable up to here.
MAX_FARMERS = 5_000_000

# Farmers per COPY chunk: about 12 MB of text, sent by psycopg's writer thread while the next
# chunk is encrypted; large enough that the per-chunk numpy calls are noise.
_CHUNK_FARMERS = 50_000

# Registered adults per household (1, 2, 3): couples dominate, then a head with an adult child
# or parent on the register, then people living alone. Mean 2.1.
_ADULTS_PER_HOUSEHOLD = (0.2, 0.5, 0.3)
# Household population (家庭人口) adds children and relatives not on the roster; rural
# households average about 3.3 people.
_EXTRA_MEMBERS_MEAN = 1.2
_MAX_MEMBERS = 9
# Villages average about 450 households (a 行政村 of 1,500 people); codes leave 200–998 for
# villages (GB/T 10114: 2xx/3xx are village committees), so at most 799 per township.
_HOUSEHOLDS_PER_VILLAGE = 450
_MAX_VILLAGES_PER_TOWNSHIP = 799
# Share of a village's households whose head carries the village's own surname (张庄 is mostly 张).
_VILLAGE_SURNAME_SHARE = 0.45

_MIN_AGE, _MAX_AGE = 18, 75
_MIN_HEAD_AGE = 25
# Share (%) of the rural population in each five-year age band from 15–19 to 75–79, roughly as
# in the 2020 census (第七次全国人口普查, 乡村): the 50–59 bulge is the 1960s birth boom, the
# 30s bump its echo; the young are registered at home even when they work in the cities.
_RURAL_AGE_BANDS = (5.0, 5.2, 5.9, 7.4, 6.5, 6.1, 7.8, 9.2, 8.4, 6.6, 6.6, 4.9, 3.6)
_FIRST_BAND_AGE = 15
# Share of farmers with a mobile phone by age (<60, 60–69, 70+): about 85% overall.
_PHONE_SHARE_BY_AGE = (0.90, 0.80, 0.60)

# Approximate shares (%) of the commonest surnames in the household register (公安部户籍统计);
# the long tail of rarer surnames is folded into these.
_SURNAMES = (
    ("王", 7.25), ("李", 7.19), ("张", 6.83), ("刘", 5.38), ("陈", 4.53), ("杨", 3.08), ("黄", 2.23),
    ("赵", 2.18), ("吴", 2.05), ("周", 1.97), ("徐", 1.56), ("孙", 1.53), ("马", 1.44), ("朱", 1.37),
    ("胡", 1.30), ("郭", 1.28), ("何", 1.20), ("林", 1.18), ("高", 1.17), ("罗", 1.11), ("郑", 1.03),
    ("梁", 0.94), ("谢", 0.84), ("宋", 0.82), ("唐", 0.80), ("许", 0.76), ("韩", 0.74), ("冯", 0.72),
    ("邓", 0.71), ("曹", 0.70), ("彭", 0.66), ("曾", 0.64), ("肖", 0.63), ("田", 0.62), ("董", 0.61),
    ("袁", 0.56), ("潘", 0.56), ("于", 0.55), ("蒋", 0.54), ("蔡", 0.54), ("余", 0.53), ("杜", 0.52),
    ("叶", 0.51), ("程", 0.50), ("苏", 0.48), ("魏", 0.48), ("吕", 0.47), ("丁", 0.46), ("任", 0.45),
    ("沈", 0.44), ("姚", 0.43), ("卢", 0.42), ("姜", 0.41), ("崔", 0.40), ("钟", 0.39), ("谭", 0.38),
    ("陆", 0.37), ("汪", 0.36), ("范", 0.35), ("金", 0.34), ("石", 0.33), ("廖", 0.32), ("贾", 0.31),
    ("夏", 0.30), ("韦", 0.29), ("付", 0.28), ("方", 0.27), ("白", 0.27), ("邹", 0.26), ("孟", 0.26),
    ("熊", 0.25), ("秦", 0.25), ("邱", 0.24), ("江", 0.24), ("尹", 0.23), ("薛", 0.23), ("闫", 0.22),
    ("段", 0.22), ("雷", 0.21), ("侯", 0.21), ("龙", 0.20), ("史", 0.20), ("陶", 0.19), ("贺", 0.18),
    ("顾", 0.18), ("毛", 0.17), ("郝", 0.17), ("龚", 0.16), ("邵", 0.16), ("万", 0.15), ("钱", 0.15),
    ("严", 0.14), ("武", 0.14), ("戴", 0.13), ("孔", 0.13), ("常", 0.12), ("牛", 0.12),
)
# Given-name characters change with the generation: 建国 and 秀英 before 1980, 浩 and 欣怡 after.
_MODERN_NAMES_FROM_YEAR = 1980
_GIVEN_CHARS = {
    (True, False): "建国军华明平志强文德福永春林海庆成金宝山长红卫新东保忠发生荣贵富全友振兴家",
    (True, True): "伟磊浩杰涛鹏超宇斌博俊豪轩晨阳凯帅鑫飞龙辉亮旭航泽宁锋帆昊然铭睿哲毅峰",
    (False, False): "秀英兰桂芳玉凤珍梅华琴荣莲霞云翠花淑素香红莉彩菊春爱萍丽秋月娥美贞",
    (False, True): "丽娜静敏婷燕娟艳雪颖倩佳欣怡琳悦晶洁雨梦琪瑶涵萱璐诗薇蕾楠露晓玲慧",
}
_TWO_CHARACTER_GIVEN_NAME_SHARE = 0.8

# Stems of township names; the first township is always the county seat, 城关镇.
_TOWNSHIP_STEMS = (
    "东坝头 谷营 红庙 考城 南彰 仪封 许河 孟寨 小宋 三义寨 固阳 闫楼 爪营 柳园 青龙 白马 石桥 新集 高庙"
    " 长岗 马集 双河 杨集 黄庄 张集 李寨 王店 龙井 花园 梨树 桃园 金桥 沙河 清水 铁佛 官庄 柏林 古城 兴隆"
    " 安乐 永安 太平 丰乐 孙营 堤口 汤山 葛岗 坝头 周营 赵岗 北关 西关 韩陵 槐树 枣林 榆林 大营 柴岗"
).split()
# Village names: [direction] + surname + settlement word + 村, e.g. 张庄村, 东李寨村, 小王营村.
_VILLAGE_PREFIXES = (("", 0.7), ("东", 0.04), ("西", 0.04), ("南", 0.04), ("北", 0.04),
                     ("前", 0.03), ("后", 0.03), ("大", 0.04), ("小", 0.04))
_VILLAGE_SURNAMES = 40
_VILLAGE_SETTLEMENTS = "庄楼寨营集岗店屯湾桥庙堂洼河口"

# Mobile prefixes by carrier, weighted roughly by subscriber share (移动 60%, 联通 25%, 电信 15%).
_PHONE_PREFIXES = (
    ((134, 135, 136, 137, 138, 139, 147, 150, 151, 152, 157, 158, 159, 178, 182, 183, 184, 187, 188, 198), 0.60),
    ((130, 131, 132, 145, 155, 156, 166, 175, 176, 185, 186), 0.25),
    ((133, 149, 153, 173, 177, 180, 181, 189, 191, 199), 0.15),
)

# GB 11643-1999 / ISO 7064 MOD 11-2: position i (0-based, from the left) of the 17 digits weighs
# 2**(17 - i) mod 11; the check character is (12 - sum mod 11) mod 11, 10 written as X.
_ID_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
_ID_CHECK_CHARS = np.array(list("0123456789X"))
# 17-digit sequence part: odd for men, even for women, 499 numbers each (001–997 / 002–998).
_ID_SEQUENCES_PER_BUCKET = 499

# Each part of the roster draws from its own stream, so changing or adding one part (a later
# data category) leaves every other part's draws unchanged. A part's position is its seed:
# append new parts, never reorder.
_STREAMS = ("structure", "households", "people", "names", "id_numbers", "phones")


def _stream(seed: int, part: str) -> Generator:
    return Generator(PCG64(SeedSequence(seed, spawn_key=(_STREAMS.index(part),))))


@dataclass(frozen=True, eq=False)
class Roster:
    """A county's plaintext roster as aligned columns. ``*_township``, ``*_village`` and
    ``*_household`` arrays are row indexes into the parent arrays, not database ids."""

    county_code: str
    as_of: dt.date
    township_code: np.ndarray  # int64, 9 digits
    township_name: np.ndarray  # str
    village_township: np.ndarray  # int64 index
    village_code: np.ndarray  # int64, 12 digits
    village_name: np.ndarray  # str
    household_village: np.ndarray  # int64 index
    household_code: np.ndarray  # int64, 16 digits: village code + 4-digit serial
    household_members: np.ndarray  # int64, 家庭人口 including people not on the roster
    farmer_household: np.ndarray  # int64 index, households' farmers are contiguous
    farmer_is_head: np.ndarray  # bool, exactly one per household (its first farmer)
    farmer_is_male: np.ndarray  # bool
    farmer_birth_date: np.ndarray  # datetime64[D]
    farmer_name: np.ndarray  # str
    farmer_id_number: np.ndarray  # str, 18 characters
    farmer_phone: np.ndarray  # str, 11 digits or "" for none

    @property
    def farmer_village(self) -> np.ndarray:
        return self.household_village[self.farmer_household]

    @property
    def farmer_age(self) -> np.ndarray:
        """Completed years at ``as_of``."""
        return _age_at(self.farmer_birth_date, self.as_of)


@dataclass(frozen=True, eq=False)
class RosterIds:
    """Database primary keys, aligned with the corresponding :class:`Roster` rows."""

    township: np.ndarray
    village: np.ndarray
    household: np.ndarray
    farmer: np.ndarray


@dataclass(frozen=True)
class GenerationReport:
    """What was written and how long each phase took. ``roster`` and ``ids`` stay in memory for
    phases that build on the roster (a later government-data category, a benchmark)."""

    county_code: str
    seed: int
    as_of: dt.date
    townships: int
    villages: int
    households: int
    farmers: int
    farmers_with_phone: int
    # Farmers of the previous roster deleted by ``replace``.
    replaced_farmers: int
    # Wall seconds per phase, in run order.
    seconds: dict[str, float]
    roster: Roster = field(repr=False)
    ids: RosterIds = field(repr=False)


# --- Drawing the roster (pure numpy) ---------------------------------------------------------


def roster_generate(*, county_code: str, farmers: int, seed: int, as_of: dt.date) -> Roster:
    """Draw a county roster of exactly ``farmers`` people. No database access."""
    household_rng = _stream(seed, "households")
    adults = _household_adults(household_rng, farmers)
    households = len(adults)
    township_code, township_name, village_township, village_code, village_name, village_surname, household_village = (
        _structure(_stream(seed, "structure"), county_code, households)
    )
    household_serial = np.arange(households) - np.searchsorted(household_village, household_village)
    household_code = village_code[household_village] * 10_000 + household_serial + 1
    members = np.minimum(adults + household_rng.poisson(_EXTRA_MEMBERS_MEAN, households), _MAX_MEMBERS)

    farmer_household = np.repeat(np.arange(households), adults)
    is_male, birth_date, role = _people(_stream(seed, "people"), adults, farmer_household, as_of)
    name = _names(
        _stream(seed, "names"), farmer_household, role, is_male, birth_date, village_surname[household_village]
    )
    return Roster(
        county_code=county_code,
        as_of=as_of,
        township_code=township_code,
        township_name=township_name,
        village_township=village_township,
        village_code=village_code,
        village_name=village_name,
        household_village=household_village,
        household_code=household_code,
        household_members=members,
        farmer_household=farmer_household,
        farmer_is_head=role == _HEAD,
        farmer_is_male=is_male,
        farmer_birth_date=birth_date,
        farmer_name=name,
        farmer_id_number=_id_numbers(_stream(seed, "id_numbers"), county_code, birth_date, is_male),
        farmer_phone=_phones(_stream(seed, "phones"), _age_at(birth_date, as_of)),
    )


def _household_adults(rng: Generator, farmers: int) -> np.ndarray:
    """Registered adults per household, summing to exactly ``farmers``: draw, cut at the
    household that reaches the total, and shrink that last household to fit."""
    sizes = rng.choice(np.arange(1, 4), size=farmers, p=_ADULTS_PER_HOUSEHOLD)
    running = np.cumsum(sizes)
    last = int(np.searchsorted(running, farmers))
    sizes = sizes[: last + 1]
    sizes[last] -= running[last] - farmers
    return sizes


def _structure(rng: Generator, county_code: str, households: int) -> tuple[np.ndarray, ...]:
    """Townships, villages and each household's village (households in village order)."""
    # 10–20 townships for a county-sized roster (one per ~15k households); a tiny test roster
    # gets fewer, so that no township is left with a handful of households.
    townships = int(np.clip(round(households / 15_000), 10, 20))
    townships = max(1, min(townships, households // 20))
    # Towns (镇, codes 1xx) and rural townships (乡, 2xx); the county seat 城关镇 is 100.
    is_town = np.concatenate([[True], rng.random(townships - 1) < 0.45])
    suffix_serial = np.cumsum(is_town) - 1, np.cumsum(~is_town) - 1
    township_part = np.where(is_town, 100 + suffix_serial[0], 200 + suffix_serial[1])
    stems = np.array(["城关", *rng.choice(_TOWNSHIP_STEMS, size=townships - 1, replace=False)])
    township_name = np.strings.add(stems, np.where(is_town, "镇", "乡"))
    township_code = int(county_code) * 1000 + township_part
    order = np.argsort(township_code, kind="stable")
    township_code, township_name = township_code[order], township_name[order]

    villages = max(townships, round(households / _HOUSEHOLDS_PER_VILLAGE))
    per_township = 1 + rng.multinomial(villages - townships, rng.dirichlet(np.full(townships, 8.0)))
    per_township = np.minimum(per_township, _MAX_VILLAGES_PER_TOWNSHIP)
    village_township = np.repeat(np.arange(townships), per_township)
    village_serial = np.arange(len(village_township)) - np.searchsorted(village_township, village_township)
    village_code = township_code[village_township] * 1000 + 200 + village_serial
    village_name, village_surname = _village_names(rng, per_township)

    # Village sizes vary about threefold between the 10th and 90th percentile.
    weights = rng.lognormal(0.0, 0.5, len(village_code))
    per_village = 1 + rng.multinomial(households - len(village_code), weights / weights.sum())
    household_village = np.repeat(np.arange(len(village_code)), per_village)
    return township_code, township_name, village_township, village_code, village_name, village_surname, household_village


def _village_names(rng: Generator, per_township: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Names unique within each township, and each village's surname (index into _SURNAMES)."""
    prefixes, prefix_weights = zip(*_VILLAGE_PREFIXES, strict=True)
    surname_weights = np.array([share for _name, share in _SURNAMES[:_VILLAGE_SURNAMES]])
    # Every (prefix, surname, settlement) combination, weighted; drawn without replacement.
    combo_weights = np.multiply.outer(np.multiply.outer(prefix_weights, surname_weights),
                                      np.ones(len(_VILLAGE_SETTLEMENTS))).ravel()
    combo_weights /= combo_weights.sum()
    combos = np.concatenate([
        rng.choice(combo_weights.size, size=count, replace=False, p=combo_weights) for count in per_township
    ])
    prefix, surname, settlement = np.unravel_index(
        combos, (len(prefixes), _VILLAGE_SURNAMES, len(_VILLAGE_SETTLEMENTS))
    )
    surname_chars = np.array([name for name, _share in _SURNAMES])
    name = np.strings.add(
        np.strings.add(np.array(prefixes)[prefix], surname_chars[surname]),
        np.strings.add(np.array(list(_VILLAGE_SETTLEMENTS))[settlement], "村"),
    )
    return name, surname


_HEAD, _SPOUSE, _RELATIVE = 0, 1, 2


def _people(
    rng: Generator, adults: np.ndarray, farmer_household: np.ndarray, as_of: dt.date
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gender, birth date and household role of every farmer. The head is drawn from the
    rural age pyramid; the second adult is usually the spouse (husband ~2 years older), else,
    like any third adult, a grown child (20–30 years younger) or a parent (22–30 years older)."""
    households = len(adults)
    member = np.arange(len(farmer_household)) - np.searchsorted(farmer_household, farmer_household)
    role = np.where(member == 0, _HEAD, np.where((member == 1) & (rng.random(len(member)) < 0.85), _SPOUSE, _RELATIVE))

    head_age = _pyramid_ages(rng, households, _MIN_HEAD_AGE)
    # Balanced overall: heads of couples are mostly men, people living alone half and half.
    head_male = rng.random(households) < np.where(adults == 1, 0.5, 0.7)
    husband_older_by = np.rint(rng.normal(2.0, 3.0, households)).astype(np.int64)
    spouse_age = np.where(head_male, head_age - husband_older_by, head_age + husband_older_by)
    # A grown child when the head is 44 or older (so that a gap of 20 to 26+ years still
    # leaves the child an adult), otherwise a parent.
    child_age = head_age - rng.integers(20, np.maximum(np.minimum(30, head_age - _MIN_AGE), 20) + 1)
    parent_age = head_age + rng.integers(22, 31, households)
    relative_age = np.where(head_age >= 44, child_age, parent_age)

    age = np.select(
        [role == _HEAD, role == _SPOUSE],
        [head_age[farmer_household], spouse_age[farmer_household]],
        relative_age[farmer_household],
    )
    age = np.clip(age, _MIN_AGE, _MAX_AGE)
    is_male = np.select(
        [role == _HEAD, role == _SPOUSE],
        [head_male[farmer_household], ~head_male[farmer_household]],
        rng.random(len(role)) < 0.5,
    )
    return is_male, _birth_dates(rng, age, as_of), role


def _pyramid_ages(rng: Generator, size: int, min_age: int) -> np.ndarray:
    ages = np.arange(min_age, _MAX_AGE + 1)
    weights = np.array([_RURAL_AGE_BANDS[(age - _FIRST_BAND_AGE) // 5] for age in ages])
    return rng.choice(ages, size=size, p=weights / weights.sum())


def _birth_dates(rng: Generator, age: np.ndarray, as_of: dt.date) -> np.ndarray:
    """A birth date uniformly within the year of life that makes each age exact at ``as_of``."""
    # latest[a]: the last birth date at which someone is already ``a`` on ``as_of``.
    latest = np.array([_years_before(as_of, years) for years in range(_MAX_AGE + 2)], dtype="datetime64[D]")
    earliest = latest[1:] + np.timedelta64(1, "D")
    span = (latest[age] - earliest[age]).astype(np.int64) + 1
    return earliest[age] + rng.integers(0, span).astype("timedelta64[D]")


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a common year
        return day.replace(year=day.year - years, day=28)


def _age_at(birth_date: np.ndarray, as_of: dt.date) -> np.ndarray:
    year, month, day = _date_parts(birth_date)
    birthday_to_come = (month > as_of.month) | ((month == as_of.month) & (day > as_of.day))
    return as_of.year - year - birthday_to_come


def _date_parts(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    years = dates.astype("datetime64[Y]")
    months = dates.astype("datetime64[M]")
    month = months.astype(np.int64) - years.astype("datetime64[M]").astype(np.int64) + 1
    return years.astype(np.int64) + 1970, month, (dates - months).astype(np.int64) + 1


def _names(
    rng: Generator,
    farmer_household: np.ndarray,
    role: np.ndarray,
    is_male: np.ndarray,
    birth_date: np.ndarray,
    household_village_surname: np.ndarray,
) -> np.ndarray:
    """Heads often carry their village's surname; spouses bring their own (women keep theirs);
    grown children and parents mostly carry the family's, which is the husband's."""
    size = len(role)
    surname_chars = np.array([name for name, _share in _SURNAMES])
    shares = np.array([share for _name, share in _SURNAMES])
    surname = rng.choice(len(_SURNAMES), size=size, p=shares / shares.sum())
    heads = np.flatnonzero(role == _HEAD)
    from_village = rng.random(len(heads)) < _VILLAGE_SURNAME_SHARE
    surname[heads] = np.where(from_village, household_village_surname, surname[heads])
    family_surname = surname[heads]
    husbands = np.flatnonzero((role == _SPOUSE) & is_male)
    family_surname[farmer_household[husbands]] = surname[husbands]
    takes_family_surname = (role == _RELATIVE) & (rng.random(size) < 0.85)
    surname = np.where(takes_family_surname, family_surname[farmer_household], surname)

    modern = _date_parts(birth_date)[0] >= _MODERN_NAMES_FROM_YEAR
    # One draw per character whatever the pool, so a person's draws do not depend on how many
    # others share their pool (and a different ``as_of`` changes only the names it moves
    # across the generation line).
    picks = rng.random((2, size))
    given = np.full((2, size), "", dtype="<U1")
    for (male, is_modern), chars in _GIVEN_CHARS.items():
        group = (is_male == male) & (modern == is_modern)
        pool = np.array(list(chars))
        given[:, group] = pool[(picks[:, group] * len(pool)).astype(np.int64)]
    second = np.where(rng.random(size) < _TWO_CHARACTER_GIVEN_NAME_SHARE, given[1], "")
    return np.strings.add(np.strings.add(surname_chars[surname], given[0]), second)


def _id_numbers(rng: Generator, county_code: str, birth_date: np.ndarray, is_male: np.ndarray) -> np.ndarray:
    """18-digit resident ID numbers: county region code, birth date, a sequence number unique
    within (birth date, gender) — odd for men, even for women — and the check character.

    Sequence numbers come from each person's rank among the farmers sharing their birth date
    and gender, shifted by a random offset per (date, gender) so that the common numbers are
    not all 001 and 002."""
    days = birth_date.astype(np.int64)
    bucket = days * 2 + is_male
    order = np.argsort(bucket, kind="stable")
    sorted_bucket = bucket[order]
    rank = np.empty(len(bucket), dtype=np.int64)
    rank[order] = np.arange(len(bucket)) - np.searchsorted(sorted_bucket, sorted_bucket)
    if rank.max() >= _ID_SEQUENCES_PER_BUCKET:
        raise ValueError("more farmers share one birth date and gender than ID sequence numbers exist")
    buckets, bucket_index = np.unique(bucket, return_inverse=True)
    offset = rng.integers(0, _ID_SEQUENCES_PER_BUCKET, len(buckets))[bucket_index]
    sequence = 2 * ((offset + rank) % _ID_SEQUENCES_PER_BUCKET) + np.where(is_male, 1, 2)

    year, month, day = _date_parts(birth_date)
    yyyymmdd = year * 10_000 + month * 100 + day
    first17 = int(county_code) * 10**11 + yyyymmdd * 1000 + sequence
    weighted = np.zeros(len(first17), dtype=np.int64)
    for position in range(17):
        weighted += (first17 // 10 ** (16 - position)) % 10 * _ID_WEIGHTS[position]
    check = _ID_CHECK_CHARS[(12 - weighted % 11) % 11]
    return np.strings.add(first17.astype("<U17"), check)


def _phones(rng: Generator, age: np.ndarray) -> np.ndarray:
    """Unique 11-digit mobile numbers for most farmers ("" for none); duplicates are redrawn."""
    share = np.select([age < 60, age < 70], _PHONE_SHARE_BY_AGE[:2], _PHONE_SHARE_BY_AGE[2])
    has_phone = rng.random(len(age)) < share
    prefixes = np.concatenate([carrier for carrier, _share in _PHONE_PREFIXES])
    weights = np.concatenate([np.full(len(carrier), share / len(carrier)) for carrier, share in _PHONE_PREFIXES])
    count = int(has_phone.sum())
    numbers = rng.choice(prefixes, size=count, p=weights) * 10**8 + rng.integers(0, 10**8, count)
    while True:
        _unique, first = np.unique(numbers, return_index=True)
        repeated = np.ones(count, dtype=bool)
        repeated[first] = False
        if not repeated.any():
            break
        numbers[repeated] = numbers[repeated] // 10**8 * 10**8 + rng.integers(0, 10**8, int(repeated.sum()))
    phone = np.full(len(age), "", dtype="<U11")
    phone[has_phone] = numbers.astype("<U11")
    return phone


# --- Writing it (COPY, one transaction) ------------------------------------------------------


def generate_county_data(
    *, county_code: str, farmers: int, seed: int, replace: bool = False, as_of: dt.date | None = None
) -> GenerationReport:
    """Fill the current schema, which must be county ``county_code``'s, with a synthetic roster
    of exactly ``farmers`` people, in one transaction.

    A county that already has a roster is refused unless ``replace``, which first empties it
    (farmers, households, villages, townships and township statistics) — provided no other
    data (consents, government records, access logs…) refers to it. ``as_of`` (default:
    today) is the date on which the ages 18–75 hold; pass it to reproduce a roster another day.
    """
    if not 1 <= farmers <= MAX_FARMERS:
        raise ValidationError(
            _("农民人数必须在 1 到 %(max)s 之间 / The number of farmers must be between 1 and %(max)s")
            % {"max": f"{MAX_FARMERS:,}"},
            code="farmers",
        )
    county = County.objects.filter(code=county_code).first()
    if county is None or connection.schema_name != county.schema_name:
        raise ValueError(f"generate_county_data must run inside county {county_code}'s schema (schema_context)")
    as_of = as_of or timezone.localdate()

    seconds: dict[str, float] = {}
    began = time.monotonic()
    roster = roster_generate(county_code=county_code, farmers=farmers, seed=seed, as_of=as_of)
    seconds["generate"] = _since(began)

    with transaction.atomic(durable=True), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # psycopg's own cursor, for COPY
        # Check foreign keys as each statement ends, not at commit: a wrong id fails the COPY
        # that wrote it (and tests, which never commit, check every key too).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        began = time.monotonic()
        replaced = _roster_clear(cursor, county_code=county_code, replace=replace)
        seconds["clear"] = _since(began)

        began = time.monotonic()
        # The roster tables are empty here (refused or cleared above): build their indexes and
        # check their foreign keys once after the load instead of once per row.
        with rebuilt_after_load(cursor, "counties_household"):
            ids = _write_structure(cursor, roster)
        seconds["structure"] = _since(began)

        began = time.monotonic()
        with rebuilt_after_load(cursor, "counties_farmer"):
            _write_farmers(cursor, roster, ids)
        seconds["farmers"] = _since(began)

        # The nightly batch plans its county-wide joins on these statistics; autovacuum would
        # gather them only some time after the load.
        began = time.monotonic()
        cursor.execute(f"ANALYZE {', '.join(_ROSTER_TABLES)}")
        seconds["analyze"] = _since(began)
        began = time.monotonic()
    seconds["commit"] = _since(began)

    return GenerationReport(
        county_code=county_code,
        seed=seed,
        as_of=as_of,
        townships=len(ids.township),
        villages=len(ids.village),
        households=len(ids.household),
        farmers=len(ids.farmer),
        farmers_with_phone=int(np.count_nonzero(roster.farmer_phone)),
        replaced_farmers=replaced,
        seconds=seconds,
        roster=roster,
        ids=ids,
    )


# Children before parents.
_ROSTER_TABLES = ("counties_farmer", "counties_household", "counties_village", "counties_township")


def _since(began: float) -> float:
    return round(time.monotonic() - began, 3)


def _roster_clear(cursor: psycopg.Cursor, *, county_code: str, replace: bool) -> int:
    """Lock the roster and, if the county has one, empty it or refuse. Returns farmers removed."""
    # Readers carry on; a registration or another generation waits until this one commits, so
    # the check below and the id ranges reserved later stay true.
    cursor.execute(f"LOCK TABLE {', '.join(_ROSTER_TABLES)}, counties_townshipdailystat IN EXCLUSIVE MODE")
    cursor.execute("SELECT (SELECT count(*) FROM counties_farmer), EXISTS (SELECT FROM counties_township)")
    farmers, has_townships = cursor.fetchone()
    if not farmers and not has_townships:
        return 0
    if not replace:
        raise ValidationError(
            _(
                "县 %(code)s 已有农户名册（%(farmers)s 名农民），如需重新生成请使用 --replace"
                " / County %(code)s already has a roster (%(farmers)s farmers); use --replace to regenerate it"
            )
            % {"code": county_code, "farmers": farmers},
            code="roster_exists",
        )
    cursor.execute("SELECT count(*) FROM counties_official WHERE township_id IS NOT NULL")
    (assigned,) = cursor.fetchone()
    if assigned:
        raise ValidationError(
            _(
                "县 %(code)s 有 %(count)s 名工作人员分配在乡镇，替换名册前请先取消分配"
                " / County %(code)s has %(count)s officials assigned to townships; unassign them before"
                " replacing the roster"
            )
            % {"code": county_code, "count": assigned},
            code="officials_assigned",
        )
    # Checked here only to say which: the foreign keys would refuse the deletes anyway.
    in_use = [table for table in _tables_referring_to_roster(cursor) if _has_rows(cursor, table)]
    if in_use:
        raise ValidationError(
            _(
                "县 %(code)s 的名册已被其他数据引用（%(tables)s），不能替换"
                " / County %(code)s's roster is referred to by other data (%(tables)s) and cannot be replaced"
            )
            % {"code": county_code, "tables": ", ".join(in_use)},
            code="roster_in_use",
        )
    for table in ("counties_townshipdailystat", *_ROSTER_TABLES):
        cursor.execute(f"DELETE FROM {table}")
    return farmers


def _tables_referring_to_roster(cursor: psycopg.Cursor) -> list[str]:
    """Tables outside the roster with a foreign key to it (consents, government records, access
    logs…); officials and township statistics are dealt with apart."""
    cursor.execute(
        """
        SELECT DISTINCT conrelid::regclass::text FROM pg_constraint
         WHERE contype = 'f' AND confrelid = ANY (%(roster)s::regclass[]) AND conrelid <> ALL (%(apart)s::regclass[])
         ORDER BY 1
        """,
        {"roster": list(_ROSTER_TABLES), "apart": [*_ROSTER_TABLES, "counties_official", "counties_townshipdailystat"]},
    )
    return [table for (table,) in cursor.fetchall()]


def _has_rows(cursor: psycopg.Cursor, table: str) -> bool:
    cursor.execute(f"SELECT EXISTS (SELECT FROM {table})")
    return cursor.fetchone()[0]


def _reserve_ids(cursor: psycopg.Cursor, table: str, count: int) -> np.ndarray:
    """Take ``count`` consecutive ids from the table's sequence (the table is locked, so no
    default can interleave), so parents' ids are known before their children are written."""
    cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
    (first,) = cursor.fetchone()
    cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, first + count - 1])
    return np.arange(first, first + count, dtype=np.int64)


def _write_structure(cursor: psycopg.Cursor, roster: Roster) -> RosterIds:
    township = _reserve_ids(cursor, "counties_township", len(roster.township_code))
    village = _reserve_ids(cursor, "counties_village", len(roster.village_code))
    household = _reserve_ids(cursor, "counties_household", len(roster.household_code))
    farmer = _reserve_ids(cursor, "counties_farmer", len(roster.farmer_household))
    _copy(cursor, "counties_township", ("id", "code", "name"),
          [_tsv(township, roster.township_code, roster.township_name)])
    _copy(cursor, "counties_village", ("id", "township_id", "code", "name"),
          [_tsv(village, township[roster.village_township], roster.village_code, roster.village_name)])
    _copy(cursor, "counties_household", ("id", "village_id", "code", "members"),
          [_tsv(household, village[roster.household_village], roster.household_code, roster.household_members)])
    return RosterIds(township=township, village=village, household=household, farmer=farmer)


_FARMER_COLUMNS = (
    "id", "household_id", "village_id", "name", "gender", "birth_date", "is_household_head",
    "id_number_encrypted", "id_number_hash", "phone_encrypted", "phone_hash", "registered_at",
)


def _write_farmers(cursor: psycopg.Cursor, roster: Roster, ids: RosterIds) -> None:
    # auto_now_add does not apply to COPY; the whole roster registers at the same moment.
    registered_at = timezone.now().isoformat()
    household_id = ids.household[roster.farmer_household]
    village_id = ids.village[roster.farmer_village]
    gender = np.where(roster.farmer_is_male, Farmer.Gender.MALE.value, Farmer.Gender.FEMALE.value)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(ids.farmer), _CHUNK_FARMERS):
            part = slice(start, start + _CHUNK_FARMERS)
            leading = _tsv_lines(
                ids.farmer[part], household_id[part], village_id[part], roster.farmer_name[part], gender[part],
                roster.farmer_birth_date[part], roster.farmer_is_head[part],
            )
            yield _with_protected_pii(
                leading.tolist(), roster.farmer_id_number[part].tolist(), roster.farmer_phone[part].tolist(),
                registered_at,
            )

    _copy(cursor, "counties_farmer", _FARMER_COLUMNS, chunks())


def _with_protected_pii(leading: list[str], id_numbers: list[str], phones: list[str], registered_at: str) -> bytes:
    """Complete the rows with ciphertext and blind index of ID and phone: the only per-row
    Python of the whole roster, kept to map() and comprehensions over the pii functions."""
    encrypt, blind_index = pii.encrypt, pii.blind_index
    rows = zip(
        leading,
        map(encrypt, id_numbers),
        map(blind_index, id_numbers),
        [encrypt(phone) if phone else "" for phone in phones],
        [blind_index(phone) if phone else "" for phone in phones],
        repeat(registered_at),
        strict=False,  # repeat() is endless
    )
    return ("\n".join(map("\t".join, rows)) + "\n").encode()


def _copy(cursor: psycopg.Cursor, table: str, columns: tuple[str, ...], chunks: Iterable[bytes]) -> None:
    # The writer thread sends one chunk while this thread prepares the next, and PostgreSQL
    # (the real bottleneck: index upkeep) works on a third.
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
        for chunk in chunks:
            copy.write(chunk)


def _tsv(*columns: np.ndarray) -> bytes:
    return ("\n".join(_tsv_lines(*columns).tolist()) + "\n").encode()


def _tsv_lines(*columns: np.ndarray) -> np.ndarray:
    """Rows in COPY text format, without escaping: every value here is digits, a date, a
    boolean, base64 or a Chinese name, none of which can hold a tab, newline or backslash."""
    line = columns[0].astype(str)
    for column in columns[1:]:
        line = np.strings.add(np.strings.add(line, "\t"), column.astype(str))
    return line
