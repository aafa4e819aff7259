"""Departments push data over the public host with signed clients:
``POST /api/v1/counties/<code>/data/<category>/batches`` and ``GET …/data/batches/<id>`` — the
bank endpoints' HMAC authentication, Idempotency-Key and error format, on committed data (an
Idempotency-Key's claim must be committed, so these tests cannot run inside a rolled-back
transaction: a scratch county is onboarded for the module and dropped afterwards)."""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.db import connection

from data_sharing.models import GovernmentRecord, ImportBatch
from platform.models import County, IntegrationClient, LendingPartner
from tests.api_fuzz import fuzz, is_positive, live_app
from tests.conftest import COUNTY_ADMIN_PASSWORD, in_county, make_farmer, valid_id_number
from tests.loans.test_api import HmacAuth
from tests.platform.test_api_auth import Bank, error_of, make_bank

SCRATCH = {
    "code": "411331",
    "name": "部门推送测试县",
    "domain": "push.localhost",
    "province": "河南省",
    "city": "开封市",
}
BASE = f"/api/v1/counties/{SCRATCH['code']}/data"
ID_ZHANG = valid_id_number(region="411331", seq=101)
ID_NOBODY = valid_id_number(region="411331", seq=199)
RECORD = {
    "id_number": ID_ZHANG,
    "name": "张三",
    "contract_no": "HT-0001",
    "parcels": 3,
    "area_mu": "12.50",
    "term_end": "2028-12-31",
}


class Systems:
    def __init__(self, county: County, department: Bank, other_department: Bank, bank: Bank) -> None:
        self.county, self.department, self.other_department, self.bank = county, department, other_department, bank


@pytest.fixture(scope="module")
def systems(django_db_setup, django_db_blocker):
    from platform.services import county_onboard

    with django_db_blocker.unblock():
        county = county_onboard(**SCRATCH, admin_password=COUNTY_ADMIN_PASSWORD).county
        partner = LendingPartner.objects.create(code="push-test-bank", name="推送测试银行")
        try:
            with in_county(county):
                make_farmer(name="张三", id_number=ID_ZHANG)
            yield Systems(
                county,
                make_bank(None, [county], name="县农业农村局系统", kind="department"),
                make_bank(None, [county], name="县人社局系统", kind="department"),
                make_bank(partner, [county], name="推送测试银行核心"),
            )
        finally:
            connection.set_schema_to_public()
            IntegrationClient.objects.filter(counties=county).delete()
            with connection.cursor() as cursor:
                cursor.execute(f'DROP SCHEMA IF EXISTS "{county.schema_name}" CASCADE')
                # Raw: Django's collector would look for the county tables in the public schema.
                cursor.execute(f"DELETE FROM {LendingPartner._meta.db_table} WHERE id = %s", [partner.pk])
            County.objects.filter(pk=county.pk).delete()


@pytest.fixture
def push(systems, django_db_blocker, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    with django_db_blocker.unblock():
        yield systems


def _body(records: list, as_of: str = "2026-06-30") -> bytes:
    # Raw JSON text so 12.50 travels as a JSON number, as a department's system sends it.
    return (
        json.dumps({"as_of_date": as_of, "records": records}, ensure_ascii=False)
        .replace('"area_mu": "12.50"', '"area_mu": 12.50')
        .encode()
    )


def _post(system: Bank, body: bytes, *, key: str | None, category: str = "land_contract", code: str = SCRATCH["code"]):
    headers = {"Idempotency-Key": key} if key else {}
    return system.request("POST", f"/api/v1/counties/{code}/data/{category}/batches", body=body, headers=headers)


def test_a_department_pushes_a_batch_and_reads_its_status(push):
    created = _post(push.department, _body([RECORD]), key="push-1")
    repeated = _post(push.department, _body([RECORD]), key="push-1")
    same_records = _post(push.department, _body([RECORD]), key="push-2")

    assert created.status_code == 201, created.content
    body = created.json()
    batch_id = body["id"]
    assert created["Location"] == f"{BASE}/batches/{batch_id}"
    assert {key: body[key] for key in ("category", "source", "as_of_date", "status", "rows_imported", "errors")} == {
        "category": "land_contract",
        "source": "api",
        "as_of_date": "2026-06-30",
        "status": "succeeded",
        "rows_imported": 1,
        "errors": [],
    }
    assert body["submitted_by"] == f"client:{push.department.client.key_id}"
    # The same key: the first answer again; the same records under a new key: the earlier batch, 200.
    assert (repeated.status_code, repeated.json()) == (201, body)
    assert (same_records.status_code, same_records.json()["id"]) == (200, batch_id)
    detail = push.department.get(f"{BASE}/batches/{batch_id}")
    assert (detail.status_code, detail.json()["status"], detail.json()["rows_imported"]) == (200, "succeeded", 1)
    with in_county(push.county):
        assert list(GovernmentRecord.objects.filter(batch_id=batch_id).values_list("record_key", "data")) == [
            ("HT-0001", {"contract_no": "HT-0001", "parcels": 3, "area_mu": "12.50", "term_end": "2028-12-31"}),
        ]


def test_row_errors_name_each_record_by_position_in_chinese_and_english(push):
    records = [
        {**RECORD, "contract_no": "HT-1001"},
        {**RECORD, "id_number": ID_NOBODY, "contract_no": "HT-1002"},
        {**RECORD, "contract_no": "HT-1003", "areamu": 5, "parcels": "3.5"},
        "not an object",
    ]

    response = _post(push.department, _body(records, as_of="2026-07-31"), key="bad-rows")

    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["rows_total"], body["rows_imported"], body["error_count"]) == ("rejected", 4, 0, 4)
    assert body["errors"] == [
        {
            "line": 2,
            "field": "id_number",
            "reason_zh": "本县农民名册中没有这个身份证号",
            "reason_en": "no farmer with this ID number in the county's roster",
        },
        {"line": 3, "field": "parcels", "reason_zh": "不是整数：3.5", "reason_en": "not a whole number: 3.5"},
        {"line": 3, "field": "areamu", "reason_zh": "未知字段", "reason_en": "unknown field"},
        {"line": 4, "field": "", "reason_zh": "记录必须是 JSON 对象", "reason_en": "a record must be a JSON object"},
    ]
    assert push.department.get(f"{BASE}/batches/{body['id']}").json()["errors"] == body["errors"]
    with in_county(push.county):
        assert not GovernmentRecord.objects.filter(batch_id=body["id"]).exists()


def test_a_bank_client_gets_403_on_the_department_endpoints(push):
    batch_id = _post(push.department, _body([RECORD], as_of="2026-08-31"), key="for-bank").json()["id"]

    posted = _post(push.bank, _body([RECORD], as_of="2026-09-30"), key="bank-push")
    read = push.bank.get(f"{BASE}/batches/{batch_id}")

    for response in (posted, read):
        assert response.status_code == 403
        assert error_of(response) == {
            "code": "client_kind_forbidden",
            "message": "该接口仅供政府部门系统调用",
            "message_en": "This endpoint is for department clients only.",
        }
    with in_county(push.county):
        assert not ImportBatch.objects.filter(as_of_date="2026-09-30").exists()


def test_a_department_cannot_push_for_another_county_or_read_another_clients_batch(push):
    other_county = _post(push.department, _body([RECORD]), key="lankao", code="410225")
    batch_id = _post(push.department, _body([RECORD], as_of="2026-10-31"), key="mine").json()["id"]
    others_batch = push.other_department.get(f"{BASE}/batches/{batch_id}")

    assert other_county.status_code == 403
    assert error_of(other_county)["code"] == "county_forbidden"
    assert error_of(other_county)["message_en"] == "This client may not act for county 410225."
    assert others_batch.status_code == 404
    assert error_of(others_batch) == {
        "code": "batch_not_found",
        "message": "没有这个导入批次",
        "message_en": "No such batch.",
    }
    with in_county(County.objects.get(code="410225")):
        assert not ImportBatch.objects.exists()


def test_refusals_in_the_api_error_format(push):
    no_key = _post(push.department, _body([RECORD]), key=None)
    unknown = _post(push.department, _body([RECORD]), key="horoscope", category="horoscope")
    no_records = _post(push.department, _body([]), key="empty")
    unsigned = push.department.http.post(
        f"{BASE}/land_contract/batches", data=_body([RECORD]), content_type="application/json"
    )

    assert (no_key.status_code, error_of(no_key)["code"]) == (400, "idempotency_key_missing")
    assert (unknown.status_code, error_of(unknown)) == (
        404,
        {
            "code": "category_not_found",
            "message": "未知的数据类别：horoscope",
            "message_en": "Unknown data category: horoscope",
        },
    )
    assert (no_records.status_code, error_of(no_records)["code"], list(error_of(no_records)["fields"])) == (
        400,
        "invalid_request",
        ["records"],
    )
    assert (unsigned.status_code, error_of(unsigned)["code"]) == (401, "not_authenticated")


def test_the_endpoints_are_documented_with_examples(db, client):
    document = client.get("/api/v1/schema/?format=json").json()

    push_op = document["paths"]["/api/v1/counties/{county_code}/data/{category_code}/batches"]["post"]
    read_op = document["paths"]["/api/v1/counties/{county_code}/data/batches/{batch_id}"]["get"]
    assert push_op["tags"] == read_op["tags"] == ["department data"]
    assert {"Idempotency-Key", "county_code", "category_code"} <= {p["name"] for p in push_op["parameters"]}
    assert push_op["requestBody"]["content"]["application/json"]["examples"]["Push"]["value"]["records"]
    assert set(push_op["responses"]) == {"200", "201", "400", "401", "403", "404", "409", "422", "429"}
    rejected = push_op["responses"]["201"]["content"]["application/json"]["examples"]["Rejected"]["value"]
    assert rejected["errors"][0] == {
        "line": 2,
        "field": "id_number",
        "reason_zh": "本县农民名册中没有这个身份证号",
        "reason_en": "no farmer with this ID number in the county's roster",
    }
    assert read_op["responses"]["200"]["content"]["application/json"]["examples"]
    assert push_op["security"] == [{"PuhuiSignature": []}]


@pytest.fixture
def live_api(push):
    with live_app() as base_url:
        yield base_url


@pytest.mark.slow
def test_the_department_operations_conform_to_the_schema(push, live_api):
    """schemathesis with the department's signed client: never a 5xx, statuses, content types
    and bodies as documented, invalid input refused with a 4xx — and valid pushes get through."""
    schema = schemathesis.openapi.from_url(f"{live_api}/api/v1/schema/?format=json")
    schema.config.update(base_url=live_api)
    auth = HmacAuth(push.department)
    operations = [result.ok() for result in schema.get_all_operations() if "/data/" in result.ok().path]
    assert sorted(op.label for op in operations) == [
        "GET /api/v1/counties/{county_code}/data/batches/{batch_id}",
        "POST /api/v1/counties/{county_code}/data/{category_code}/batches",
    ]
    known_batch = _post(push.department, _body([RECORD], as_of="2026-05-31"), key="schemathesis").json()["id"]
    def prepare(case) -> None:
        if is_positive(case):
            case.path_parameters["county_code"] = SCRATCH["code"]
            if "category_code" in case.path_parameters:
                case.path_parameters["category_code"] = "land_contract"
            if isinstance(case.path_parameters.get("batch_id"), int) and case.path_parameters["batch_id"] % 3:
                case.path_parameters["batch_id"] = known_batch

    seen = fuzz(schema, operations, auth=auth, prepare=prepare)
    assert {label for (label, status), _count in seen.items() if status < 300} == {op.label for op in operations}
