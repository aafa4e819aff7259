"""The dashboard's figures, checked against SQL written independently of the selectors: per
township, per village, for the county and over business dates; a township officer sees only
their township."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import connection

from counties.models import Official, Township
from counties.portal.portfolio import portfolio_stats_refresh
from counties.services import township_stats_refresh
from loans.models import Loan

CENT = Decimal("0.01")

# Each figure by township (GROUP BY) and by village, straight from the tables.
FIGURES_SQL = """
WITH area AS (
    SELECT v.id AS village_id, {key} AS key FROM counties_village v JOIN counties_township t ON t.id = v.township_id
)
SELECT a.key,
       (SELECT count(*) FROM counties_farmer f JOIN area x ON x.village_id = f.village_id WHERE x.key = a.key),
       (SELECT count(DISTINCT c.farmer_id) FROM data_sharing_consent c JOIN counties_farmer f ON f.id = c.farmer_id
          JOIN area x ON x.village_id = f.village_id WHERE x.key = a.key AND c.status = 'active'),
       (SELECT count(*) FROM loans_creditline l JOIN counties_farmer f ON f.id = l.farmer_id
          JOIN area x ON x.village_id = f.village_id WHERE x.key = a.key AND l.status = 'active'),
       (SELECT coalesce(sum(l.amount), 0) FROM loans_creditline l JOIN counties_farmer f ON f.id = l.farmer_id
          JOIN area x ON x.village_id = f.village_id WHERE x.key = a.key AND l.status = 'active'),
       (SELECT coalesce(sum(l.outstanding_principal), 0) FROM loans_creditline l JOIN counties_farmer f ON f.id = l.farmer_id
          JOIN area x ON x.village_id = f.village_id WHERE x.key = a.key AND l.status = 'active'),
       (SELECT count(*) FROM loans_loan o JOIN counties_farmer f ON f.id = o.farmer_id
          JOIN area x ON x.village_id = f.village_id WHERE x.key = a.key AND o.status = 'active'),
       (SELECT coalesce(sum(o.outstanding_principal), 0) FROM loans_loan o JOIN counties_farmer f ON f.id = o.farmer_id
          JOIN area x ON x.village_id = f.village_id WHERE x.key = a.key AND o.status = 'active'),
       (SELECT coalesce(sum(o.outstanding_principal), 0) FROM loans_loan o JOIN counties_farmer f ON f.id = o.farmer_id
          JOIN area x ON x.village_id = f.village_id WHERE x.key = a.key AND o.status = 'active' AND o.days_past_due > 0),
       (SELECT coalesce(sum(o.outstanding_principal), 0) FROM loans_loan o JOIN counties_farmer f ON f.id = o.farmer_id
          JOIN area x ON x.village_id = f.village_id WHERE x.key = a.key AND o.status = 'active'
           AND o.classification IN ('substandard', 'doubtful', 'loss'))
  FROM (SELECT DISTINCT key FROM area) a
"""
COLUMNS = [
    "registered", "consented", "lined", "lines_amount", "lines_used", "loans", "loan_balance", "overdue_balance",
    "npl_balance",
]


def _ratio_sql(numerator, denominator) -> str | None:
    if not Decimal(denominator):
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT round(%s::numeric / %s::numeric, 4)", [numerator, denominator])
        return str(cursor.fetchone()[0])


def _expected(row: tuple) -> dict:
    values = dict(zip(COLUMNS, row, strict=True))
    for name in ("lines_amount", "lines_used", "loan_balance", "overdue_balance", "npl_balance"):
        values[name] = str(Decimal(values[name]).quantize(CENT))
    values["consent_coverage"] = _ratio_sql(values["consented"], values["registered"])
    values["line_coverage"] = _ratio_sql(values["lined"], values["registered"])
    values["utilisation"] = _ratio_sql(values["lines_used"], values["lines_amount"])
    values["overdue_ratio"] = _ratio_sql(values["overdue_balance"], values["loan_balance"])
    values["npl_ratio"] = _ratio_sql(values["npl_balance"], values["loan_balance"])
    return values


def sql_figures(key: str) -> dict[str, dict]:
    """{area key: figures}; ``key`` is "t.code" (townships), "v.code" (villages) or "'all'"."""
    with connection.cursor() as cursor:
        cursor.execute(FIGURES_SQL.format(key=key))
        return {row[0]: _expected(row[1:]) for row in cursor.fetchall()}


def _by_code(areas: list[dict]) -> dict[str, dict]:
    return {area["code"]: {k: v for k, v in area.items() if k not in ("code", "name")} for area in areas}


def test_every_figure_matches_independent_sql_by_township_village_and_county(portal, book):
    portal.login(Official.Role.COUNTY_ADMIN)
    data = portal.get("/portal/dashboard.json").json()
    assert data["total"] == sql_figures("'all'")["all"]
    assert _by_code(data["townships"]) == sql_figures("t.code")
    assert data["villages"] == []  # villages only for an opened township

    east = portal.get("/portal/dashboard.json", township="410225801").json()
    expected_villages = sql_figures("v.code")
    assert _by_code(east["villages"]) == {code: expected_villages[code] for code in ("410225801001", "410225801002")}

    # The figures worked out by hand for the book, so the SQL above is itself checked.
    by_township = _by_code(data["townships"])
    assert by_township["410225801"] == {
        "registered": 6, "consented": 4, "lined": 4,
        "lines_amount": "161000.00", "lines_used": "85000.00",
        "loans": 5, "loan_balance": "83000.74", "overdue_balance": "50000.24", "npl_balance": "40999.99",
        "consent_coverage": "0.6667", "line_coverage": "0.6667", "utilisation": "0.5280",
        "overdue_ratio": "0.6024", "npl_ratio": "0.4940",
    }
    assert by_township["410225802"] == {
        "registered": 2, "consented": 1, "lined": 1,
        "lines_amount": "20000.00", "lines_used": "5000.00",
        "loans": 1, "loan_balance": "5000.00", "overdue_balance": "5000.00", "npl_balance": "5000.00",
        "consent_coverage": "0.5000", "line_coverage": "0.5000", "utilisation": "0.2500",
        "overdue_ratio": "1.0000", "npl_ratio": "1.0000",
    }


def test_the_page_shows_the_same_figures_and_loads_echarts_from_the_project(portal, book):
    portal.login(Official.Role.RISK_OFFICER)
    page = portal.get("/portal/")
    html = page.content.decode()
    total = page.context["data"].total
    assert (total.registered, str(total.loan_balance)) == (
        sql_figures("'all'")["all"]["registered"], sql_figures("'all'")["all"]["loan_balance"]
    )
    assert '<script src="/static/portal/echarts.min.js"></script>' in html
    assert "cdn" not in html.lower()
    assert 'data-dashboard-url="/portal/dashboard.json"' in html
    assert "东坝头镇" in html and "西坝头镇" in html


def test_a_township_officer_sees_only_their_township(portal, book):
    portal.login(Official.Role.TOWNSHIP_OFFICER, township=portal.townships["west"])
    data = portal.get("/portal/dashboard.json", township="410225801").json()  # asking for another township: ignored
    west = sql_figures("t.code")["410225802"]
    assert data["scope"] == "410225802"
    assert data["total"] == west
    assert [area["code"] for area in data["townships"]] == ["410225802"]
    assert _by_code(data["villages"]) == {"410225802001": sql_figures("v.code")["410225802001"]}
    html = portal.get("/portal/").content.decode()
    assert "西坝头镇" in html and "东坝头镇" not in html and "张庄村" not in html


def test_history_per_business_date_from_the_nightly_snapshots(portal, book):
    day1 = dt.date(2026, 11, 20)
    day2 = day1 + dt.timedelta(days=1)
    for day in (day1,):
        township_stats_refresh(business_date=day)
        assert portfolio_stats_refresh(business_date=day) == {"townships": Township.objects.count()}
    before = sql_figures("'all'")["all"]

    # The night's close moves a loan from 关注 to 次级 and another is repaid in full.
    Loan.objects.filter(pk=book.loans["a2"].pk).update(classification="substandard", days_past_due=95)
    Loan.objects.filter(pk=book.loans["b1_ok"].pk).update(status="closed", outstanding_principal=Decimal("0.00"))
    township_stats_refresh(business_date=day2)
    portfolio_stats_refresh(business_date=day2)
    after = sql_figures("'all'")["all"]
    # An older date run again keeps its snapshot (today's state is not that date's).
    assert portfolio_stats_refresh(business_date=day1) == {"townships": 0, "skipped": 1}

    portal.login(Official.Role.COUNTY_ADMIN)
    history = {point["business_date"]: point for point in portal.get("/portal/dashboard.json").json()["history"]}
    assert {key: value for key, value in history[day1.isoformat()].items() if key != "business_date"} == before
    assert {key: value for key, value in history[day2.isoformat()].items() if key != "business_date"} == after
    assert history[day1.isoformat()]["npl_ratio"] != history[day2.isoformat()]["npl_ratio"]

    portal.login(Official.Role.TOWNSHIP_OFFICER, township=portal.townships["west"])
    west_history = portal.get("/portal/dashboard.json").json()["history"]
    west = sql_figures("t.code")["410225802"]
    assert {key: value for key, value in west_history[-1].items() if key != "business_date"} == west


def test_an_empty_county_divides_by_nothing(portal):
    portal.login(Official.Role.AUDITOR)
    data = portal.get("/portal/dashboard.json").json()
    expected = sql_figures("'all'").get("all")
    if expected is None or expected["registered"] == 0:
        assert data["total"]["consent_coverage"] is None
    assert data["total"]["loan_balance"] == (expected or {"loan_balance": "0.00"})["loan_balance"]


def test_the_portal_speaks_english_one_switch_away(portal, book):
    portal.login(Official.Role.COUNTY_ADMIN)
    portal.client.post("/i18n/setlang/", {"language": "en", "next": "/portal/"}, HTTP_HOST="lankao.localhost")
    html = portal.get("/portal/").content.decode()
    for text in ("Consent coverage", "Credit line coverage", "Loan balance (yuan)", "NPL ratio", "By township", "Log out"):
        assert text in html, text
    purpose_page = portal.get(f"/portal/farmers/{book.farmers['a1'].pk}/").content.decode()
    assert "Loan servicing" in purpose_page and "Show details" in purpose_page
