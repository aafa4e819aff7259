"""manage.py loan_schedule: the table, the JSON and bilingual errors; pure arithmetic, no county."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from loans.schedule import schedule_build

ARGUMENTS = ["--principal", "50000", "--annual-rate", "0.0435", "--months", "12", "--start", "2026-01-15"]


def run(*arguments: str) -> str:
    out = StringIO()
    call_command("loan_schedule", *arguments, stdout=out)
    return out.getvalue()


def test_table_shows_each_period_and_the_totals():
    lines = run(*ARGUMENTS, "--method", "equal_installment").splitlines()
    assert (
        lines[0]
        == "等额本息 Equal installment: 50,000.00 元 yuan, 年利率 annual rate 4.35%, 12 期 periods from 2026-01-15"
    )
    assert lines[1].split() == ["期数", "还款日", "本金", "利息", "月供", "剩余本金"]
    assert lines[2].split() == ["period", "due", "date", "principal", "interest", "payment", "remaining"]
    # 4,265.50 − 50,000 × 0.003625 = 4,084.25 of principal
    assert lines[3] == "     1  2026-02-15        4,084.25        181.25        4,265.50       45,915.75"
    assert lines[14].split() == ["12", "2027-01-15", "4,250.03", "15.41", "4,265.44", "0.00"]
    assert lines[15] == "合计 total: 利息 interest 1,185.94, 还款 payment 51,185.94; 年化利率 APR 4.35%"
    assert len(lines) == 16


def test_json_is_the_schedule_as_a_dict():
    data = json.loads(run(*ARGUMENTS, "--method", "equal_principal", "--json"))
    assert (
        data
        == schedule_build(
            principal=Decimal("50000"),
            annual_rate=Decimal("0.0435"),
            months=12,
            method="equal_principal",
            start=dt.date(2026, 1, 15),
        ).as_dict()
    )
    assert (data["periods"][0]["payment"], data["total_interest"]) == ("4347.92", "1178.12")


def test_first_period_days_reaches_the_schedule():
    data = json.loads(run(*ARGUMENTS, "--first-period-days", "45", "--json"))
    # 50,000 × 0.0435 / 360 × 45 = 271.875 → 271.88
    assert (data["first_period_days"], data["periods"][0]["interest"]) == (45, "271.88")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--method", "balloon"], "未知的还款方式 balloon / unknown repayment method balloon"),
        (["--principal", "-500"], "本金必须大于 0 / principal must be positive"),
        (["--principal", "12.345"], "本金最多两位小数"),
        (["--principal", "lots"], "本金应为数字 / principal must be a number"),
        (["--annual-rate", "4.35"], "年利率必须在 0 到 1 之间"),
        (["--months", "twelve"], "期数应为整数 / months must be a whole number"),
        (["--months", "0"], "期数必须在 1 到 360 个月之间"),
        (["--start", "2026/01/15"], "日期格式应为 YYYY-MM-DD"),
    ],
)
def test_bad_arguments_are_command_errors_in_chinese_and_english(arguments, message):
    # argparse keeps the last of a repeated option, so these override ARGUMENTS.
    with pytest.raises(CommandError, match=message):
        run(*ARGUMENTS, *arguments)
