"""The portal's department-data pages under /portal/data/ on a county host."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django_otp.plugins.otp_totp.models import TOTPDevice

from counties.models import Official
from data_sharing import imports
from data_sharing.models import ImportBatch
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.counties.portal.conftest import otp_login

ID_ZHANG = valid_id_number(seq=101)
HOST = "lankao.localhost"
LAND_HEADER = "身份证号,姓名,承包合同编号,地块数,承包面积（亩）,承包期限至\n"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def _login(client, role: str, username: str = "officer"):
    user = get_user_model().objects.create_user(username=username, password="portal-pass-123")
    Official.objects.create(user=user, role=role)
    # Both factors (the portal opens no page on a password alone); the session is stored in the
    # county's schema, where this runs.
    otp_login(client, user, TOTPDevice.objects.create(user=user, name="portal", confirmed=True))
    return user


def _upload(client, content: bytes, *, name: str = "土地承包.csv", as_of: str = "2026-06-30"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        "/portal/data/upload/",
        {"category": "land_contract", "as_of_date": as_of, "file": SimpleUploadedFile(name, content)},
        HTTP_HOST=HOST,
    )


def test_the_pages_need_a_login_and_an_import_role(lankao, client):
    batch_pages = ["/portal/data/batches/1/", "/portal/data/batches/1/progress", "/portal/data/batches/1/errors.csv"]
    pages = ["/portal/data/", "/portal/data/upload/", "/portal/data/categories/land_contract/", *batch_pages]
    anonymous = [client.get(page, HTTP_HOST=HOST) for page in pages]
    with in_county(lankao):
        _login(client, Official.Role.AUDITOR, "auditor")
    auditor = [client.get(page, HTTP_HOST=HOST).status_code for page in pages]

    assert [(response.status_code, response["Location"]) for response in anonymous] == [
        (302, f"/portal/login/?next={page}") for page in pages
    ]
    assert auditor == [403] * len(pages)


def test_an_officer_uploads_a_gbk_file_and_follows_it_to_the_end(lankao, client, django_capture_on_commit_callbacks):
    with in_county(lankao):
        _login(client, Official.Role.DATA_OFFICER)
        make_farmer(name="张三", id_number=ID_ZHANG)

        listing = client.get("/portal/data/", HTTP_HOST=HOST)
        with django_capture_on_commit_callbacks() as callbacks:
            uploaded = _upload(client, (LAND_HEADER + f"{ID_ZHANG},张三,HT-1,3,12.5,\n").encode("gbk"))
        batch = ImportBatch.objects.get()
        queued_page = client.get(f"/portal/data/batches/{batch.pk}/", HTTP_HOST=HOST).content.decode()
        queued = client.get(f"/portal/data/batches/{batch.pk}/progress", HTTP_HOST=HOST).json()
        imports.batch_run(batch_id=batch.pk)  # what the Celery task does
        done_page = client.get(f"/portal/data/batches/{batch.pk}/", HTTP_HOST=HOST).content.decode()
        done = client.get(f"/portal/data/batches/{batch.pk}/progress", HTTP_HOST=HOST).json()

        assert listing.status_code == 200
        assert "土地承包经营权" in listing.content.decode()
        assert (uploaded.status_code, uploaded["Location"], len(callbacks)) == (302, f"/portal/data/batches/{batch.pk}/", 1)
        assert (batch.file_name, batch.submitted_by, batch.status) == ("土地承包.csv", "officer", "queued")
        assert f'data-progress-url="/portal/data/batches/{batch.pk}/progress"' in queued_page
        assert "/static/js/import_progress.js" in queued_page
        assert queued == {
            "id": batch.pk, "status": "queued", "status_display": "排队中", "finished": False, "rows_total": 0, "rows_done": 0,
            "rows_imported": 0, "error_count": 0, "percent": 0,
        }
        assert "已导入 1 行。" in done_page
        assert "data-progress-url" not in done_page
        assert done == {
            "id": batch.pk, "status": "succeeded", "status_display": "已导入", "finished": True, "rows_total": 1, "rows_done": 1,
            "rows_imported": 1, "error_count": 0, "percent": 100,
        }


def test_the_progress_endpoint_reads_live_counts_while_running(lankao, client):
    with in_county(lankao):
        _login(client, Official.Role.COUNTY_ADMIN)
        batch, _created = imports.batch_submit_file(
            category_code="land_contract", file_name="big.csv", content=b"x", as_of_date=dt.date(2026, 6, 30),
            submitted_by="officer", schedule=False,
        )
        ImportBatch.objects.filter(pk=batch.pk).update(status="running", rows_total=500_000)
        cache.set(imports.progress_cache_key(batch.pk), {"rows_done": 120_000, "rows_total": 500_000})

        progress = client.get(f"/portal/data/batches/{batch.pk}/progress", HTTP_HOST=HOST)

        assert progress["Cache-Control"] == "no-store"
        assert progress.json() == {
            "id": batch.pk, "status": "running", "status_display": "导入中", "finished": False, "rows_total": 500_000,
            "rows_done": 120_000, "rows_imported": 0, "error_count": 0, "percent": 24,
        }


def test_a_rejected_batch_lists_its_errors_and_offers_the_report(lankao, client):
    with in_county(lankao):
        _login(client, Official.Role.DATA_OFFICER)
        make_farmer(name="张三", id_number=ID_ZHANG)
        _upload(client, (LAND_HEADER + f"{ID_ZHANG},张三,HT-1,0,12.5,\n").encode("gbk"))
        batch = imports.batch_run(batch_id=ImportBatch.objects.get().pk)

        page = client.get(f"/portal/data/batches/{batch.pk}/", HTTP_HOST=HOST).content.decode()
        client.cookies["django_language"] = "en"
        page_en = client.get(f"/portal/data/batches/{batch.pk}/", HTTP_HOST=HOST).content.decode()
        report = client.get(f"/portal/data/batches/{batch.pk}/errors.csv", HTTP_HOST=HOST)

        assert batch.status == "rejected"
        assert "<tr><td>2</td><td>地块数 <span class=\"muted\">(parcels)</span></td><td>超出范围（1 到 500）：0</td></tr>" in page
        assert "<tr><td>2</td><td>Parcels <span class=\"muted\">(parcels)</span></td><td>out of range (1 to 500): 0</td></tr>" in page_en
        assert report["Content-Type"] == "text/csv; charset=utf-8"
        assert report["Content-Disposition"] == f'attachment; filename="import-{batch.pk}-errors.csv"'
        assert report.content.decode("utf-8") == (
            "\ufeff行号 Line,字段 Field,字段名称,Field name,原因,Reason\r\n"
            "2,parcels,地块数,Parcels,超出范围（1 到 500）：0,out of range (1 to 500): 0\r\n"
        )


def test_the_same_file_again_leads_to_the_first_batch(lankao, client):
    with in_county(lankao):
        _login(client, Official.Role.DATA_OFFICER)
        content = (LAND_HEADER + f"{ID_ZHANG},张三,HT-1,3,12.5,\n").encode("gbk")
        first = _upload(client, content)
        again = _upload(client, content, name="再次上传.csv")
        page = client.get(again["Location"], HTTP_HOST=HOST).content.decode()

        assert again["Location"] == first["Location"]
        assert ImportBatch.objects.count() == 1
        assert "这个文件已经以同一截至日期提交过，不会重复导入；下面是该批次。" in page


def test_a_file_over_the_size_limit_is_refused_with_a_clear_message(lankao, client, monkeypatch):
    monkeypatch.setattr(imports, "MAX_UPLOAD_BYTES", 10 * 1024 * 1024)
    with in_county(lankao):
        _login(client, Official.Role.DATA_OFFICER)

        too_big = _upload(client, b"x" * (10 * 1024 * 1024 + 1))
        wrong_kind = _upload(client, b"x", name="data.pdf")

        assert too_big.status_code == 200
        assert "文件超过 10 MB 的上限，请分成几个文件上传。" in too_big.content.decode()
        assert "只支持 CSV 或 XLSX 文件。" in wrong_kind.content.decode()
        assert ImportBatch.objects.count() == 0
