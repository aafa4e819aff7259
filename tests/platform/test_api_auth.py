"""The bank API's front door: HMAC-signed requests (good, bad, stale, replayed), county and role
scopes, revoked and rotated keys, per-client throttling, the one error format, the operators'
audit trail and the console pages for clients and their secrets."""

from __future__ import annotations

import json
import re
import time

import pytest
from django.db import ProgrammingError, connection, transaction
from django.test import Client
from django.utils import timezone

from platform.api.auth import signed_headers
from platform.api.services import client_create, client_revoke, client_rotate
from platform.models import County, IntegrationClient, OperatorAction
from platform.services import county_set_status
from tests.conftest import in_county
from tests.loans.conftest import Lending
from tests.loans.test_features import credit_partner
from tests.loans.test_nightly_batch import activate_policy


def signed_request(
    http: Client,
    method: str,
    path: str,
    *,
    key_id: str,
    secret: str,
    body: dict | bytes | None = None,
    query: str = "",
    headers: dict | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
    sign_body: bytes | None = None,
):
    """Send a request signed as a bank would (``sign_body`` signs other bytes than those sent)."""
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    auth = signed_headers(
        key_id=key_id,
        secret=secret,
        method=method,
        path=path,
        query=query,
        body=raw if sign_body is None else sign_body,
        timestamp=timestamp,
        nonce=nonce,
    )
    url = f"{path}?{query}" if query else path
    return http.generic(method, url, data=raw, content_type="application/json", headers={**auth, **(headers or {})})


class Bank:
    """An integration client and its secret, with a signed-request helper."""

    def __init__(self, client: IntegrationClient, secret: str) -> None:
        self.client, self.secret = client, secret
        self.http = Client()

    def request(self, method: str, path: str, **kwargs):
        return signed_request(self.http, method, path, key_id=self.client.key_id, secret=self.secret, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: dict, *, key: str | None = None, **kwargs):
        headers = {"Idempotency-Key": key} if key else {}
        return self.request("POST", path, body=body, headers=headers, **kwargs)


def make_bank(partner, counties, *, name="网商银行核心系统", kind="bank", **options) -> Bank:
    created = client_create(
        name=name,
        kind=kind,
        partner=partner if kind == "bank" else None,
        counties=list(counties),
        operator="operator",
        **options,
    )
    return Bank(created.client, created.secret)


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


@pytest.fixture
def lending(lankao):
    """As tests/loans/conftest.py's: 兰考县 with a lending partner and its active policy."""
    with in_county(lankao):
        partner = credit_partner()
        yield Lending(partner, activate_policy(partner), timezone.localdate())


@pytest.fixture
def bank(lending, lankao):
    return make_bank(lending.partner, [lankao])


def lines_path(code: str = "410225") -> str:
    return f"/api/v1/counties/{code}/lines"


def test_a_signed_request_reads_the_countys_lines(bank, lending, lankao):
    farmer = lending.borrower(line="50000.00", rate="0.0435")
    line = farmer.credit_line

    response = bank.get(lines_path())

    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {
                "id": line.pk,
                "farmer_id": farmer.pk,
                "amount": "50000.00",
                "available": "50000.00",
                "outstanding_principal": "0.00",
                "grade": "B",
                "annual_rate": "0.043500",
                "valid_until": line.valid_until.isoformat(),
                "status": "active",
                "suspension": "",
                "business_date": line.business_date.isoformat(),
                "updated_at": response.json()["results"][0]["updated_at"],
            }
        ],
        "next_cursor": response.json()["next_cursor"],
        "has_more": False,
    }
    with in_county(lankao):
        line.refresh_from_db()
    assert response.json()["results"][0]["updated_at"] == timezone.localtime(line.updated_at).isoformat()
    # Nothing changed since: the same cursor gives an empty page and keeps its place.
    cursor = response.json()["next_cursor"]
    again = bank.get(lines_path(), query=f"cursor={cursor}")
    assert again.json() == {"results": [], "next_cursor": cursor, "has_more": False}


def test_a_bad_signature_is_refused_in_the_error_format(bank, lending):
    response = signed_request(
        bank.http, "GET", lines_path(), key_id=bank.client.key_id, secret="not-the-secret-" + bank.secret[:10]
    )

    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "signature_invalid",
            "message": "签名不正确",
            "message_en": "The signature does not match",
        }
    }
    assert response["WWW-Authenticate"] == 'Puhui-HMAC-SHA256 realm="puhui-api"'


def test_a_changed_body_or_query_breaks_the_signature(bank, lending):
    signed_for = json.dumps({"amount": "1000.00"}).encode()
    tampered = bank.request(
        "POST",
        "/api/v1/counties/410225/quote",
        body={"amount": "9000.00"},
        sign_body=signed_for,
        headers={"Idempotency-Key": "k-1"},
    )
    assert (tampered.status_code, error_of(tampered)["code"]) == (401, "signature_invalid")

    auth = signed_headers(key_id=bank.client.key_id, secret=bank.secret, method="GET", path=lines_path(), query="")
    other_query = bank.http.get(lines_path() + "?page_size=1", headers=auth)
    assert (other_query.status_code, error_of(other_query)["code"]) == (401, "signature_invalid")


def test_a_timestamp_301_seconds_old_is_stale_and_299_is_not(bank, lending):
    stale = bank.get(lines_path(), timestamp=int(time.time()) - 301)
    assert stale.status_code == 401
    assert error_of(stale) == {
        "code": "timestamp_expired",
        "message": "时间戳与服务器时间相差超过 300 秒",
        "message_en": "The timestamp is more than 300 s from the server's clock",
    }
    future = bank.get(lines_path(), timestamp=int(time.time()) + 301)
    assert error_of(future)["code"] == "timestamp_expired"

    # 299 s: inside the window even if the clock ticks a second before the server checks.
    assert bank.get(lines_path(), timestamp=int(time.time()) - 299).status_code == 200


def test_a_replayed_nonce_is_refused(bank, lending):
    headers = signed_headers(key_id=bank.client.key_id, secret=bank.secret, method="GET", path=lines_path())

    first = bank.http.get(lines_path(), headers=headers)
    replay = bank.http.get(lines_path(), headers=headers)

    assert first.status_code == 200
    assert replay.status_code == 401
    assert error_of(replay)["code"] == "nonce_replayed"
    # The same nonce signed afresh (new timestamp) is still a replay.
    again = bank.get(lines_path(), nonce=headers["X-Puhui-Nonce"], timestamp=int(time.time()) + 1)
    assert error_of(again)["code"] == "nonce_replayed"


def test_a_short_nonce_and_missing_headers_are_refused(bank, lending):
    assert error_of(bank.get(lines_path(), nonce="short"))["code"] == "nonce_invalid"

    unsigned = Client().get(lines_path())
    assert unsigned.status_code == 401
    assert error_of(unsigned)["code"] == "not_authenticated"

    partial = Client().get(lines_path(), headers={"X-Puhui-Key": bank.client.key_id})
    assert (partial.status_code, error_of(partial)["code"]) == (401, "signature_missing")


def test_a_bank_client_for_one_county_gets_403_on_another(bank, lending, jinzhai):
    response = bank.get(lines_path("341524"))

    assert response.status_code == 403
    assert error_of(response) == {
        "code": "county_forbidden",
        "message": "该系统无权代表 金寨县 调用",
        "message_en": "This client may not act for county 341524.",
    }


def test_unknown_and_suspended_counties(bank, lending, lankao):
    unknown = bank.get(lines_path("419999"))
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "county_not_found"

    with in_county(lankao):
        county_set_status(county=County.objects.get(code="410225"), status=County.Status.SUSPENDED)
    suspended = bank.get(lines_path())
    assert suspended.status_code == 403
    assert error_of(suspended)["code"] == "county_suspended"


def test_a_department_client_cannot_call_bank_endpoints(lending, lankao):
    department = make_bank(None, [lankao], name="县农业农村局", kind="department")

    response = department.get(lines_path())

    assert response.status_code == 403
    assert error_of(response) == {
        "code": "client_kind_forbidden",
        "message": "该接口仅供贷款机构系统调用",
        "message_en": "This endpoint is for bank clients only.",
    }


def test_a_bank_client_without_the_scope_gets_403(lending, lankao):
    quotes_only = make_bank(lending.partner, [lankao], scopes=["quotes"])

    response = quotes_only.get(lines_path())

    assert (response.status_code, error_of(response)["code"]) == (403, "scope_missing")


def test_a_revoked_key_gets_401(bank, lending):
    client_revoke(client=bank.client, operator="operator")

    response = bank.get(lines_path())

    assert response.status_code == 401
    assert error_of(response) == {
        "code": "key_invalid",
        "message": "密钥无效或已吊销",
        "message_en": "Unknown or revoked key",
    }


def test_after_rotation_the_old_secret_gets_401_and_the_new_one_works(bank, lending):
    old_secret = bank.secret
    rotated = client_rotate(client=bank.client, operator="operator")

    assert rotated.secret != old_secret
    assert rotated.client.key_id == bank.client.key_id
    old = bank.get(lines_path())
    assert (old.status_code, error_of(old)["code"]) == (401, "signature_invalid")
    bank.secret = rotated.secret
    assert bank.get(lines_path()).status_code == 200


def test_each_client_has_its_own_rate_limit(lending, lankao):
    limited = make_bank(lending.partner, [lankao], name="限流测试", throttle_rate="2/min")
    other = make_bank(lending.partner, [lankao], name="另一家")

    statuses = [limited.get(lines_path()).status_code for _ in range(3)]
    throttled = limited.get(lines_path())

    assert statuses == [200, 200, 429]
    assert error_of(throttled)["code"] == "rate_limited"
    assert 1 <= int(throttled["Retry-After"]) <= 61
    assert other.get(lines_path()).status_code == 200


def test_a_partner_that_is_not_the_countys_lender_sees_no_lines(lending, lankao):
    with in_county(lankao):
        other_partner = credit_partner("other-bank")
    outsider = make_bank(other_partner, [lankao], name="他行")

    response = outsider.get(lines_path())

    assert (response.status_code, error_of(response)["code"]) == (403, "partner_not_lender")


def test_unknown_api_paths_answer_in_the_error_format(db):
    response = Client().get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "未找到", "message_en": "Not found."}}


def test_the_secret_is_stored_encrypted_and_client_actions_are_audited(lending, lankao):
    bank = make_bank(lending.partner, [lankao], name="审计测试")
    client_rotate(client=bank.client, operator="ops-li")
    client_revoke(client=bank.client, operator="ops-wang")

    bank.client.refresh_from_db()
    assert bank.secret not in bank.client.secret_encrypted
    assert bank.client.secret_encrypted.startswith("k")  # key id of FIELD_ENCRYPTION_KEYS
    actions = OperatorAction.objects.filter(target_type="platform.integrationclient", target_id=str(bank.client.pk))
    assert list(actions.order_by("id").values_list("operator", "action")) == [
        ("operator", "client.create"),
        ("ops-li", "client.rotate"),
        ("ops-wang", "client.revoke"),
    ]
    assert actions.order_by("id").first().detail == {
        "kind": "bank",
        "counties": ["410225"],
        "scopes": ["lines:read", "quotes", "disbursements", "repayments", "loans:read"],
    }
    # The database refuses to rewrite history (SQLSTATE 42501 → ProgrammingError).
    with pytest.raises(ProgrammingError, match="platform_operatoraction is append-only: UPDATE refused"):
        with transaction.atomic():
            OperatorAction.objects.filter(pk=actions.first().pk).update(operator="someone else")
    with pytest.raises(ProgrammingError, match="append-only: DELETE refused"), transaction.atomic():
        actions.delete()


def test_a_bank_client_needs_its_lending_partner(lankao):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        client_create(name="无机构", kind="bank", partner=None, counties=[lankao], operator="operator")
    assert refused.value.message_dict == {
        "partner": ["贷款机构系统必须指定贷款机构 / A bank client needs its lending partner"]
    }


# --- The console ---------------------------------------------------------------------------------


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


def test_the_console_creates_a_client_and_shows_its_secret_once(admin_client, lending, lankao):
    connection.set_schema_to_public()
    response = admin_client.post(
        "/admin/platform/integrationclient/add/",
        {
            "name": "网商银行",
            "kind": "bank",
            "partner": lending.partner.pk,
            "counties": [lankao.pk],
            "webhook_url": "https://bank.example/puhui/events",
            "throttle_rate": "",
        },
        follow=True,
    )

    assert response.status_code == 200
    client = IntegrationClient.objects.get(name="网商银行")
    (note,) = [m for m in _messages(response) if "只显示这一次" in m]
    secret = re.search(r"：([A-Za-z0-9_-]+)$", note).group(1)
    assert client.key_id in note
    assert client.scopes == ["lines:read", "quotes", "disbursements", "repayments", "loans:read"]
    assert list(client.counties.values_list("code", flat=True)) == ["410225"]
    # The secret works, and no page shows it again.
    assert Bank(client, secret).get(lines_path()).status_code == 200
    page = admin_client.get(f"/admin/platform/integrationclient/{client.pk}/change/")
    assert secret not in page.content.decode()
    assert OperatorAction.objects.filter(action="client.create", target_id=str(client.pk), operator="admin").exists()


def test_the_console_rotates_and_revokes(admin_client, lending, lankao):
    bank = make_bank(lending.partner, [lankao], name="轮换测试")
    connection.set_schema_to_public()

    edited = admin_client.post(
        f"/admin/platform/integrationclient/{bank.client.pk}/change/",
        {
            "name": "轮换测试",
            "counties": [lankao.pk],
            "scopes": ["lines:read", "loans:read"],
            "webhook_url": "https://bank.example/hooks",
            "throttle_rate": "",
        },
    )
    assert edited.status_code == 302
    bank.client.refresh_from_db()
    assert (bank.client.scopes, bank.client.webhook_url) == (["lines:read", "loans:read"], "https://bank.example/hooks")
    assert OperatorAction.objects.get(action="client.update", target_id=str(bank.client.pk)).detail == {
        "changed": ["scopes", "webhook_url"],
        "counties": ["410225"],
        "scopes": ["lines:read", "loans:read"],
        "webhook_url": "https://bank.example/hooks",
    }

    rotated = admin_client.post(
        "/admin/platform/integrationclient/",
        {"action": "rotate", "_selected_action": [bank.client.pk]},
        follow=True,
    )
    (note,) = [m for m in _messages(rotated) if "只显示这一次" in m]
    new_secret = re.search(r"：([A-Za-z0-9_-]+)$", note).group(1)
    assert new_secret != bank.secret
    assert Bank(bank.client, new_secret).get(lines_path()).status_code == 200

    admin_client.post(
        "/admin/platform/integrationclient/", {"action": "revoke", "_selected_action": [bank.client.pk]}, follow=True
    )
    bank.client.refresh_from_db()
    assert bank.client.is_active is False
    assert list(
        OperatorAction.objects.filter(target_id=str(bank.client.pk), operator="admin").values_list("action", flat=True)
    ) == ["client.revoke", "client.rotate", "client.update"]


def test_the_console_refuses_a_department_with_bank_scopes(admin_client, lankao):
    connection.set_schema_to_public()
    response = admin_client.post(
        "/admin/platform/integrationclient/add/",
        {"name": "县人社局", "kind": "department", "counties": [lankao.pk], "scopes": ["repayments"]},
    )

    assert response.status_code == 200
    assert "该类型的系统不能拥有这些权限" in response.content.decode()
    assert not IntegrationClient.objects.filter(name="县人社局").exists()


# --- The docs --------------------------------------------------------------------------------------


def test_the_schema_and_its_readers_are_served_from_the_project(db):
    http = Client()
    schema = http.get("/api/v1/schema/?format=json")
    swagger = http.get("/api/v1/docs/")
    redoc = http.get("/api/v1/redoc/")

    assert schema.status_code == 200
    document = schema.json()
    assert document["openapi"].startswith("3.")
    assert document["components"]["securitySchemes"]["PuhuiSignature"]["name"] == "X-Puhui-Key"
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert len(operations) == 9  # 7 bank operations, 2 for department data batches
    for operation in operations:
        assert operation["description"]
        assert all("examples" in answer["content"]["application/json"] for answer in operation["responses"].values())
        if "requestBody" in operation:
            assert operation["requestBody"]["content"]["application/json"]["examples"]
    for page, asset in ((swagger, "/static/vendor/swagger-ui/swagger-ui-bundle.js"), (redoc, "/static/vendor/redoc/")):
        html = page.content.decode()
        assert page.status_code == 200
        assert asset in html
        assert "https://" not in html and "http://" not in html.replace("http://testserver", "")
    assert http.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert http.get("/static/vendor/redoc/bundles/redoc.standalone.js").status_code == 200
