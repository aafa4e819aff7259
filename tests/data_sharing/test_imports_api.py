"""The push API for officials on a county host: POST /api/v1/data/<category>/batches, GET a batch,
with the portal's session (password and TOTP code). Departments' signed systems push on the public
host instead: tests/platform/test_department_api.py."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth import get_user_model
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from counties.models import Official
from data_sharing.models import GovernmentRecord, ImportBatch
from tests.conftest import in_county, make_farmer, valid_id_number

ID_ZHANG = valid_id_number(seq=101)
ID_NOBODY = valid_id_number(seq=199)
PASSWORD = "push-records-pass-1"
HOST = "lankao.localhost"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def _official(role: str, username: str, *, client=None, second_factor: bool = True):
    """An official of the current county's schema; logged into ``client`` (in that schema) with
    the password, and with the TOTP code unless ``second_factor`` is False."""
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    Official.objects.create(user=user, role=role)
    if client is not None:
        client.force_login(user)
        if second_factor:
            device = TOTPDevice.objects.create(user=user, name="portal", confirmed=True)
            session = client.session
            session[DEVICE_ID_SESSION_KEY] = device.persistent_id
            session.save()
    return user


def _push(client, body: dict, *, category: str = "land_contract", host: str = HOST):
    # Sent as raw JSON text so 12.50 travels as a JSON number, as a department system sends it.
    text = json.dumps(body, ensure_ascii=False).replace('"area_mu": "12.50"', '"area_mu": 12.50')
    return client.post(f"/api/v1/data/{category}/batches", data=text, content_type="application/json", HTTP_HOST=host)


RECORD = {"id_number": ID_ZHANG, "name": "张三", "contract_no": "HT-0001", "parcels": 3, "area_mu": "12.50", "term_end": "2028-12-31"}


def test_a_push_creates_a_batch_and_a_repeat_returns_the_same_batch(lankao, client):
    with in_county(lankao):
        _official(Official.Role.DATA_OFFICER, "officer", client=client)
        zhang = make_farmer(name="张三", id_number=ID_ZHANG)

        created = _push(client, {"as_of_date": "2026-06-30", "records": [RECORD]})
        repeated = _push(client, {"as_of_date": "2026-06-30", "records": [RECORD]})

        assert created.status_code == 201
        body = created.json()
        batch_id = body.pop("id")
        assert created["Location"] == f"/api/v1/data/batches/{batch_id}"
        assert {key: body[key] for key in body if key not in {"created_at", "finished_at"}} == {
            "category": "land_contract", "source": "api", "file_name": "", "as_of_date": "2026-06-30", "status": "succeeded",
            "encoding": "", "rows_total": 1, "rows_done": 1, "rows_imported": 1, "error_count": 0, "errors": [],
            "submitted_by": "officer",
        }
        assert (repeated.status_code, repeated.json()["id"], repeated.json()["status"]) == (200, batch_id, "succeeded")
        assert list(GovernmentRecord.objects.values_list("farmer_id", "record_key", "as_of_date", "data")) == [
            (zhang.pk, "HT-0001", dt.date(2026, 6, 30),
             {"contract_no": "HT-0001", "parcels": 3, "area_mu": "12.50", "term_end": "2028-12-31"}),
        ]
        assert ImportBatch.objects.count() == 1


def test_a_push_with_bad_records_is_rejected_naming_each_record(lankao, client):
    with in_county(lankao):
        _official(Official.Role.COUNTY_ADMIN, "officer", client=client)
        make_farmer(name="张三", id_number=ID_ZHANG)
        records = [
            RECORD,
            {**RECORD, "id_number": ID_NOBODY, "contract_no": "HT-0002"},
            {**RECORD, "contract_no": "HT-0003", "areamu": 5, "parcels": "3.5"},
            "not an object",
            {**RECORD, "contract_no": "HT-0004", "area_mu": 1.005},
        ]

        response = _push(client, {"as_of_date": "2026-06-30", "records": records})

        assert response.status_code == 201
        body = response.json()
        assert (body["status"], body["rows_total"], body["rows_imported"], body["error_count"]) == ("rejected", 5, 0, 5)
        assert body["errors"] == [
            {"line": 2, "field": "id_number", "reason_zh": "本县农民名册中没有这个身份证号",
             "reason_en": "no farmer with this ID number in the county's roster"},
            {"line": 3, "field": "parcels", "reason_zh": "不是整数：3.5", "reason_en": "not a whole number: 3.5"},
            {"line": 3, "field": "areamu", "reason_zh": "未知字段", "reason_en": "unknown field"},
            {"line": 4, "field": "", "reason_zh": "记录必须是 JSON 对象", "reason_en": "a record must be a JSON object"},
            {"line": 5, "field": "area_mu", "reason_zh": "小数位数超过 2 位：1.005", "reason_en": "more than 2 decimal places: 1.005"},
        ]
        assert GovernmentRecord.objects.count() == 0
        detail = client.get(f"/api/v1/data/batches/{body['id']}", HTTP_HOST=HOST)
        assert (detail.status_code, detail.json()["status"], detail.json()["errors"]) == (200, "rejected", body["errors"])


def test_only_data_officers_and_county_admins_with_their_code_may_push(lankao, jinzhai, client):
    body = {"as_of_date": "2026-06-30", "records": [RECORD]}
    anonymous = _push(client, body)
    with in_county(lankao):
        _official(Official.Role.AUDITOR, "auditor", client=client)
    auditor = _push(client, body)
    with in_county(lankao):
        _official(Official.Role.DATA_OFFICER, "password-only", client=client, second_factor=False)
    password_only = _push(client, body)
    with in_county(lankao):
        _official(Official.Role.DATA_OFFICER, "officer", client=client)
    # Lankao's officer (and session) is nobody in Jinzhai's schema.
    other_county = _push(client, body, host="jinzhai.localhost")

    assert [r.status_code for r in (anonymous, auditor, password_only, other_county)] == [403, 403, 403, 403]
    # HTTP Basic (a password alone, on every request) is no longer accepted.
    assert "WWW-Authenticate" not in anonymous
    with in_county(lankao):
        assert ImportBatch.objects.count() == 0


def test_bad_envelopes_are_refused_before_any_batch(lankao, client):
    with in_county(lankao):
        _official(Official.Role.DATA_OFFICER, "officer", client=client)

        unknown_category = _push(client, {"as_of_date": "2026-06-30", "records": [RECORD]}, category="horoscope")
        no_date = _push(client, {"records": [RECORD]})
        no_records = _push(client, {"as_of_date": "2026-06-30", "records": []})

        assert unknown_category.status_code == 404
        assert (no_date.status_code, list(no_date.json())) == (400, ["as_of_date"])
        assert (no_records.status_code, list(no_records.json())) == (400, ["records"])
        assert ImportBatch.objects.count() == 0
