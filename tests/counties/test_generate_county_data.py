"""The synthetic county roster: exact size, valid and unique personal identifiers stored only
encrypted, a realistic shape, determinism by seed, and the command's refusals."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from io import StringIO

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F

from counties.models import Farmer, Household, Official, Township, TownshipDailyStat, Village
from counties.services import township_stats_refresh
from counties.synthetic import generate_county_data, roster_generate
from data_sharing.models import AccessLog
from data_sharing.pii import blind_index, decrypt, id_check_digit, validate_id_number, validate_phone
from tests.conftest import in_county, make_farmer, valid_id_number

AS_OF = dt.date(2025, 6, 30)


def _generate(county, *, farmers: int = 500, seed: int = 7, replace: bool = False):
    with in_county(county):
        return generate_county_data(county_code=county.code, farmers=farmers, seed=seed, replace=replace, as_of=AS_OF)


def _plaintext_roster() -> list[tuple]:
    """Every farmer of the current county, decrypted, in a stable order."""
    rows = Farmer.objects.values_list(
        "name", "gender", "birth_date", "is_household_head", "id_number_encrypted", "phone_encrypted",
        "household__code", "village__code",
    )
    return sorted(
        (name, gender, birth_date, head, decrypt(id_cipher), decrypt(phone_cipher) if phone_cipher else "",
         household, village)
        for name, gender, birth_date, head, id_cipher, phone_cipher, household, village in rows
    )


def _age(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def test_500_farmers_with_seed_7_give_exactly_this_roster(lankao):
    report = _generate(lankao)

    assert (report.townships, report.villages, report.households, report.farmers) == (10, 10, 247, 500)
    assert (report.farmers_with_phone, report.replaced_farmers, report.seed, report.as_of) == (438, 0, 7, AS_OF)
    assert list(report.seconds) == ["generate", "clear", "structure", "farmers", "analyze", "commit"]
    with in_county(lankao):
        assert Township.objects.count() == 10
        assert Village.objects.count() == 10
        assert Household.objects.count() == 247
        assert Farmer.objects.count() == 500
        assert sorted(Township.objects.values_list("name", flat=True)) == sorted(
            ["城关镇", "葛岗镇", "王店镇", "固阳镇", "柴岗镇", "白马乡", "丰乐乡", "三义寨乡", "花园乡", "仪封乡"]
        )
        assert Township.objects.get(code="410225100").name == "城关镇"
        first = Farmer.objects.get(pk=report.ids.farmer[0])
        assert (first.name, first.gender, first.birth_date, first.is_household_head) == (
            "郝富建", "M", dt.date(1968, 2, 22), True
        )
        assert decrypt(first.id_number_encrypted) == "410225196802221676"
        assert decrypt(first.phone_encrypted) == "18215327606"
        assert first.registered_at is not None


def test_codes_nest_and_foreign_keys_match_the_structure(lankao):
    _generate(lankao)
    with in_county(lankao):
        for township in Township.objects.all():
            assert len(township.code) == 9 and township.code.startswith("410225")
            assert township.name.endswith(("镇", "乡"))
        for village in Village.objects.select_related("township"):
            assert len(village.code) == 12 and village.code.startswith(village.township.code)
            assert village.name.endswith("村")
        households = list(Household.objects.select_related("village"))
        assert len({household.code for household in households}) == len(households)
        assert all(household.code.startswith(household.village.code) for household in households)
        # The denormalised village of every farmer is its household's village.
        assert Farmer.objects.exclude(village_id=F("household__village_id")).count() == 0
        # Every foreign key written by COPY points at an existing row.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_every_household_has_one_head_and_one_to_three_registered_adults(lankao):
    _generate(lankao)
    with in_county(lankao):
        farmers_per_household = Counter(Farmer.objects.values_list("household_id", flat=True))
        heads_per_household = Counter(Farmer.objects.filter(is_household_head=True).values_list("household_id", flat=True))
        members = dict(Household.objects.values_list("id", "members"))
    assert set(farmers_per_household) == set(members)
    assert Counter(farmers_per_household.values()) == {1: 61, 2: 119, 3: 67}
    assert set(heads_per_household) == set(members) and set(heads_per_household.values()) == {1}
    # 家庭人口 counts the registered adults and the people not on the roster.
    assert all(farmers_per_household[household] <= members[household] <= 9 for household in members)
    assert sum(members.values()) == 806


def test_id_numbers_are_valid_unique_and_match_birth_date_and_gender(lankao):
    _generate(lankao)
    with in_county(lankao):
        farmers = list(Farmer.objects.values_list("birth_date", "gender", "id_number_encrypted", "id_number_hash"))
    id_numbers = []
    for birth_date, gender, cipher, hash_ in farmers:
        number = decrypt(cipher)
        assert validate_id_number(number) == number
        assert number[:6] == "410225"
        assert number[6:14] == f"{birth_date:%Y%m%d}"
        assert int(number[16]) % 2 == (1 if gender == "M" else 0)
        assert 1 <= int(number[14:17]) <= 998
        assert number[17] == id_check_digit(number[:17])
        assert hash_ == blind_index(number)
        assert number not in cipher
        id_numbers.append(number)
    assert len(set(id_numbers)) == 500


def test_phones_are_valid_unique_mobile_numbers_for_most_farmers(lankao):
    _generate(lankao)
    with in_county(lankao):
        farmers = list(Farmer.objects.values_list("phone_encrypted", "phone_hash"))
    phones = [decrypt(cipher) for cipher, _hash in farmers if cipher]
    assert len(phones) == 438  # 87.6%
    assert len(set(phones)) == 438
    assert all(validate_phone(phone) == phone for phone in phones)
    assert sorted(hash_ for cipher, hash_ in farmers if cipher) == sorted(blind_index(phone) for phone in phones)
    assert all(hash_ == "" for cipher, hash_ in farmers if not cipher)


def test_ages_and_genders_are_those_of_a_rural_roster(lankao):
    _generate(lankao)
    with in_county(lankao):
        farmers = list(Farmer.objects.values_list("birth_date", "gender", "is_household_head"))
    ages = [_age(birth_date, AS_OF) for birth_date, _gender, _head in farmers]
    assert (min(ages), max(ages)) == (18, 75)
    assert min(_age(birth_date, AS_OF) for birth_date, _gender, head in farmers if head) >= 25
    assert Counter(gender for _birth, gender, _head in farmers) == {"M": 259, "F": 241}
    assert 40 <= float(np.median(ages)) <= 55


def test_a_large_roster_keeps_its_calibration():
    roster = roster_generate(county_code="410225", farmers=300_000, seed=1, as_of=AS_OF)
    ages = roster.farmer_age
    assert len(roster.farmer_name) == 300_000
    assert 140_000 <= len(roster.household_code) <= 146_000  # mean 2.1 adults per household
    assert 10 <= len(roster.township_code) <= 20
    assert (ages.min(), ages.max()) == (18, 75)
    assert 0.48 <= roster.farmer_is_male.mean() <= 0.52
    assert 0.83 <= np.count_nonzero(roster.farmer_phone) / 300_000 <= 0.88
    assert 3.1 <= roster.household_members.mean() <= 3.5
    assert len(np.unique(roster.farmer_id_number)) == 300_000
    phones = roster.farmer_phone[roster.farmer_phone != ""]
    assert len(np.unique(phones)) == len(phones)
    assert np.bincount(roster.farmer_household).max() == 3
    assert np.array_equal(np.flatnonzero(roster.farmer_is_head), np.searchsorted(roster.farmer_household, np.arange(len(roster.household_code))))


def test_the_same_seed_gives_the_same_people_in_another_county(lankao, jinzhai):
    _generate(lankao)
    _generate(jinzhai)
    with in_county(lankao):
        in_lankao = _plaintext_roster()
    with in_county(jinzhai):
        in_jinzhai = _plaintext_roster()

    def without_county(row: tuple) -> tuple:
        # Only the county code differs: in the codes, in the ID's region (and so its check digit).
        name, gender, birth_date, head, id_number, phone, household, village = row
        return name, gender, birth_date, head, id_number[6:17], phone, household[6:], village[6:]

    assert [without_county(row) for row in in_lankao] == [without_county(row) for row in in_jinzhai]
    assert {row[4][:6] for row in in_jinzhai} == {"341524"}
    assert all(row[4][17] == id_check_digit(row[4][:17]) for row in in_jinzhai)


def test_replace_regenerates_the_same_roster_and_clears_township_statistics(lankao):
    first = _generate(lankao)
    with in_county(lankao):
        before = _plaintext_roster()
        township_stats_refresh(business_date=AS_OF)
        assert TownshipDailyStat.objects.count() == 10

    again = _generate(lankao, replace=True)

    assert again.replaced_farmers == 500 and again.farmers == 500
    with in_county(lankao):
        assert _plaintext_roster() == before
        assert Farmer.objects.count() == 500 and Household.objects.count() == 247
        assert TownshipDailyStat.objects.count() == 0
        # New rows, new ids: nothing of the first roster survives.
        assert not Farmer.objects.filter(pk__in=first.ids.farmer.tolist()).exists()


def test_another_seed_gives_other_people():
    seven = roster_generate(county_code="410225", farmers=500, seed=7, as_of=AS_OF)
    eight = roster_generate(county_code="410225", farmers=500, seed=8, as_of=AS_OF)
    assert seven.farmer_name.tolist() != eight.farmer_name.tolist()
    assert seven.farmer_id_number.tolist() != eight.farmer_id_number.tolist()


def test_a_later_as_of_date_moves_birth_dates_and_little_else():
    now = roster_generate(county_code="410225", farmers=500, seed=7, as_of=AS_OF)
    later = roster_generate(county_code="410225", farmers=500, seed=7, as_of=AS_OF + dt.timedelta(days=365))
    assert now.farmer_phone.tolist() == later.farmer_phone.tolist()
    assert np.array_equal(now.farmer_is_male, later.farmer_is_male)
    assert np.array_equal(now.farmer_age, later.farmer_age)
    assert (later.farmer_birth_date > now.farmer_birth_date).all()
    # Names follow the birth year's fashion: only people moved across 1980 change given names.
    line = np.datetime64("1980-01-01")
    crossed = (now.farmer_birth_date < line) != (later.farmer_birth_date < line)
    assert np.array_equal(now.farmer_name != later.farmer_name, crossed)
    assert crossed.sum() == 13


def test_command_generates_and_prints_the_report(lankao):
    out = StringIO()
    call_command(
        "generate_county_data", county="410225", farmers=500, seed=7, as_of="2025-06-30", roster_only=True, stdout=out
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "兰考县 410225: 10 townships, 10 villages, 247 households, 500 farmers (438 with phone);"
        " seed 7, ages as of 2025-06-30"
    )
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "generate", "clear", "structure", "farmers", "analyze", "commit", "total"
    ]
    with in_county(lankao):
        assert Farmer.objects.count() == 500


def test_command_refuses_a_county_with_a_roster_unless_replace(lankao):
    call_command("generate_county_data", county="410225", farmers=500, seed=7, roster_only=True, stdout=StringIO())
    with pytest.raises(CommandError) as refused:
        call_command("generate_county_data", county="410225", farmers=300, seed=1, stdout=StringIO())
    assert str(refused.value) == (
        "县 410225 已有农户名册（500 名农民），如需重新生成请使用 --replace"
        " / County 410225 already has a roster (500 farmers); use --replace to regenerate it"
    )
    with in_county(lankao):
        assert Farmer.objects.count() == 500

    out = StringIO()
    call_command("generate_county_data", county="410225", farmers=300, seed=1, replace=True, stdout=out)
    assert "replaced a roster of 500 farmers" in out.getvalue()
    with in_county(lankao):
        assert Farmer.objects.count() == 300


def test_a_hand_registered_farmer_counts_as_a_roster(lankao):
    with in_county(lankao):
        make_farmer(id_number=valid_id_number(seq=901))
    with pytest.raises(ValidationError) as refused:
        _generate(lankao)
    assert refused.value.code == "roster_exists"


def test_replace_is_refused_while_other_data_refers_to_the_roster(lankao):
    report = _generate(lankao)
    with in_county(lankao):
        AccessLog.objects.create(
            accessor_type=AccessLog.Accessor.OFFICIAL, accessor="admin", farmer_id=int(report.ids.farmer[0]),
            farmer_count=1, categories=[], purpose="查询",
        )
    with pytest.raises(CommandError) as refused:
        call_command("generate_county_data", county="410225", farmers=500, seed=7, replace=True, stdout=StringIO())
    assert str(refused.value) == (
        "县 410225 的名册已被其他数据引用（data_sharing_accesslog），不能替换"
        " / County 410225's roster is referred to by other data (data_sharing_accesslog) and cannot be replaced"
    )
    with in_county(lankao):
        assert Farmer.objects.count() == 500


def test_replace_is_refused_while_officials_are_assigned_to_townships(lankao):
    _generate(lankao)
    with in_county(lankao):
        Official.objects.filter(role=Official.Role.COUNTY_ADMIN).update(township=Township.objects.first())
    with pytest.raises(CommandError) as refused:
        call_command("generate_county_data", county="410225", farmers=500, seed=7, replace=True, stdout=StringIO())
    assert str(refused.value) == (
        "县 410225 有 1 名工作人员分配在乡镇，替换名册前请先取消分配"
        " / County 410225 has 1 officials assigned to townships; unassign them before replacing the roster"
    )


def test_command_refuses_an_unknown_county(db):
    with pytest.raises(CommandError) as refused:
        call_command("generate_county_data", county="999999", farmers=10, stdout=StringIO())
    assert str(refused.value) == "没有代码为 999999 的县 / no county with code 999999"


@pytest.mark.parametrize("farmers", [0, 5_000_001])
def test_command_refuses_a_roster_size_out_of_range(lankao, farmers):
    with pytest.raises(CommandError) as refused:
        call_command("generate_county_data", county="410225", farmers=farmers, stdout=StringIO())
    assert str(refused.value) == (
        "农民人数必须在 1 到 5,000,000 之间 / The number of farmers must be between 1 and 5,000,000"
    )


def test_the_service_refuses_to_write_into_another_countys_schema(lankao, jinzhai):
    with in_county(jinzhai), pytest.raises(ValueError, match="inside county 410225's schema"):
        generate_county_data(county_code="410225", farmers=10, seed=1, as_of=AS_OF)


def test_command_refuses_a_malformed_as_of_date(lankao):
    with pytest.raises(CommandError) as refused:
        call_command("generate_county_data", county="410225", farmers=10, as_of="2025-13-01", stdout=StringIO())
    assert str(refused.value) == "日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD: 2025-13-01"
