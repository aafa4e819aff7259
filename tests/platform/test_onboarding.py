import getpass

import pytest
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection

from counties.models import Official
from platform.models import County, Domain, OperatorAction
from platform.services import county_onboard
from tests.conftest import in_county
from tests.platform.conftest import operator_login


def _schema_tables(schema: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema])
        return {row[0] for row in cursor.fetchall()}


def test_onboard_creates_tenant_schema_domain_and_admin(db, capsys):
    call_command("onboard_county", code="370982", name="新泰市", domain="xintai.localhost", province="山东省")
    out = capsys.readouterr().out

    county = County.objects.get(code="370982")
    assert (county.name, county.schema_name, county.status, county.timezone) == (
        "新泰市", "county_370982", "live", "Asia/Shanghai",
    )
    assert list(Domain.objects.filter(tenant=county).values_list("domain", "is_primary")) == [("xintai.localhost", True)]
    assert {"counties_farmer", "counties_township", "counties_nightlyrun", "auth_user"} <= _schema_tables("county_370982")
    password = out.split("password (shown once, store it now): ")[1].split()[0]
    with in_county(county):
        admin = authenticate(username="admin", password=password)
        assert admin is not None
        assert Official.objects.get(user=admin).role == "county_admin"
    # The administrator lives in the county's schema, not in the public one.
    assert authenticate(username="admin", password=password) is None
    # In the operators' audit trail like an onboarding from the console, under the shell's account.
    action = OperatorAction.objects.get(action="county.onboard", target_id=str(county.pk))
    assert action.operator == f"manage.py onboard_county ({getpass.getuser()})"
    assert (action.target_type, action.target_label) == ("platform.county", str(county))
    assert action.detail == {"values": {"code": "370982", "name": "新泰市", "province": "山东省", "city": "",
                                        "domain": "xintai.localhost", "admin_username": "admin",
                                        "onboarding_only": False}}


def test_onboarding_the_same_code_twice_is_refused(db):
    county_onboard(code="411325", name="内乡县", domain="neixiang.localhost", admin_password="x-very-long-1")
    with pytest.raises(CommandError) as refused:
        call_command("onboard_county", code="411325", name="内乡县", domain="neixiang2.localhost")
    assert str(refused.value) == "行政区划代码 411325 已接入（内乡县），不能重复接入 / County 411325 is already onboarded (内乡县)"
    assert County.objects.filter(code="411325").count() == 1
    assert not Domain.objects.filter(domain="neixiang2.localhost").exists()


def test_a_taken_domain_is_refused_before_anything_is_created(db):
    with pytest.raises(ValidationError) as refused:
        county_onboard(code="411326", name="某县", domain="lankao.localhost")
    assert refused.value.code == "duplicate_domain"
    assert not County.objects.filter(code="411326").exists()
    assert "county_411326" not in {s for (s,) in connection.cursor().execute(
        "SELECT schema_name FROM information_schema.schemata").fetchall()}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("4102", "县级行政区划代码必须是 6 位数字 / The county code must be 6 digits: 4102"),
        ("41022a", "县级行政区划代码必须是 6 位数字 / The county code must be 6 digits: 41022a"),
        ("990225", "990225 的前两位不是有效的省级代码 / 990225 does not start with a province code"),
        ("410200", "410200 不是县级行政区划代码 / 410200 is not a county-level code"),
    ],
)
def test_bad_codes_are_refused_with_a_clear_message(db, code, message):
    with pytest.raises(CommandError) as refused:
        call_command("onboard_county", code=code, name="某县", domain="bad.localhost")
    assert str(refused.value) == message
    assert not County.objects.filter(code=code).exists()


def test_onboarding_from_the_admin_console(db, client, django_user_model):
    operator = django_user_model.objects.create_superuser("operator", password="operator-pass-1")
    operator_login(client, operator)
    response = client.post(
        "/admin/platform/county/add/",
        {"code": "341502", "name": "金安区", "province": "安徽省", "city": "六安市",
         "domain": "jinan.localhost", "admin_username": "chief"},
        HTTP_HOST="localhost",
    )
    assert response.status_code == 302
    county = County.objects.get(code="341502")
    assert county.status == "live"
    assert county.domains.get().domain == "jinan.localhost"
    with in_county(county):
        assert Official.objects.get(user__username="chief").role == "county_admin"
    page = client.get(response.url, HTTP_HOST="localhost")
    assert "初始密码（只显示这一次）" in page.content.decode()


def test_admin_console_refuses_a_duplicate_code(db, client, django_user_model):
    operator = django_user_model.objects.create_superuser("operator", password="operator-pass-1")
    operator_login(client, operator)
    response = client.post(
        "/admin/platform/county/add/",
        {"code": "410225", "name": "兰考县", "province": "", "city": "", "domain": "lk2.localhost", "admin_username": "a"},
        HTTP_HOST="localhost",
    )
    assert response.status_code == 200
    assert '<ul class="errorlist" id="id_code_error"><li>具有 行政区划代码 的 县 已存在。</li></ul>' in response.content.decode()
    assert County.objects.filter(code="410225").count() == 1
