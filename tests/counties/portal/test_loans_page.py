"""The loans overview: balances by five-category classification × township (checked against
SQL), the filtered list, and classifications moving after the night's close."""

from __future__ import annotations

from decimal import Decimal

from django.db import connection

from counties.models import Official
from loans.models import Loan


def _sql_matrix() -> dict[tuple[str, str], tuple[int, Decimal]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT t.code, o.classification, count(*), sum(o.outstanding_principal)
                 FROM loans_loan o JOIN counties_farmer f ON f.id = o.farmer_id
                 JOIN counties_village v ON v.id = f.village_id JOIN counties_township t ON t.id = v.township_id
                WHERE o.status = 'active' GROUP BY 1, 2"""
        )
        return {(code, cls): (n, balance) for code, cls, n, balance in cursor.fetchall()}


def _page_matrix(response) -> dict[tuple[str, str], tuple[int, Decimal]]:
    return {
        (row.code, cell["code"]): (cell["loans"], cell["balance"])
        for row in response.context["rows"]
        for cell in row.cells
        if cell["loans"]
    }


def test_balances_by_classification_and_township_match_sql(portal, book):
    portal.login(Official.Role.RISK_OFFICER)
    response = portal.get("/portal/loans/")
    assert _page_matrix(response) == _sql_matrix()
    assert _page_matrix(response)[("410225801", "substandard")] == (1, Decimal("40000.00"))
    total = response.context["total"]
    assert (total.loans, total.balance) == (
        sum(n for n, _b in _sql_matrix().values()), sum(b for _n, b in _sql_matrix().values())
    )
    # Closed and written-off loans are not on the book.
    listed = {loan.pk for loan in response.context["page"]}
    assert book.loans["b1_closed"].pk not in listed and book.loans["c2_written_off"].pk not in listed


def test_the_list_filters_by_classification_township_and_overdue(portal, book):
    portal.login(Official.Role.COUNTY_ADMIN)
    ids = lambda **query: [loan.pk for loan in portal.get("/portal/loans/", **query).context["page"]]  # noqa: E731
    assert ids(classification="loss") == [book.loans["c1"].pk]
    assert ids(classification="normal", township="410225801") == [book.loans["a1"].pk, book.loans["b1_ok"].pk]
    assert ids(overdue="1", township="410225801") == [
        book.loans["b1_doubtful"].pk, book.loans["b1_bad"].pk, book.loans["a2"].pk,
    ]  # most days past due first
    html = portal.get("/portal/loans/", classification="doubtful").content.decode()
    assert "999.99" in html and "可疑" in html and f'href="/portal/farmers/{book.farmers["b1"].pk}/"' in html


def test_balances_and_classes_move_after_the_nightly_close(portal, book):
    portal.login(Official.Role.AUDITOR)
    before = _page_matrix(portal.get("/portal/loans/"))
    # What the close does overnight: days past due grow, a class moves, a repayment lands.
    Loan.objects.filter(pk=book.loans["a2"].pk).update(days_past_due=91, classification="substandard")
    Loan.objects.filter(pk=book.loans["a1"].pk).update(outstanding_principal=Decimal("16000.50"))
    response = portal.get("/portal/loans/")
    after = _page_matrix(response)
    assert after == _sql_matrix()
    assert before[("410225801", "special_mention")] == (1, Decimal("9000.25"))
    assert ("410225801", "special_mention") not in after
    assert after[("410225801", "substandard")] == (2, Decimal("49000.25"))
    assert after[("410225801", "normal")] == (2, Decimal("31000.50"))
    assert 'href="/portal/farmers/' not in response.content.decode()  # an auditor opens no farmer pages
