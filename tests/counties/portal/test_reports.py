"""The monthly reports against independent SQL (exact), their CSV and XLSX files with formula
escaping, and who may read which report (a township officer only their township's, the access
report only the access log's readers)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone
from openpyxl import load_workbook

from counties.models import Official, Township, Village
from counties.portal.reports import Month
from data_sharing.models import AccessLog
from loans.ledger import journal_post
from loans.models import Account, CreditLine, JournalEntry, Loan, Repayment
from tests.counties.portal.conftest import farmer_in
from tests.data_sharing.test_consent import make_partner

R = Official.Role
OCTOBER = Month(2026, 10)
FORMULA_TOWNSHIP = '=HYPERLINK("http://evil.example","x")'
FORMULA_ACCESSORS = ["=cmd|' /C calc'!A0", "@SUM(1+1)", "+1+1", "-2+3"]
CLASS_LABELS = dict(Loan.Classification.choices)


class LoanBook:
    """Loans with their ledger: disbursed on the start date, repaid (principal + interest) on
    business dates before, in and after October 2026, in three townships (one named like a
    formula)."""

    def __init__(self, townships):
        self.partner = make_partner("report-bank", "报表银行")
        formula = Township.objects.create(code="410225803", name=FORMULA_TOWNSHIP)
        Village.objects.create(township=formula, code="410225803001", name="=A1村")
        self.farmers = {
            "e1": farmer_in("410225801001", "东一", 701), "e2": farmer_in("410225801002", "东二", 702),
            "w1": farmer_in("410225802001", "西一", 703), "x1": farmer_in("410225803001", "=1+2", 704),
        }
        self.lines = {
            key: CreditLine.objects.create(
                farmer=farmer, amount=Decimal("50000.00"), grade="B", annual_rate=Decimal("0.06"),
                valid_until=dt.date(2027, 9, 1), business_date=dt.date(2026, 9, 1),
            )
            for key, farmer in self.farmers.items()
        }
        self.loans = {
            "l1": self.loan("e1", "10000.00", dt.date(2026, 9, 10), "normal"),
            "l2": self.loan("e2", "5000.00", dt.date(2026, 10, 5), "special_mention"),
            "l3": self.loan("e2", "3000.00", dt.date(2026, 9, 1), "normal"),
            "l4": self.loan("x1", "8000.00", dt.date(2026, 10, 31), "loss"),
            "l5": self.loan("w1", "2000.00", dt.date(2026, 11, 2), "normal"),
        }
        self.repay("l1", dt.date(2026, 10, 10), "1000.00", "50.00")
        self.repay("l1", dt.date(2026, 11, 10), "1000.00", "45.00")
        self.repay("l3", dt.date(2026, 9, 30), "1000.00", "15.00")
        self.repay("l3", dt.date(2026, 10, 20), "2000.00", "10.00")
        self.repay("l4", dt.date(2026, 10, 31), "0.00", "3.33")

    def loan(self, who: str, principal: str, start: dt.date, classification: str) -> Loan:
        amount = Decimal(principal)
        loan = Loan.objects.create(
            farmer=self.farmers[who], line=self.lines[who], partner=self.partner, principal=amount,
            annual_rate=Decimal("0.06"), penalty_rate=Decimal("0.09"), term_months=12, method="equal_principal",
            start_date=start, maturity_date=start + dt.timedelta(days=365), outstanding_principal=amount,
            classification=classification, last_closed_date=dt.date(2026, 11, 28),
        )
        journal_post(kind=JournalEntry.Kind.DISBURSEMENT, business_date=start, loan=loan,
                     debits={Account.LOANS_RECEIVABLE: amount}, credits={Account.PARTNER_SETTLEMENT: amount})
        return loan

    def repay(self, key: str, day: dt.date, principal: str, interest: str) -> None:
        loan, principal_amount, interest_amount = self.loans[key], Decimal(principal), Decimal(interest)
        Repayment.objects.create(
            loan=loan, kind="scheduled", amount=principal_amount + interest_amount, to_interest=interest_amount,
            to_principal=principal_amount, business_date=day, channel="mobile",
        )
        journal_post(kind=JournalEntry.Kind.REPAYMENT, business_date=day, loan=loan,
                     debits={Account.PARTNER_SETTLEMENT: principal_amount + interest_amount},
                     credits={Account.LOANS_RECEIVABLE: principal_amount, Account.INTEREST_RECEIVABLE: interest_amount})


@pytest.fixture
def loan_book(portal):
    return LoanBook(portal.townships)


def _sql(query: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def _independent_loan_figures(month: Month) -> dict[tuple[str, str], list]:
    """The loan report's cells from the loans and repayments alone (not the ledger): the
    balance at month end is the principal less the principal repaid by then."""
    cells: dict[tuple[str, str], list] = {}

    def cell(code: str, cls: str) -> list:
        return cells.setdefault((code, cls), [0, Decimal("0.00"), 0, Decimal("0.00"), 0, Decimal("0.00"), Decimal("0.00")])

    township = """JOIN counties_farmer f ON f.id = lo.farmer_id JOIN counties_village v ON v.id = f.village_id
                  JOIN counties_township t ON t.id = v.township_id"""
    params = {"first": month.first, "last": month.last}
    for code, cls, count, balance in _sql(f"""
            SELECT t.code, lo.classification, count(*), sum(lo.principal - coalesce(r.paid, 0))
              FROM loans_loan lo {township}
              LEFT JOIN (SELECT loan_id, sum(to_principal) AS paid FROM loans_repayment
                          WHERE business_date <= %(last)s GROUP BY loan_id) r ON r.loan_id = lo.id
             WHERE lo.start_date <= %(last)s AND lo.principal - coalesce(r.paid, 0) > 0
             GROUP BY 1, 2""", params):
        cell(code, cls)[0:2] = [count, balance]
    for code, cls, count, principal in _sql(f"""
            SELECT t.code, lo.classification, count(*), sum(lo.principal) FROM loans_loan lo {township}
             WHERE lo.start_date >= %(first)s AND lo.start_date <= %(last)s GROUP BY 1, 2""", params):
        cell(code, cls)[2:4] = [count, principal]
    for code, cls, count, amount, principal in _sql(f"""
            SELECT t.code, lo.classification, count(r.id), sum(r.amount), sum(r.to_principal)
              FROM loans_repayment r JOIN loans_loan lo ON lo.id = r.loan_id {township}
             WHERE r.business_date >= %(first)s AND r.business_date <= %(last)s GROUP BY 1, 2""", params):
        cell(code, cls)[4:7] = [count, amount, principal]
    return cells


def _report_cells(report) -> dict[tuple[str, str], list]:
    labels = {str(label): code for code, label in CLASS_LABELS.items()}
    return {
        (row[0], labels[row[2]]): row[3:]
        for row in report["rows"]
        if row[0] and row[2] in labels and any(row[3:])
    }


def _context_report(response, kind: str) -> dict:
    report = next(report for report in response.context["reports"] if report.kind == kind)
    return {"rows": report.rows, "header": report.header}


def test_the_loan_report_matches_independent_sql(portal, loan_book):
    portal.login(R.RISK_OFFICER)
    response = portal.get("/portal/reports/", month="2026-10")
    report = _context_report(response, "loans")
    expected = _independent_loan_figures(OCTOBER)

    assert _report_cells(report) == expected
    # Spelled out: l1 9,000 left of 10,000; l2 new 5,000; l3 repaid to nothing in October; l4 new
    # on the 31st; l5 starts in November.
    assert expected == {
        ("410225801", "normal"): [1, Decimal("9000.00"), 0, Decimal("0.00"), 2, Decimal("3060.00"), Decimal("3000.00")],
        ("410225801", "special_mention"): [1, Decimal("5000.00"), 1, Decimal("5000.00"), 0, Decimal("0.00"), Decimal("0.00")],
        ("410225803", "loss"): [1, Decimal("8000.00"), 1, Decimal("8000.00"), 1, Decimal("3.33"), Decimal("0.00")],
    }
    total = report["rows"][-1]
    assert total[:3] == ["", "全县", "合计"]
    assert total[3:] == [3, Decimal("22000.00"), 2, Decimal("13000.00"), 3, Decimal("3063.33"), Decimal("3000.00")]
    east_subtotal = next(row for row in report["rows"] if row[0] == "410225801" and row[2] == "合计")
    assert east_subtotal[3:5] == [2, Decimal("14000.00")]
    # Every township × class is listed, zeros included: 3 townships × (5 + subtotal) + 5 + total.
    assert len(report["rows"]) == 3 * 6 + 6
    # November: l5 new, l1's second repayment, l3 closed.
    november = _report_cells(_context_report(portal.get("/portal/reports/", month="2026-11"), "loans"))
    assert november == _independent_loan_figures(Month(2026, 11))
    assert november[("410225802", "normal")][:4] == [1, Decimal("2000.00"), 1, Decimal("2000.00")]


def test_the_consent_report_matches_independent_sql(portal, book):
    from data_sharing.services import consent_pause

    consent_pause(consent=book.farmers["a2"].consents.get(), actor="farmer")
    portal.login(R.COUNTY_ADMIN)
    month = Month.parse(None)
    report = _context_report(portal.get("/portal/reports/", month=str(month)), "consents")
    start, end = month.start, month.end
    by_status = {
        (code, status): count
        for code, status, count in _sql("""
            SELECT t.code, c.status, count(*) FROM data_sharing_consent c
              JOIN counties_farmer f ON f.id = c.farmer_id JOIN counties_village v ON v.id = f.village_id
              JOIN counties_township t ON t.id = v.township_id GROUP BY 1, 2""", {})
    }
    farmers = dict(_sql("""
        SELECT t.code, count(DISTINCT c.farmer_id) FROM data_sharing_consent c
          JOIN counties_farmer f ON f.id = c.farmer_id JOIN counties_village v ON v.id = f.village_id
          JOIN counties_township t ON t.id = v.township_id WHERE c.status = 'active' GROUP BY 1""", {}))
    granted = dict(_sql("""
        SELECT t.code, count(*) FROM data_sharing_consent c
          JOIN counties_farmer f ON f.id = c.farmer_id JOIN counties_village v ON v.id = f.village_id
          JOIN counties_township t ON t.id = v.township_id
         WHERE c.created_at >= %(start)s AND c.created_at < %(end)s GROUP BY 1""", {"start": start, "end": end}))
    revoked = dict(_sql("""
        SELECT t.code, count(*) FROM data_sharing_consent c
          JOIN counties_farmer f ON f.id = c.farmer_id JOIN counties_village v ON v.id = f.village_id
          JOIN counties_township t ON t.id = v.township_id
         WHERE c.status = 'revoked' AND c.ended_at >= %(start)s AND c.ended_at < %(end)s GROUP BY 1""", {"start": start, "end": end}))

    expected = [
        [code, name, *(by_status.get((code, status), 0) for status in ("active", "paused", "revoked", "expired")),
         farmers.get(code, 0), granted.get(code, 0), revoked.get(code, 0)]
        for code, name in (("410225801", "东坝头镇"), ("410225802", "西坝头镇"))
    ]
    assert report["rows"][:2] == expected
    assert expected[0] == ["410225801", "东坝头镇", 4, 1, 1, 0, 3, 6, 1]  # b2 consents twice; a2 paused
    assert report["rows"][2] == ["", "全县", *[a + b for a, b in zip(expected[0][2:], expected[1][2:], strict=True)]]
    # The month before: none of these consents existed yet.
    previous = Month(month.year - (month.month == 1), 12 if month.month == 1 else month.month - 1)
    earlier = _context_report(portal.get("/portal/reports/", month=str(previous)), "consents")
    assert [row[2:] for row in earlier["rows"]] == [[0] * 7] * 3


def _access_logs() -> None:
    for accessor in FORMULA_ACCESSORS:
        AccessLog.objects.create(accessor_type="partner", accessor=accessor, farmer_count=1, categories=["land_contract"], purpose="credit")
    AccessLog.objects.create(accessor_type="job", accessor="nightly", farmer_count=250, categories=["land_contract"], purpose="credit")
    AccessLog.objects.create(accessor_type="job", accessor="nightly", farmer_count=251, categories=["land_contract"], purpose="credit")


def test_the_access_report_matches_independent_sql(portal):
    _access_logs()
    portal.login(R.AUDITOR)
    month = Month.parse(None)
    report = _context_report(portal.get("/portal/reports/", month=str(month)), "access")
    expected = _sql("""
        SELECT accessor, count(*), sum(farmer_count) FROM data_sharing_accesslog
         WHERE at >= %(start)s AND at < %(end)s GROUP BY 1 ORDER BY 1""", {"start": month.start, "end": month.end})
    got = sorted((row[1], row[5], row[6]) for row in report["rows"][:-1])
    assert got == sorted(expected)
    assert ("nightly", 2, 501) in got
    assert report["rows"][-1][5:7] == [sum(n for _a, n, _f in expected), sum(f for _a, _n, f in expected)]


def _csv_rows(response) -> list[list[str]]:
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def test_csv_and_xlsx_escape_formulas_and_keep_numbers(portal, loan_book):
    _access_logs()
    portal.login(R.COUNTY_ADMIN)
    loans_csv = portal.get("/portal/reports/loans.csv", month="2026-10")
    loans_xlsx = portal.get("/portal/reports/loans.xlsx", month="2026-10")
    month = Month.parse(None)
    access_csv = portal.get("/portal/reports/access.csv", month=str(month))
    access_xlsx = portal.get("/portal/reports/access.xlsx", month=str(month))

    assert loans_csv["Content-Disposition"] == 'attachment; filename="loans-report-410225-2026-10.csv"'
    assert loans_xlsx["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    rows = _csv_rows(loans_csv)
    assert rows[0][:3] == ["乡镇代码 Township code", "乡镇 Township", "五级分类 Classification"]
    formula_rows = [row for row in rows if row[0] == "410225803"]
    assert formula_rows and {row[1] for row in formula_rows} == {"'" + FORMULA_TOWNSHIP}
    assert ["410225803", "'" + FORMULA_TOWNSHIP, "损失", "1", "8000.00", "1", "8000.00", "1", "3.33", "0.00"] in rows

    sheet = load_workbook(io.BytesIO(loans_xlsx.content)).active
    cells = [row for row in sheet.iter_rows() if row[0].value == "410225803"]
    assert {row[1].value for row in cells} == {"'" + FORMULA_TOWNSHIP}
    assert all(row[1].data_type == "s" for row in cells)
    loss = next(row for row in cells if row[2].value == "损失")
    assert (loss[4].value, loss[4].data_type) == (8000, "n")  # numbers stay numbers
    assert not any(cell.data_type == "f" for row in sheet.iter_rows() for cell in row)

    accessors = {row[1] for row in _csv_rows(access_csv)[1:]}
    assert {"'" + accessor for accessor in FORMULA_ACCESSORS} <= accessors
    access_sheet = load_workbook(io.BytesIO(access_xlsx.content)).active
    values = [cell.value for row in access_sheet.iter_rows() for cell in row]
    assert all(("'" + accessor) in values for accessor in FORMULA_ACCESSORS)
    assert not any(value in values for value in FORMULA_ACCESSORS)
    assert not any(cell.data_type == "f" for row in access_sheet.iter_rows() for cell in row)


def test_a_township_officer_gets_their_townships_reports_only(portal, loan_book):
    _access_logs()
    portal.login(R.TOWNSHIP_OFFICER, township=portal.townships["east"])
    response = portal.get("/portal/reports/", month="2026-10")
    kinds = [report.kind for report in response.context["reports"]]
    loans = _context_report(response, "loans")
    csv_rows = _csv_rows(portal.get("/portal/reports/loans.csv", month="2026-10"))

    assert kinds == ["loans", "consents"]
    assert {row[0] for row in loans["rows"]} == {"410225801"}
    assert {row[0] for row in csv_rows[1:]} == {"410225801"}
    assert loans["rows"][-1][3:5] == [2, Decimal("14000.00")]
    assert {row[0] for row in _context_report(response, "consents")["rows"]} == {"410225801"}
    assert portal.get("/portal/reports/access.csv").status_code == 403
    assert portal.get("/portal/reports/access.xlsx").status_code == 403


@pytest.mark.parametrize("role,status", [(R.RISK_OFFICER, 403), (R.AUDITOR, 200), (R.COUNTY_ADMIN, 200)])
def test_only_the_access_logs_readers_get_the_access_report(portal, role, status):
    portal.login(role)
    assert portal.get("/portal/reports/access.csv").status_code == status
    kinds = [report.kind for report in portal.get("/portal/reports/").context["reports"]]
    assert ("access" in kinds) == (status == 200)


def test_a_data_officer_gets_no_reports(portal):
    portal.login(R.DATA_OFFICER)
    assert portal.get("/portal/reports/").status_code == 403
    assert portal.get("/portal/reports/loans.csv").status_code == 403
    assert portal.get("/portal/reports/nothing.csv").status_code == 403  # refused before anything else


def test_an_unknown_report_or_format_is_not_found(portal):
    portal.login(R.COUNTY_ADMIN)
    assert portal.get("/portal/reports/nothing.csv").status_code == 404
    assert portal.get("/portal/reports/loans.pdf").status_code == 404


def test_month_parsing():
    assert (str(Month.parse("2026-02")), Month.parse("2026-02").last) == ("2026-02", dt.date(2026, 2, 28))
    assert str(Month.parse("nonsense")) == timezone.localdate().strftime("%Y-%m")
    assert Month(2026, 12).end == timezone.make_aware(dt.datetime(2027, 1, 1))
