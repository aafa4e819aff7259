"""Print a loan's repayment schedule (还款计划) — pure arithmetic, no county needed:

    manage.py loan_schedule --principal 50000 --annual-rate 0.0435 --months 12 \\
        --method equal_installment [--start YYYY-MM-DD] [--first-period-days N] [--json]

Methods: equal_installment 等额本息, equal_principal 等额本金, interest_only 先息后本,
bullet 到期一次还本付息. ``--json`` prints ``Schedule.as_dict()``.
"""

from __future__ import annotations

import json
import unicodedata
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from loans.schedule import METHOD_LABELS, Method, Schedule, schedule_build
from platform.commands import date_or_error

# (zh, en, width) of each column; widths are in terminal cells, where a Chinese character takes two.
COLUMNS = (
    ("期数", "period", 6),
    ("还款日", "due date", 10),
    ("本金", "principal", 14),
    ("利息", "interest", 12),
    ("月供", "payment", 14),
    ("剩余本金", "remaining", 14),
)


class Command(BaseCommand):
    help = (
        "Print a loan's repayment schedule (equal installment, equal principal, interest only or bullet) "
        "with its totals and APR."
    )

    def add_arguments(self, parser):
        parser.add_argument("--principal", required=True, help="yuan, at most 2 decimals, e.g. 50000")
        parser.add_argument("--annual-rate", required=True, help="annual rate as a fraction, e.g. 0.0435")
        parser.add_argument("--months", required=True, help="number of monthly periods, 1–360")
        parser.add_argument(
            "--method",
            default=Method.EQUAL_INSTALLMENT.value,
            help=f"one of {', '.join(Method)} (default equal_installment)",
        )
        parser.add_argument("--start", help="loan start date YYYY-MM-DD (default: today)")
        parser.add_argument("--first-period-days", help="days of interest in period 1, when it is irregular")
        parser.add_argument("--json", action="store_true", help="print the schedule as JSON")

    def handle(self, *args, **options):
        start = date_or_error(options["start"], default=timezone.localdate())
        first_period_days = options["first_period_days"]
        try:
            schedule = schedule_build(
                principal=_number_or_error(options["principal"], "本金", "principal"),
                annual_rate=_number_or_error(options["annual_rate"], "年利率", "annual rate"),
                months=_whole_or_error(options["months"], "期数", "months"),
                method=options["method"],
                start=start,
                first_period_days=(
                    None
                    if first_period_days in (None, "")
                    else _whole_or_error(first_period_days, "首期天数", "first period days")
                ),
            )
        except ValueError as error:
            raise CommandError(str(error)) from None

        if options["json"]:
            self.stdout.write(json.dumps(schedule.as_dict(), ensure_ascii=False, indent=2))
        else:
            self._table(schedule)

    def _table(self, schedule: Schedule) -> None:
        zh, en = METHOD_LABELS[schedule.method]
        self.stdout.write(
            f"{zh} {en}: {schedule.principal:,.2f} 元 yuan, 年利率 annual rate {_percent(schedule.annual_rate)}, "
            f"{len(schedule.periods)} 期 periods from {schedule.start.isoformat()}"
        )
        self.stdout.write(_row(label for label, _, _ in COLUMNS))
        self.stdout.write(_row(label for _, label, _ in COLUMNS))
        for period in schedule.periods:
            self.stdout.write(
                _row(
                    (
                        str(period.number),
                        period.due_date.isoformat(),
                        f"{period.principal:,.2f}",
                        f"{period.interest:,.2f}",
                        f"{period.payment:,.2f}",
                        f"{period.remaining:,.2f}",
                    )
                )
            )
        self.stdout.write(
            f"合计 total: 利息 interest {schedule.total_interest:,.2f}, 还款 payment {schedule.total_payment:,.2f}; "
            f"年化利率 APR {_percent(schedule.apr)}"
        )


def _row(cells) -> str:
    return "  ".join(_pad(cell, width) for cell, (_, _, width) in zip(cells, COLUMNS, strict=True)).rstrip()


def _pad(text: str, width: int) -> str:
    """Right-align ``text`` in ``width`` terminal cells (a Chinese character takes two)."""
    cells = sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)
    return " " * max(width - cells, 0) + text


def _percent(rate: Decimal) -> str:
    return f"{rate * 100:.2f}%"


def _number_or_error(value: str, label_zh: str, label_en: str) -> Decimal:
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise CommandError(f"{label_zh}应为数字 / {label_en} must be a number: {value}") from None


def _whole_or_error(value: str | int, label_zh: str, label_en: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise CommandError(f"{label_zh}应为整数 / {label_en} must be a whole number: {value}") from None
