"""The operators' console: the second factor, the counties' schema health and last nightly run,
onboarding identical to ``onboard_county``, and the cross-county figures."""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from counties.models import NightlyRun
from loans.models import Loan
from loans.services import loan_drawdown
from platform.models import County, OperatorAction
from platform.selectors import county_health, platform_figures, tenant_migration_leaves
from platform.services import county_set_status
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.loans.conftest import Lending
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy
from tests.platform.conftest import totp_code

PASSWORD = "operator-pass-1"
D = Decimal


@pytest.fixture
def operator(db, django_user_model):
    return django_user_model.objects.create_superuser("operator", password=PASSWORD)


def _unthrottle(device: TOTPDevice) -> None:
    """django-otp backs off after a wrong code (1, 2, 4, … s); the test need not wait."""
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0, throttling_failure_timestamp=None)
    device.refresh_from_db()


def _password_login(http: Client, next_url: str = "/admin/"):
    return http.post(f"/admin/login/?next={next_url}", {"username": "operator", "password": PASSWORD, "next": next_url})


# --- The second factor -------------------------------------------------------------------------------


def test_a_password_alone_does_not_reach_the_console(operator, client):
    login = _password_login(client, "/admin/platform/county/")
    assert (login.status_code, login.url) == (302, "/admin/platform/county/")

    for path in ("/admin/", "/admin/platform/county/", "/admin/platform/operatoraction/", "/admin/figures/"):
        page = client.get(path)
        assert (page.status_code, page.url) == (302, f"/admin/second-factor/?next={path}")
    onboard = client.post(
        "/admin/platform/county/add/",
        {"code": "341502", "name": "金安区", "domain": "jinan.localhost", "admin_username": "chief"},
    )
    assert onboard.status_code == 302 and onboard.url.startswith("/admin/second-factor/")
    assert not County.objects.filter(code="341502").exists()
    # The login page itself sends a half-signed-in operator on to the code, not to the password again.
    assert client.get("/admin/login/").url == "/admin/second-factor/?next=/admin/"


def test_an_operator_without_a_device_is_led_to_enrol_and_the_enrolment_is_audited(operator, client):
    _password_login(client)

    step = client.get("/admin/second-factor/?next=/admin/")
    assert (step.status_code, step.url) == (302, "/admin/second-factor/enrol/?next=/admin/")
    page = client.get(step.url).content.decode()
    device = TOTPDevice.objects.get(user=operator, confirmed=False)
    secret = re.search(r"<code data-totp-secret>([A-Z2-7]+)</code>", page).group(1)
    assert "<svg" in page and len(secret) == 32

    wrong = client.post(step.url, {"token": totp_code(device, offset_steps=10), "next": "/admin/"})
    assert wrong.status_code == 200
    assert "验证码不正确" in wrong.content.decode()
    assert client.get("/admin/").status_code == 302

    _unthrottle(device)
    right = client.post(step.url, {"token": totp_code(device), "next": "/admin/"})
    assert (right.status_code, right.url) == (302, "/admin/")
    assert client.get("/admin/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    action = OperatorAction.objects.get(action="operator.totp_enrol")
    assert (action.operator, action.target_type, action.target_id) == ("operator", "auth.user", str(operator.pk))


def test_an_enrolled_operator_enters_the_code_after_the_password(operator, client):
    device = TOTPDevice.objects.create(user=operator, name="console", confirmed=True)
    _password_login(client, "/admin/platform/county/")

    step = client.get("/admin/platform/county/")
    assert step.url == "/admin/second-factor/?next=/admin/platform/county/"
    assert client.get(step.url).status_code == 200
    wrong = client.post(step.url, {"token": totp_code(device, offset_steps=-10), "next": "/admin/platform/county/"})
    assert "验证码不正确或已过期" in wrong.content.decode()
    _unthrottle(device)
    right = client.post(step.url, {"token": totp_code(device), "next": "/admin/platform/county/"})
    assert (right.status_code, right.url) == (302, "/admin/platform/county/")
    assert client.get("/admin/platform/county/").status_code == 200


def test_a_half_signed_in_operator_can_still_log_out(operator, client):
    _password_login(client)
    assert client.post("/admin/logout/").status_code == 200
    assert client.get("/admin/second-factor/").url.startswith("/admin/login/")


# --- Counties in the console ----------------------------------------------------------------------


def _rows(page: str) -> dict[str, list[str]]:
    """The changelist's rows by their first column: each cell's text (icons by their alt text)."""
    body = page.split('<table id="result_list">', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
        texts = [
            html.unescape(re.sub(r"<[^>]+>", "", re.sub(r'<img[^>]*alt="([^"]*)"[^>]*>', r"\1", cell))).strip()
            for cell in cells
        ]
        rows[texts[1]] = texts[1:]
    return rows


def test_the_county_list_shows_schema_migrations_last_nightly_run_and_farmers(admin_client, lankao, jinzhai):
    started = timezone.now() - dt.timedelta(hours=1)
    with in_county(lankao):
        make_farmer(name="甲", id_number=valid_id_number(seq=201))
        make_farmer(name="乙", id_number=valid_id_number(seq=202))
        NightlyRun.objects.create(
            business_date=dt.date(2026, 11, 27),
            status="succeeded",
            started_at=started,
            finished_at=started + dt.timedelta(seconds=12.5),
        )
        NightlyRun.objects.create(
            business_date=dt.date(2026, 11, 28),
            status="failed",
            started_at=started,
            finished_at=started + dt.timedelta(seconds=3),
        )
    loans_leaf = next(name for app, name in tenant_migration_leaves() if app == "loans")
    with connection.cursor() as cursor:  # Jinzhai has not recorded the newest loans migration
        cursor.execute(
            'DELETE FROM "county_341524".django_migrations WHERE app = %s AND name = %s', ["loans", loans_leaf]
        )
    County.objects.create(code="411326", name="未建库县", schema_name="county_411326", status="onboarding")

    rows = _rows(admin_client.get("/admin/platform/county/").content.decode())

    # code, name, province, city, status, schema built, migrations, last nightly run, farmers, created
    assert rows["410225"][:9] == [
        "410225",
        "兰考县",
        "河南省",
        "开封市",
        "已上线",
        "True",
        "已是最新",
        "2026-11-28 失败 · 3.0 秒",
        "2",
    ]
    assert rows["341524"][5:9] == ["True", f"待迁移：loans.{loans_leaf}", "—", "0"]
    assert rows["411326"][4:9] == ["接入中", "False", "—", "—", "—"]
    assert county_health(County.objects.get(code="341524")).pending_migrations == (f"loans.{loans_leaf}",)
    # The county's own page shows the same.
    detail = admin_client.get(f"/admin/platform/county/{lankao.pk}/change/").content.decode()
    assert "2026-11-28 失败 · 3.0 秒" in detail and "已是最新" in detail


def _schema_shape(schema: str) -> dict[str, object]:
    """Everything in a county schema that onboarding creates: columns, migrations and each table's rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = %s",
            [schema],
        )
        columns = set(cursor.fetchall())
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations')
        migrations = set(cursor.fetchall())
        counts = {}
        for table in sorted({table for table, _column, _type in columns}):
            cursor.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
            counts[table] = cursor.fetchone()[0]
        cursor.execute(
            f'SELECT u.username, u.is_staff, u.is_superuser, u.is_active, o.role FROM "{schema}".auth_user u '
            f'JOIN "{schema}".counties_official o ON o.user_id = u.id'
        )
        officials = set(cursor.fetchall())
    return {"columns": columns, "migrations": migrations, "rows": counts, "officials": officials}


def test_onboarding_from_the_console_does_exactly_what_the_command_does(admin_client):
    common = {"province": "安徽省", "city": "六安市"}
    response = admin_client.post(
        "/admin/platform/county/add/",
        {"code": "341502", "name": "金安区", "domain": "jinan.localhost", "admin_username": "chief", **common},
    )
    call_command(
        "onboard_county", code="341503", name="裕安区", domain="yuan.localhost", admin_username="chief", **common
    )

    assert response.status_code == 302
    by_console, by_command = County.objects.get(code="341502"), County.objects.get(code="341503")
    for county in (by_console, by_command):
        assert (county.schema_name, county.status, county.timezone, county.province, county.city) == (
            f"county_{county.code}",
            "live",
            "Asia/Shanghai",
            "安徽省",
            "六安市",
        )
    assert list(by_console.domains.values_list("domain", "is_primary")) == [("jinan.localhost", True)]
    assert list(by_command.domains.values_list("domain", "is_primary")) == [("yuan.localhost", True)]
    console_shape, command_shape = _schema_shape("county_341502"), _schema_shape("county_341503")
    assert console_shape == command_shape
    assert console_shape["officials"] == {("chief", False, False, True, "county_admin")}
    assert console_shape["rows"]["data_sharing_datacategory"] > 0  # the catalog is seeded in both
    # Both are in the operators' audit trail, each under who did it, with the same details.
    action = OperatorAction.objects.get(action="county.onboard", target_id=str(by_console.pk))
    assert (action.operator, action.target_label) == ("admin", "金安区 (341502)")
    shell = OperatorAction.objects.get(action="county.onboard", target_id=str(by_command.pk))
    assert shell.operator.startswith("manage.py onboard_county (")
    assert shell.detail["values"].keys() == action.detail["values"].keys()
    assert action.detail == {
        "values": {
            "code": "341502",
            "name": "金安区",
            "province": "安徽省",
            "city": "六安市",
            "domain": "jinan.localhost",
            "admin_username": "chief",
            "onboarding_only": False,
        }
    }


def test_the_console_can_onboard_without_going_live_like_the_command_option(admin_client):
    admin_client.post(
        "/admin/platform/county/add/",
        {
            "code": "341502",
            "name": "金安区",
            "domain": "jinan.localhost",
            "admin_username": "chief",
            "onboarding_only": "on",
        },
    )
    assert County.objects.get(code="341502").status == "onboarding"


# --- Cross-county figures ------------------------------------------------------------------------------


def _independent_figures(schema: str) -> dict[str, object]:
    """The figures with separate, schema-qualified queries (not the selector's SQL)."""

    def one(sql: str):
        with connection.cursor() as cursor:
            cursor.execute(sql.replace("S.", f'"{schema}".'))
            return cursor.fetchone()[0]

    return {
        "farmers": one("SELECT count(*) FROM S.counties_farmer"),
        "consented": one(
            "SELECT count(*) FROM (SELECT DISTINCT farmer_id FROM S.data_sharing_consent WHERE status = 'active') c"
        ),
        "lines": one("SELECT count(*) FROM S.loans_creditline WHERE status = 'active'"),
        "lines_amount": one("SELECT coalesce(sum(amount), 0) FROM S.loans_creditline WHERE status = 'active'"),
        "loan_balance": one("SELECT coalesce(sum(outstanding_principal), 0) FROM S.loans_loan WHERE status = 'active'"),
        "npl_balance": one(
            "SELECT coalesce(sum(outstanding_principal), 0) FROM S.loans_loan "
            "WHERE status = 'active' AND classification IN ('substandard', 'doubtful', 'loss')"
        ),
    }


def _book(county, partner_code: str, lines: list[str], loans: list[tuple[int, str, str]], *, bystanders: int):
    """In ``county``: consenting borrowers with lines, loans drawn (line index, amount, classification)
    and farmers who did not consent."""
    with in_county(county):
        lending = Lending(credit_partner(partner_code), None, timezone.localdate())
        lending.policy = activate_policy(lending.partner)
        borrowers = [lending.borrower(line=amount) for amount in lines]
        for index, amount, classification in loans:
            loan = loan_drawdown(farmer=borrowers[index], amount=amount, term_months=12, method="equal_principal")
            Loan.objects.filter(pk=loan.pk).update(classification=classification)
        for seq in range(bystanders):
            make_farmer(name="未授权", id_number=valid_id_number(birth=dt.date(1970, 1, 1), seq=300 + seq))


def test_cross_county_figures_match_each_schemas_own_sums(admin_client, lankao, jinzhai):
    _book(
        lankao,
        "bank-a",
        ["50000.00", "30000.00", "20000.00"],
        [(0, "12000", "normal"), (1, "6000", "substandard")],
        bystanders=1,
    )
    _book(jinzhai, "bank-b", ["8000.00"], [(0, "4000", "loss")], bystanders=0)

    figures = platform_figures()

    live = list(County.objects.filter(status="live").order_by("code").values_list("code", "schema_name"))
    assert [row.code for row in figures.counties] == [code for code, _schema in live]
    total = dict.fromkeys(["farmers", "consented", "lines", "lines_amount", "loan_balance", "npl_balance"], 0)
    for row, (_code, schema) in zip(figures.counties, live, strict=True):
        expected = _independent_figures(schema)
        assert {name: getattr(row, name) for name in expected} == expected
        total = {name: total[name] + expected[name] for name in total}
    assert {name: getattr(figures.total, name) for name in total} == total
    by_code = {row.code: row for row in figures.counties}
    lk = by_code["410225"]
    assert (lk.farmers, lk.consented, lk.lines, lk.lines_amount, lk.loan_balance, lk.npl_balance) == (
        4,
        3,
        3,
        D("100000.00"),
        D("18000.00"),
        D("6000.00"),
    )
    assert (lk.consent_rate, lk.npl_ratio) == (D("0.7500"), D("0.3333"))
    assert by_code["341524"].npl_ratio == D("1.0000")
    assert figures.total.npl_ratio == (figures.total.npl_balance / figures.total.loan_balance).quantize(D("0.0001"))

    page = admin_client.get("/admin/figures/").content.decode()
    lankao_row = re.search(r'<tr data-county="410225">(.*?)</tr>', page, re.S).group(1)
    assert [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td>(.*?)</td>", lankao_row)] == [
        "兰考县 (410225)",
        "4",
        "75.00%",
        "3",
        "100000.00",
        "18000.00",
        "33.33%",
    ]

    county_set_status(county=jinzhai, status=County.Status.SUSPENDED)
    assert "341524" not in [row.code for row in platform_figures().counties]
