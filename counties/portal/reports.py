"""The portal's monthly reports (reads only): the loan book by five-category classification and
township, consents by township, and the access log's readers. Each is a :class:`Report` — one
header and rows of plain values — that the page shows and :mod:`counties.portal.exports` writes
as CSV or XLSX.

Definitions for a month M (calendar month, Asia/Shanghai):

* **Loans.** Balance and count at M's end from the ledger: per loan, the LOANS_RECEIVABLE
  debits minus credits of entries dated on or before M's last day (a loan counts when that
  balance is above zero; a write-off's credit takes it off the book). New loans: started in M
  (count, principal). Repayments: those with a business date in M (count, amount, the part
  that went to principal). Grouped by the farmer's township and the loan's **current**
  classification (classifications are not kept per date); per township a subtotal, and for
  the county a row per classification and the total.
* **Consents.** Status at M's end: the status the consent's last event before the end of M set
  (consents granted later are not counted). Grants and revocations: events ``granted`` and
  ``revoked`` in M (a consent replaced by re-consent is not a revocation).
* **Access.** Access-log rows in M by accessor type, accessor, partner, consent purpose and the
  official's stated purpose: reads, farmers covered (a batch read covers many), distinct
  farmers named, first and last read.

A township officer's reports cover their township only (``township_id``); the access report
is for the access log's readers.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.translation import get_language

from counties.models import FarmerLookup, Township
from data_sharing.models import AccessLog, Consent
from loans.models import Account, Loan

ZERO = Decimal("0.00")


def _english() -> bool:
    return (get_language() or "").startswith("en")


def _label(zh: str, en: str) -> str:
    return en if _english() else zh


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str | None) -> Month:
        """``YYYY-MM``; anything else is this month."""
        try:
            year, month = (int(part) for part in (text or "").split("-"))
            if 2000 <= year <= 2100 and 1 <= month <= 12:
                return cls(year, month)
        except ValueError:
            pass
        today = timezone.localdate()
        return cls(today.year, today.month)

    @property
    def first(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def last(self) -> dt.date:
        return dt.date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def start(self) -> dt.datetime:
        """00:00 of the first day, Asia/Shanghai."""
        return timezone.make_aware(dt.datetime.combine(self.first, dt.time()))

    @property
    def end(self) -> dt.datetime:
        """00:00 of the next month's first day (exclusive)."""
        return timezone.make_aware(dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time()))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass
class Report:
    kind: str
    title: str
    month: Month
    # (zh, en) per column; files show both, the page the current language's.
    columns: list[tuple[str, str]]
    rows: list[list[Any]] = field(default_factory=list)
    # Rows that are subtotals or totals (indices), for the page's emphasis.
    total_rows: set[int] = field(default_factory=set)

    @property
    def header(self) -> list[str]:
        return [f"{zh} {en}" for zh, en in self.columns]

    @property
    def page_header(self) -> list[str]:
        return [_label(zh, en) for zh, en in self.columns]

    @property
    def page_rows(self) -> list[dict]:
        """Rows for the page: totals marked, numbers to be right-aligned, times as times."""
        return [
            {
                "total": index in self.total_rows,
                "cells": [
                    {
                        "value": value,
                        "number": isinstance(value, int | Decimal) and not isinstance(value, bool),
                        "money": isinstance(value, Decimal),
                        "time": isinstance(value, dt.datetime),
                    }
                    for value in row
                ],
            }
            for index, row in enumerate(self.rows)
        ]


def _fetch(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _township_filter(township_id: int | None) -> str:
    return "AND v.township_id = %(township_id)s" if township_id is not None else ""


def _townships(township_id: int | None) -> list[Township]:
    townships = Township.objects.order_by("code")
    return list(townships.filter(pk=township_id) if township_id is not None else townships)


# --- Loans -----------------------------------------------------------------------------------------

_LOAN_TOWNSHIP = """
      JOIN counties_farmer f ON f.id = lo.farmer_id
      JOIN counties_village v ON v.id = f.village_id
"""

LOAN_SQL = {
    "book": f"""
        WITH balance AS (
            SELECT jl.loan_id, sum(jl.debit - jl.credit) AS amount
              FROM loans_journalline jl
              JOIN loans_journalentry je ON je.id = jl.entry_id
             WHERE jl.account = %(account)s AND jl.loan_id IS NOT NULL AND je.business_date <= %(last)s
             GROUP BY jl.loan_id
        )
        SELECT v.township_id, lo.classification, count(*), sum(b.amount)
          FROM balance b
          JOIN loans_loan lo ON lo.id = b.loan_id
          {_LOAN_TOWNSHIP}
         WHERE b.amount > 0 {{scope}}
         GROUP BY 1, 2""",
    "new": f"""
        SELECT v.township_id, lo.classification, count(*), sum(lo.principal)
          FROM loans_loan lo
          {_LOAN_TOWNSHIP}
         WHERE lo.start_date BETWEEN %(first)s AND %(last)s {{scope}}
         GROUP BY 1, 2""",
    "repaid": f"""
        SELECT v.township_id, lo.classification, count(*), sum(r.amount), sum(r.to_principal)
          FROM loans_repayment r
          JOIN loans_loan lo ON lo.id = r.loan_id
          {_LOAN_TOWNSHIP}
         WHERE r.business_date BETWEEN %(first)s AND %(last)s {{scope}}
         GROUP BY 1, 2""",
}
LOAN_MEASURES = ("loans", "balance", "new_loans", "new_principal", "repayments", "repaid", "repaid_principal")
_MONEY_MEASURES = frozenset({"balance", "new_principal", "repaid", "repaid_principal"})


def _empty_cell() -> dict[str, Any]:
    return {name: ZERO if name in _MONEY_MEASURES else 0 for name in LOAN_MEASURES}


def _summed(cells: list[dict[str, Any]]) -> list[Any]:
    empty = _empty_cell()
    return [sum((cell[name] for cell in cells), empty[name]) for name in LOAN_MEASURES]


def loan_figures(*, month: Month, township_id: int | None = None) -> dict[tuple[int, str], dict[str, Any]]:
    """{(township id, classification): {measure: value}} for the month, only where something is."""
    params = {"first": month.first, "last": month.last, "account": Account.LOANS_RECEIVABLE, "township_id": township_id}
    scope = _township_filter(township_id)
    figures: dict[tuple[int, str], dict[str, Any]] = {}

    def cell(key: tuple[int, str]) -> dict[str, Any]:
        return figures.setdefault(key, _empty_cell())

    for township, cls, count, amount in _fetch(LOAN_SQL["book"].format(scope=scope), params):
        cell((township, cls)).update(loans=count, balance=amount)
    for township, cls, count, amount in _fetch(LOAN_SQL["new"].format(scope=scope), params):
        cell((township, cls)).update(new_loans=count, new_principal=amount)
    for township, cls, count, amount, principal in _fetch(LOAN_SQL["repaid"].format(scope=scope), params):
        cell((township, cls)).update(repayments=count, repaid=amount, repaid_principal=principal)
    return figures


def loan_report(*, month: Month, township_id: int | None = None) -> Report:
    figures = loan_figures(month=month, township_id=township_id)
    report = Report(
        kind="loans",
        title=_label("贷款月报", "Monthly loan report"),
        month=month,
        columns=[
            ("乡镇代码", "Township code"), ("乡镇", "Township"), ("五级分类", "Classification"),
            ("月末笔数", "Loans at month end"), ("月末余额（元）", "Balance at month end (yuan)"),
            ("本月新增笔数", "New loans"), ("本月新增金额（元）", "New principal (yuan)"),
            ("本月还款笔数", "Repayments"), ("本月还款金额（元）", "Repaid (yuan)"),
            ("其中本金（元）", "Of which principal (yuan)"),
        ],
    )
    classes = Loan.Classification.choices
    county, total = _label("全县", "County"), _label("合计", "Total")
    for township in _townships(township_id):
        cells = [figures.get((township.pk, code), _empty_cell()) for code, _name in classes]
        for (_code, name), cell in zip(classes, cells, strict=True):
            report.rows.append([township.code, township.name, str(name), *_summed([cell])])
        report.total_rows.add(len(report.rows))
        report.rows.append([township.code, township.name, total, *_summed(cells)])
    if township_id is None:
        for code, name in classes:
            report.total_rows.add(len(report.rows))
            report.rows.append(["", county, str(name), *_summed([c for (_t, cls), c in figures.items() if cls == code])])
        report.total_rows.add(len(report.rows))
        report.rows.append(["", county, total, *_summed(list(figures.values()))])
    return report


# --- Consents --------------------------------------------------------------------------------------

CONSENT_SQL = {
    "status": """
        WITH last_event AS (
            SELECT DISTINCT ON (e.consent_id) e.consent_id, e.to_status
              FROM data_sharing_consentevent e
             WHERE e.at < %(end)s
             ORDER BY e.consent_id, e.at DESC, e.id DESC
        )
        SELECT v.township_id, le.to_status, count(*), count(DISTINCT c.farmer_id)
          FROM last_event le
          JOIN data_sharing_consent c ON c.id = le.consent_id
          JOIN counties_farmer f ON f.id = c.farmer_id
          JOIN counties_village v ON v.id = f.village_id
         WHERE true {scope}
         GROUP BY 1, 2""",
    "events": """
        SELECT v.township_id, e.event, count(*)
          FROM data_sharing_consentevent e
          JOIN data_sharing_consent c ON c.id = e.consent_id
          JOIN counties_farmer f ON f.id = c.farmer_id
          JOIN counties_village v ON v.id = f.village_id
         WHERE e.at >= %(start)s AND e.at < %(end)s AND e.event IN ('granted', 'revoked') {scope}
         GROUP BY 1, 2""",
}
CONSENT_STATUSES = tuple(Consent.Status.values)  # active, paused, revoked, expired


def consent_report(*, month: Month, township_id: int | None = None) -> Report:
    params = {"start": month.start, "end": month.end, "township_id": township_id}
    scope = _township_filter(township_id)
    status: dict[tuple[int, str], tuple[int, int]] = {
        (township, to_status): (count, farmers)
        for township, to_status, count, farmers in _fetch(CONSENT_SQL["status"].format(scope=scope), params)
    }
    events = {(township, event): count for township, event, count in _fetch(CONSENT_SQL["events"].format(scope=scope), params)}
    report = Report(
        kind="consents",
        title=_label("授权月报", "Monthly consent report"),
        month=month,
        columns=[
            ("乡镇代码", "Township code"), ("乡镇", "Township"),
            ("月末有效", "Active at month end"), ("月末暂停", "Paused at month end"),
            ("月末已撤回", "Revoked at month end"), ("月末已过期", "Expired at month end"),
            ("有效授权农户", "Farmers with an active consent"),
            ("本月授权", "Granted in the month"), ("本月撤回", "Revoked in the month"),
        ],
    )
    totals = [0] * 7
    for township in _townships(township_id):
        row = [status.get((township.pk, code), (0, 0))[0] for code in CONSENT_STATUSES]
        row += [status.get((township.pk, Consent.Status.ACTIVE), (0, 0))[1]]
        row += [events.get((township.pk, "granted"), 0), events.get((township.pk, "revoked"), 0)]
        totals = [a + b for a, b in zip(totals, row, strict=True)]
        report.rows.append([township.code, township.name, *row])
    if township_id is None:
        report.total_rows.add(len(report.rows))
        report.rows.append(["", _label("全县", "County"), *totals])
    return report


# --- Access ----------------------------------------------------------------------------------------

ACCESS_SQL = f"""
    SELECT a.accessor_type, a.accessor, coalesce(p.code, ''), a.purpose, coalesce(l.purpose, ''),
           count(*), sum(a.farmer_count), count(DISTINCT a.farmer_id), min(a.at), max(a.at)
      FROM {AccessLog._meta.db_table} a
      LEFT JOIN platform_lendingpartner p ON p.id = a.partner_id
      LEFT JOIN {FarmerLookup._meta.db_table} l ON l.access_log_id = a.id
     WHERE a.at >= %(start)s AND a.at < %(end)s
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY 1, 2, 3, 4, 5
"""


def access_report(*, month: Month) -> Report:
    rows = _fetch(ACCESS_SQL, {"start": month.start, "end": month.end})
    accessor_types = dict(AccessLog.Accessor.choices)
    purposes = dict(FarmerLookup.Purpose.choices)
    report = Report(
        kind="access",
        title=_label("数据访问月报", "Monthly data access report"),
        month=month,
        columns=[
            ("访问者类型", "Accessor type"), ("访问者", "Accessor"), ("贷款机构", "Partner"),
            ("授权用途", "Consent purpose"), ("查询目的", "Stated purpose"),
            ("访问次数", "Reads"), ("涉及人次", "Farmers covered"), ("涉及农户（单人查询）", "Farmers named"),
            ("首次", "First"), ("最近", "Last"),
        ],
    )
    total_reads = total_covered = 0
    for kind, accessor, partner, purpose, stated, reads, covered, named, first, last in rows:
        report.rows.append([
            str(accessor_types.get(kind, kind)), accessor, partner, purpose, str(purposes.get(stated, stated)),
            reads, covered, named, timezone.localtime(first), timezone.localtime(last),
        ])
        total_reads += reads
        total_covered += covered
    report.total_rows.add(len(report.rows))
    report.rows.append([_label("合计", "Total"), "", "", "", "", total_reads, total_covered, "", "", ""])
    return report
