"""The department-data upload pages in the portal's frame: the upload form's transfer progress,
the category's recent imports, the batch page's progress bar (live while it runs, 100% once
done), and the error report as CSV with line, field and both reasons — escaped."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from counties.models import Official
from data_sharing import imports
from data_sharing.models import DataCategory, ImportBatch
from tests.conftest import make_farmer, valid_id_number

R = Official.Role
ID_ZHANG = valid_id_number(seq=101)
LAND_HEADER = "身份证号,姓名,承包合同编号,地块数,承包面积（亩）,承包期限至\n"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def _upload(portal, content: bytes, *, as_of: str = "2026-06-30"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return portal.client.post(
        "/portal/data/upload/",
        {"category": "land_contract", "as_of_date": as_of, "file": SimpleUploadedFile("土地承包.csv", content)},
        HTTP_HOST="lankao.localhost",
    )


def test_the_upload_page_shows_transfer_progress_and_the_categorys_history(portal):
    portal.login(R.DATA_OFFICER, username="data-a")
    make_farmer(name="张三", id_number=ID_ZHANG)
    _upload(portal, (LAND_HEADER + f"{ID_ZHANG},张三,HT-1,3,12.5,\n").encode())
    batch = ImportBatch.objects.get()

    page = portal.get("/portal/data/upload/", category="land_contract")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'class="portal-nav"' in html and 'aria-current="page">部门数据导入' in html
    assert "data-upload-form" in html and "data-upload-bar" in html and "/static/portal/upload.js" in html
    assert [row.pk for row in page.context["recent"]] == [batch.pk]
    assert f'href="/portal/data/batches/{batch.pk}/"' in html
    # Without a category chosen there is no history to show.
    assert portal.get("/portal/data/upload/").context["recent"] == []


def test_the_batch_page_shows_live_progress_then_100_percent(portal):
    portal.login(R.COUNTY_ADMIN)
    make_farmer(name="张三", id_number=ID_ZHANG)
    _upload(portal, (LAND_HEADER + f"{ID_ZHANG},张三,HT-1,3,12.5,\n").encode())
    batch = ImportBatch.objects.get()
    queued = portal.get(f"/portal/data/batches/{batch.pk}/").content.decode()
    imports.batch_run(batch_id=batch.pk)
    done = portal.get(f"/portal/data/batches/{batch.pk}/").content.decode()

    assert f'data-progress-url="/portal/data/batches/{batch.pk}/progress"' in queued
    assert "<progress data-progress-bar" in queued
    assert '<progress data-progress-bar max="100" value="100"></progress>' in done
    assert '<span data-progress-percent>100%</span>' in done and "已导入 1 行。" in done


def test_a_bad_row_rejects_the_file_and_the_report_lists_it_in_both_languages(portal):
    portal.login(R.DATA_OFFICER)
    make_farmer(name="张三", id_number=ID_ZHANG)
    _upload(portal, (LAND_HEADER + f"{ID_ZHANG},张三,HT-1,0,12.5,\n{ID_ZHANG},张三,HT-2,abc,3,\n").encode())
    batch = imports.batch_run(batch_id=ImportBatch.objects.get().pk)
    page = portal.get(f"/portal/data/batches/{batch.pk}/").content.decode()
    report = portal.get(f"/portal/data/batches/{batch.pk}/errors.csv")
    rows = list(csv.reader(io.StringIO(report.content.decode("utf-8").lstrip("\ufeff"))))

    assert (batch.status, batch.rows_imported) == ("rejected", 0)
    assert "整批未导入" in page and "data-error-report" in page
    assert rows[0] == ["行号 Line", "字段 Field", "字段名称", "Field name", "原因", "Reason"]
    assert [row[:4] for row in rows[1:]] == [["2", "parcels", "地块数", "Parcels"], ["3", "parcels", "地块数", "Parcels"]]
    assert rows[1][4:] == ["超出范围（1 到 500）：0", "out of range (1 to 500): 0"]


def test_the_error_report_escapes_cells_a_spreadsheet_would_evaluate(portal):
    portal.login(R.DATA_OFFICER)
    batch = ImportBatch.objects.create(
        category=DataCategory.objects.get(code="land_contract"), source="upload", content_sha256="0" * 64,
        as_of_date=dt.date(2026, 6, 30), status="rejected", error_count=2, submitted_by="x",
        errors=[
            {"line": 2, "field": "=cmd|' /C calc'!A0", "reason_zh": "=HYPERLINK(\"http://x\")", "reason_en": "@SUM(1+1)"},
            {"line": 3, "field": "parcels", "reason_zh": "+1+1", "reason_en": "-2+3"},
        ],
    )
    rows = list(csv.reader(io.StringIO(portal.get(f"/portal/data/batches/{batch.pk}/errors.csv").content.decode().lstrip("\ufeff"))))
    assert rows[1] == ["2", "'=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0", "'=HYPERLINK(\"http://x\")", "'@SUM(1+1)"]
    assert rows[2][4:] == ["'+1+1", "'-2+3"]
