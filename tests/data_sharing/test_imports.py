"""Department file imports: decoding, validation report, all-or-nothing writes, idempotence,
XLSX without formula evaluation, as-of versioning, progress and the error report."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl
import pytest

from data_sharing import imports
from data_sharing.models import GovernmentRecord, ImportBatch
from tests.conftest import in_county, make_farmer, valid_id_number

AS_OF = dt.date(2026, 6, 30)
ID_ZHANG = valid_id_number(seq=101)
ID_LI = valid_id_number(seq=102, birth=dt.date(1975, 3, 8))
ID_NOBODY = valid_id_number(seq=199)


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def _submit(category: str, content: bytes, *, as_of: dt.date = AS_OF, file_name: str = "file.csv"):
    batch, _created = imports.batch_submit_file(
        category_code=category, file_name=file_name, content=content, as_of_date=as_of, submitted_by="officer", schedule=False
    )
    return imports.batch_run(batch_id=batch.pk)


def _records(batch: ImportBatch) -> list[tuple[int, str, dt.date, dict]]:
    return sorted(GovernmentRecord.objects.filter(batch=batch).values_list("farmer_id", "record_key", "as_of_date", "data"))


def test_a_gbk_file_imports_and_its_chinese_decodes(lankao, django_capture_on_commit_callbacks):
    with in_county(lankao):
        zhang = make_farmer(name="张三", id_number=ID_ZHANG)
        li = make_farmer(name="李秀英", id_number=ID_LI)
        content = (
            "身份证号,姓名,承包合同编号,地块数,承包面积（亩）,承包期限至\r\n"
            f"{ID_ZHANG},张三,HT-0001,3,12.5,2028/12/31\r\n"
            f"{ID_LI},李　秀英,HT-0002,1,4,\r\n"
        ).encode("gbk")
        with django_capture_on_commit_callbacks() as callbacks:
            queued, created = imports.batch_submit_file(
                category_code="land_contract", file_name="土地承包.csv", content=content, as_of_date=AS_OF, submitted_by="officer"
            )
        assert (created, queued.status, len(callbacks)) == (True, "queued", 1)

        batch = imports.batch_run(batch_id=queued.pk)

        assert (batch.status, batch.encoding, batch.rows_total, batch.rows_done, batch.rows_imported, batch.error_count) == (
            "succeeded", "gb18030", 2, 2, 2, 0,
        )
        assert _records(batch) == sorted([
            (zhang.pk, "HT-0001", AS_OF, {"contract_no": "HT-0001", "parcels": 3, "area_mu": "12.50", "term_end": "2028-12-31"}),
            (li.pk, "HT-0002", AS_OF, {"contract_no": "HT-0002", "parcels": 1, "area_mu": "4.00", "term_end": None}),
        ])


def test_chinese_values_and_choice_labels_in_gbk_are_stored_as_written(lankao):
    with in_county(lankao):
        zhang = make_farmer(name="张三", id_number=ID_ZHANG)
        coop = (
            "身份证号,合作社统一社会信用代码,合作社名称,入社日期\n"
            f"{ID_ZHANG},93410225MA9XK1234Q,兰考县东坝头乡张庄蜜瓜种植专业合作社,2021年3月15日\n"
        ).encode("gbk")
        transfer = (
            "身份证号,流转合同编号,流转方向,流转面积（亩）,起始日期,期限（月）,年租金（元）\n"
            f"{ID_ZHANG},LZ-1,转入,20,2025-03-01,60,16000\n"
        ).encode("gbk")

        coop_batch = _submit("coop_membership", coop)
        transfer_batch = _submit("land_transfer", transfer)

        assert (coop_batch.status, coop_batch.encoding) == ("succeeded", "gb18030")
        assert _records(coop_batch) == [(zhang.pk, "93410225MA9XK1234Q", AS_OF, {
            "cooperative_code": "93410225MA9XK1234Q", "cooperative_name": "兰考县东坝头乡张庄蜜瓜种植专业合作社", "joined_on": "2021-03-15",
        })]
        assert _records(transfer_batch) == [(zhang.pk, "LZ-1", AS_OF, {
            "contract_no": "LZ-1", "direction": "in", "area_mu": "20.00", "start_date": "2025-03-01", "term_months": 60,
            "annual_rent_yuan": "16000.00",
        })]


def test_a_utf8_file_with_bom_is_read_as_utf8(lankao):
    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        content = ("\ufeffid_number,name,scheme,enrolled,contribution_years\n" f"{ID_ZHANG},张三,城乡居民养老保险,是,12\n").encode()

        batch = _submit("social_insurance", content)

        assert (batch.status, batch.encoding, batch.rows_imported) == ("succeeded", "utf-8", 1)
        assert GovernmentRecord.objects.get(batch=batch).data == {"scheme": "resident_pension", "enrolled": True, "contribution_years": 12}


def test_bad_rows_reject_the_whole_file_with_a_report_per_line_and_field(lankao):
    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        make_farmer(name="李四", id_number=ID_LI)
        wrong_check_digit = ID_ZHANG[:17] + ("0" if ID_ZHANG[17] != "0" else "1")
        rows = [
            "id_number,name,contract_no,direction,area_mu,start_date,term_months,annual_rent_yuan",
            f"{ID_ZHANG},张三,LZ-1,转入,10.5,2025-03-01,36,800",     # 2: fine
            f"{wrong_check_digit},张三,LZ-2,in,5,2025-03-01,12,",    # 3
            f"{ID_NOBODY},王五,LZ-3,out,5,2025-03-01,12,",           # 4
            f"{ID_LI},李四,LZ-4,in,12.3.4,2025-03-01,12,",            # 5
            f"{ID_LI},李四,LZ-5,in,5,2025-03-01,361,",                # 6
            f"{ID_LI},李四,LZ-6,租入,5,2025-03-01,12,",               # 7
            f"{ID_LI},李四,LZ-7,in,5,,12,",                           # 8
            f"{ID_ZHANG},张三,LZ-1,out,3,2025-04-01,12,",             # 9
            f"{ID_LI},李四,LZ-8,in,5.125,2025-03-01,12,",             # 10
            f"{ID_LI},王二,LZ-9,in,5,2025-03-01,12,",                 # 11
            f"{ID_LI},李四,LZ-10,in,5,2025-02-30,12,",                # 12
            f"{ID_LI},李四,LZ-11,in,=1+1,2025-03-01,12,",             # 13
            f"{ID_LI},李四,LZ-12,in,-1,2025-03-01,0,",                # 14: two errors on one line
        ]
        content = "\n".join(rows).encode()

        batch = _submit("land_transfer", content)

        assert (batch.status, batch.rows_total, batch.rows_imported, batch.error_count) == ("rejected", 13, 0, 13)
        assert batch.errors == [
            {"line": 3, "field": "id_number", "reason_zh": "身份证号校验位错误", "reason_en": "ID number check digit is wrong"},
            {"line": 4, "field": "id_number", "reason_zh": "本县农民名册中没有这个身份证号",
             "reason_en": "no farmer with this ID number in the county's roster"},
            {"line": 5, "field": "area_mu", "reason_zh": "不是数字：12.3.4", "reason_en": "not a number: 12.3.4"},
            {"line": 6, "field": "term_months", "reason_zh": "超出范围（1 到 360）：361", "reason_en": "out of range (1 to 360): 361"},
            {"line": 7, "field": "direction", "reason_zh": "不是可选值：租入（可选：转入（in）、转出（out））",
             "reason_en": "not an allowed value: 租入 (allowed: in = rented in, out = rented out)"},
            {"line": 8, "field": "start_date", "reason_zh": "必填项为空", "reason_en": "required value is missing"},
            {"line": 9, "field": "contract_no", "reason_zh": "与第 2 行重复（同一人、同一记录键 LZ-1）",
             "reason_en": "duplicates line 2 (same person and record key LZ-1)"},
            {"line": 10, "field": "area_mu", "reason_zh": "小数位数超过 2 位：5.125", "reason_en": "more than 2 decimal places: 5.125"},
            {"line": 11, "field": "name", "reason_zh": "姓名与名册中该身份证号的姓名不一致",
             "reason_en": "the name differs from the roster's name for this ID number"},
            {"line": 12, "field": "start_date", "reason_zh": "日期不存在：2025-02-30", "reason_en": "no such date: 2025-02-30"},
            {"line": 13, "field": "area_mu", "reason_zh": "单元格是公式，不是数值：=1+1",
             "reason_en": "the cell holds a formula, not a value: =1+1"},
            {"line": 14, "field": "area_mu", "reason_zh": "超出范围（0.01 到 100000）：-1.00",
             "reason_en": "out of range (0.01 to 100000): -1.00"},
            {"line": 14, "field": "term_months", "reason_zh": "超出范围（1 到 360）：0", "reason_en": "out of range (1 to 360): 0"},
        ]
        assert GovernmentRecord.objects.count() == 0


LAND_HEADER = "身份证号,姓名,承包合同编号,地块数,承包面积（亩）,承包期限至\n"


def test_the_same_file_twice_is_the_same_batch_and_imports_nothing_twice(lankao, django_capture_on_commit_callbacks):
    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        content = (LAND_HEADER + f"{ID_ZHANG},张三,HT-0001,3,12.5,\n").encode("gbk")
        first = _submit("land_contract", content, file_name="第一次.csv")

        with django_capture_on_commit_callbacks() as callbacks:
            again, created = imports.batch_submit_file(
                category_code="land_contract", file_name="第二次.csv", content=content, as_of_date=AS_OF, submitted_by="officer"
            )
        rerun = imports.batch_run(batch_id=first.pk)

        assert (created, again.pk, again.file_name, again.status, len(callbacks)) == (False, first.pk, "第一次.csv", "succeeded", 0)
        assert (rerun.pk, rerun.status, rerun.rows_imported) == (first.pk, "succeeded", 1)
        assert GovernmentRecord.objects.count() == 1
        assert ImportBatch.objects.count() == 1


def test_rows_already_imported_for_the_date_are_not_imported_again(lankao):
    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        make_farmer(name="李四", id_number=ID_LI)
        first = _submit("land_contract", (LAND_HEADER + f"{ID_ZHANG},张三,HT-0001,3,12.5,\n").encode())
        # A later extract for the same date that repeats Zhang's contract and adds Li's.
        second = _submit("land_contract", (LAND_HEADER + f"{ID_ZHANG},张三,HT-0001,3,12.5,\n{ID_LI},李四,HT-0002,2,3,\n").encode())

        assert (first.rows_imported, second.status, second.rows_total, second.rows_imported) == (1, "succeeded", 2, 1)
        assert sorted(GovernmentRecord.objects.values_list("record_key", "batch_id")) == [("HT-0001", first.pk), ("HT-0002", second.pk)]


def test_two_as_of_dates_keep_two_versions_of_a_record(lankao):
    with in_county(lankao):
        zhang = make_farmer(name="张三", id_number=ID_ZHANG)
        june = _submit("land_contract", (LAND_HEADER + f"{ID_ZHANG},张三,HT-0001,3,12.5,\n").encode(), as_of=dt.date(2026, 6, 30))
        # Same file, later date: a distinct batch (the date is part of its identity).
        september = _submit("land_contract", (LAND_HEADER + f"{ID_ZHANG},张三,HT-0001,3,12.5,\n").encode(), as_of=dt.date(2026, 9, 30))
        december = _submit("land_contract", (LAND_HEADER + f"{ID_ZHANG},张三,HT-0001,4,15,\n").encode(), as_of=dt.date(2026, 12, 31))

        assert len({june.pk, september.pk, december.pk}) == 3
        assert list(
            GovernmentRecord.objects.filter(farmer=zhang, record_key="HT-0001")
            .order_by("as_of_date")
            .values_list("as_of_date", "data__parcels", "data__area_mu")
        ) == [(dt.date(2026, 6, 30), 3, "12.50"), (dt.date(2026, 9, 30), 3, "12.50"), (dt.date(2026, 12, 31), 4, "15.00")]


def _xlsx(rows: list[list[object]]) -> bytes:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_an_xlsx_file_imports_with_excel_date_and_number_cells(lankao):
    with in_county(lankao):
        zhang = make_farmer(name="张三", id_number=ID_ZHANG)
        li = make_farmer(name="李四", id_number=ID_LI)
        content = _xlsx([
            ["兰考县土地承包经营权台账（2026 年 6 月）"],  # a title row above the header
            ["ID number", "Name", "Contract number", "Parcels", "Area (mu)", "Term ends", "备注"],
            [ID_ZHANG, "张三", "HT-0001", 3, 12.5, dt.datetime(2028, 12, 31), "ignored"],
            [],
            [ID_LI, "李四", 20260001, 2.0, 7, "2029-01-01", None],
        ])

        batch = _submit("land_contract", content, file_name="台账.xlsx")

        assert (batch.status, batch.encoding, batch.rows_total, batch.rows_imported) == ("succeeded", "", 2, 2)
        assert _records(batch) == sorted([
            (zhang.pk, "HT-0001", AS_OF, {"contract_no": "HT-0001", "parcels": 3, "area_mu": "12.50", "term_end": "2028-12-31"}),
            (li.pk, "20260001", AS_OF, {"contract_no": "20260001", "parcels": 2, "area_mu": "7.00", "term_end": "2029-01-01"}),
        ])


def test_an_xlsx_formula_is_never_evaluated_and_rejected_for_a_number(lankao):
    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        make_farmer(name="李四", id_number=ID_LI)
        content = _xlsx([
            ["身份证号", "承包合同编号", "地块数", "承包面积（亩）"],
            [ID_ZHANG, "=HYPERLINK(\"http://x\")", "=1+1", 12.5],
            [int(ID_LI[:17]) * 10, "HT-0002", 2, 7.25],  # an ID typed into Excel as a number
        ])

        batch = _submit("land_contract", content, file_name="台账.xlsx")

        assert (batch.status, batch.error_count) == ("rejected", 2)
        assert batch.errors == [
            {"line": 2, "field": "parcels", "reason_zh": "单元格是公式，不是数值：=1+1", "reason_en": "the cell holds a formula, not a value: =1+1"},
            {"line": 3, "field": "id_number", "reason_zh": imports._ID_AS_NUMBER[0], "reason_en": imports._ID_AS_NUMBER[1]},
        ]
        assert GovernmentRecord.objects.count() == 0


@pytest.mark.parametrize(
    ("content", "line"),
    [
        # GBK until a byte that is neither GBK nor UTF-8.
        ((LAND_HEADER + "41022519800517,张三\n").encode("gbk") + b"\xff\xfe,x\n", 3),
        # UTF-8 with one damaged byte: not read as GB18030 mojibake.
        ((LAND_HEADER + "41022519800517,张三\n").encode() + b"x,\xe5\xbc\n", 3),
    ],
)
def test_an_undecodable_file_is_rejected_naming_the_line(lankao, content, line):
    with in_county(lankao):
        batch = _submit("land_contract", content)

        assert (batch.status, batch.error_count, batch.encoding, batch.rows_imported) == ("rejected", 1, "", 0)
        assert batch.errors == [{
            "line": line, "field": "",
            "reason_zh": f"文件编码无法识别（第 {line} 行既不是 UTF-8 也不是 GBK）；请另存为 UTF-8 或 GBK 编码的 CSV",
            "reason_en": f"The file's encoding is not recognised (line {line} is neither UTF-8 nor GBK); save it as a UTF-8 or GBK CSV",
        }]


def test_decode_text_says_which_encoding_it_used():
    assert imports.decode_text("姓名\n张三".encode("gbk")) == ("姓名\n张三", "gb18030")
    assert imports.decode_text("\ufeff姓名\n张三".encode()) == ("姓名\n张三", "utf-8")
    assert imports.decode_text(b"id_number\n") == ("id_number\n", "utf-8")


def test_a_header_without_required_columns_is_rejected(lankao):
    with in_county(lankao):
        no_id = _submit("land_contract", "姓名,承包合同编号,地块数,承包面积（亩）\n张三,HT-1,1,1\n".encode())
        no_area = _submit("land_contract", "身份证号,承包合同编号,地块数,地块数\n1,HT-1,1,1\n".encode())

        assert no_id.errors == [{
            "line": 1, "field": "id_number", "reason_zh": "缺少身份证号列（身份证号 / id_number）",
            "reason_en": "missing the ID number column (身份证号 / id_number)",
        }]
        assert no_area.errors == [
            {"line": 1, "field": "parcels", "reason_zh": "列重复：地块数", "reason_en": "duplicate column: 地块数"},
            {"line": 1, "field": "area_mu", "reason_zh": "缺少必填列：承包面积（亩）（area_mu）",
             "reason_en": "missing required column: Area (mu) (area_mu)"},
        ]
        assert (no_id.status, no_area.status, no_area.error_count) == ("rejected", "rejected", 2)


def test_only_the_first_1000_errors_are_kept_but_all_are_counted(lankao):
    with in_county(lankao):
        ids = [valid_id_number(birth=dt.date(1970, 1, 1) + dt.timedelta(days=day)) for day in range(1005)]  # nobody on the roster
        rows = "".join(f"{number},,HT-{day},{1 if day < 500 else 0},1,\n" for day, number in enumerate(ids))  # parcels 0 from line 502

        batch = _submit("land_contract", (LAND_HEADER + rows).encode())

        assert (batch.status, batch.rows_total, batch.error_count, len(batch.errors)) == ("rejected", 1005, 1510, 1000)
        assert [(error["line"], error["field"]) for error in batch.errors[:2]] == [(2, "id_number"), (3, "id_number")]
        assert [(error["line"], error["field"]) for error in batch.errors[498:502]] == [
            (500, "id_number"), (501, "id_number"), (502, "id_number"), (502, "parcels"),
        ]
        assert [(error["line"], error["field"]) for error in batch.errors[-2:]] == [(751, "id_number"), (751, "parcels")]
        csv_text = imports.error_report_csv(batch)
        assert csv_text.splitlines()[-1] == ",,,,仅列出前 1000 个错误，共 1510 个,only the first 1000 of 1510 errors are listed"


def test_the_error_report_is_excel_ready_and_never_a_formula(lankao):
    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        batch = _submit("land_contract", (LAND_HEADER + f"{ID_ZHANG},张三,HT-1,-3,12.5,\n").encode())
        # A report cell can carry text from the file; one starting like a formula stays text.
        batch.errors.append({"line": 9, "field": "=HYPERLINK(\"http://x\")", "reason_zh": "+1", "reason_en": "@SUM(A1)"})

        report = imports.error_report_csv(batch)

        assert report.startswith("\ufeff")
        assert report[1:].splitlines() == [
            "行号 Line,字段 Field,字段名称,Field name,原因,Reason",
            "2,parcels,地块数,Parcels,超出范围（1 到 500）：-3,out of range (1 to 500): -3",
            "9,\"'=HYPERLINK(\"\"http://x\"\")\",\"'=HYPERLINK(\"\"http://x\"\")\",\"'=HYPERLINK(\"\"http://x\"\")\",'+1,'@SUM(A1)",
        ]


def test_a_finished_batch_is_returned_as_is_and_the_task_only_calls_the_service(lankao):
    from data_sharing.tasks import import_batch

    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        batch, _created = imports.batch_submit_file(
            category_code="land_contract", file_name="a.csv", content=(LAND_HEADER + f"{ID_ZHANG},张三,HT-1,3,12.5,\n").encode(),
            as_of_date=AS_OF, submitted_by="officer", schedule=False,
        )

        assert import_batch(batch.pk) == {"batch_id": batch.pk, "status": "succeeded", "rows_imported": 1, "errors": 0}
        assert import_batch(batch.pk) == {"batch_id": batch.pk, "status": "succeeded", "rows_imported": 1, "errors": 0}
        assert GovernmentRecord.objects.count() == 1


def test_progress_is_published_while_the_import_runs(lankao, monkeypatch):
    from data_sharing import selectors

    seen = []
    report = imports._report_progress
    polled: list[ImportBatch] = []

    def report_and_poll(batch_id: int, rows_done: int, rows_total: int) -> None:
        report(batch_id, rows_done, rows_total)
        # What the portal's poll would answer now: the batch row as committed before the import
        # transaction began (read once, before the COPY holds this connection), plus the cache.
        if not polled:
            polled.append(ImportBatch.objects.get(pk=batch_id))
        progress = selectors.batch_progress(batch=polled[0])
        seen.append((progress["status"], progress["rows_done"], progress["rows_total"], progress["percent"]))

    monkeypatch.setattr(imports, "_report_progress", report_and_poll)
    monkeypatch.setattr(imports, "PROGRESS_EVERY_ROWS", 2)
    with in_county(lankao):
        for seq in range(101, 106):
            make_farmer(name="张三", id_number=valid_id_number(seq=seq))
        rows = "".join(f"{valid_id_number(seq=seq)},张三,HT-{seq},1,1,\n" for seq in range(101, 106))

        batch = _submit("land_contract", (LAND_HEADER + rows).encode())

        assert seen == [("running", 0, 5, 0), ("running", 2, 5, 40), ("running", 4, 5, 80)]
        assert selectors.batch_progress(batch=batch) == {
            "id": batch.pk, "status": "succeeded", "status_display": "已导入", "finished": True, "rows_total": 5,
            "rows_done": 5, "rows_imported": 5, "error_count": 0, "percent": 100,
        }


def test_the_management_command_imports_and_reports(lankao, tmp_path):
    from django.core.management import CommandError, call_command

    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
    good, bad = tmp_path / "承包.csv", tmp_path / "bad.csv"
    good.write_bytes((LAND_HEADER + f"{ID_ZHANG},张三,HT-1,3,12.5,\n").encode("gbk"))
    bad.write_bytes((LAND_HEADER + f"{ID_ZHANG},张三,HT-1,0,12.5,\n").encode("gbk"))
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "import_records", "--county", "410225", "--category", "land_contract", "--file", str(good), "--as-of", "2026-11-01", stdout=out
    )
    with pytest.raises(CommandError) as rejected:
        call_command("import_records", county="410225", category="land_contract", file=str(bad), as_of="2026-11-01", stdout=out, stderr=err)

    with in_county(lankao):
        first, second = ImportBatch.objects.order_by("id")
        assert GovernmentRecord.objects.filter(batch=first).count() == 1
    assert out.getvalue().splitlines() == [
        f"批次 / batch {first.pk}: succeeded; 编码 / encoding gb18030; 行数 / rows 1; 导入 / imported 1; 错误 / errors 0",
        f"批次 / batch {second.pk}: rejected; 编码 / encoding gb18030; 行数 / rows 1; 导入 / imported 0; 错误 / errors 1",
    ]
    assert err.getvalue() == "第 2 行 / line 2 [parcels]: 超出范围（1 到 500）：0 / out of range (1 to 500): 0\n"
    assert str(rejected.value) == "导入被拒绝，未写入任何记录（1 个错误） / Import rejected, nothing was written (1 errors)"


@pytest.mark.parametrize("problem", ["unknown person", "other name"])
def test_a_roster_mismatch_alone_rejects_the_file_and_undoes_the_rows_already_written(lankao, problem):
    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        make_farmer(name="李四", id_number=ID_LI)
        second = f"{ID_NOBODY},王五" if problem == "unknown person" else f"{ID_LI},王五"

        batch = _submit("land_contract", (LAND_HEADER + f"{ID_ZHANG},张三,HT-1,3,12.5,\n{second},HT-2,1,1,\n").encode())

        expected = (
            {"line": 3, "field": "id_number", "reason_zh": "本县农民名册中没有这个身份证号",
             "reason_en": "no farmer with this ID number in the county's roster"}
            if problem == "unknown person"
            else {"line": 3, "field": "name", "reason_zh": "姓名与名册中该身份证号的姓名不一致",
                  "reason_en": "the name differs from the roster's name for this ID number"}
        )
        assert (batch.status, batch.rows_total, batch.rows_imported, batch.errors) == ("rejected", 2, 0, [expected])
        assert GovernmentRecord.objects.count() == 0


@pytest.mark.parametrize(
    ("last_rows", "expected"),
    [
        # A repeat of line 2 four chunks later: the insert would skip it (ON CONFLICT), the check does not.
        ([f"{ID_ZHANG},张三,HT-1,1,1,"], {"line": 10, "field": "contract_no", "reason_zh": "与第 2 行重复（同一人、同一记录键 HT-1）",
                                         "reason_en": "duplicates line 2 (same person and record key HT-1)"}),
        ([f"{ID_NOBODY},王五,HT-9,1,1,"], {"line": 10, "field": "id_number", "reason_zh": "本县农民名册中没有这个身份证号",
                                          "reason_en": "no farmer with this ID number in the county's roster"}),
        ([f"{ID_LI},李四,HT-9,0,1,"], {"line": 10, "field": "parcels", "reason_zh": "超出范围（1 到 500）：0",
                                       "reason_en": "out of range (1 to 500): 0"}),
    ],
)
def test_a_problem_in_a_later_chunk_undoes_the_chunks_already_written(lankao, monkeypatch, last_rows, expected):
    monkeypatch.setattr(imports, "WRITE_CHUNK_ROWS", 2)
    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        make_farmer(name="李四", id_number=ID_LI)
        rows = [f"{ID_ZHANG},张三,HT-{n},1,1," for n in range(1, 5)] + [f"{ID_LI},李四,HT-{n},1,1," for n in range(1, 5)]

        batch = _submit("land_contract", (LAND_HEADER + "\n".join(rows + last_rows) + "\n").encode())
        clean = _submit("land_contract", (LAND_HEADER + "\n".join(rows) + "\n").encode(), as_of=dt.date(2026, 7, 1))

        assert (batch.status, batch.rows_total, batch.rows_imported, batch.errors) == ("rejected", 9, 0, [expected])
        assert (clean.status, clean.rows_imported) == ("succeeded", 8)
        assert GovernmentRecord.objects.filter(batch=batch).count() == 0
        assert GovernmentRecord.objects.filter(batch=clean).count() == 8


def test_values_with_tabs_backslashes_and_newlines_survive_the_copy(lankao):
    with in_county(lankao):
        zhang = make_farmer(name="张三", id_number=ID_ZHANG)
        content = (
            "身份证号,执行案号,执行法院,列入日期\n"
            f'{ID_ZHANG},"(2024)豫0225执\\123号","兰考县\t人民法院\n第二庭",2024-05-06\n'
        ).encode()

        batch = _submit("dishonest_debtor", content)

        assert (batch.status, batch.rows_imported) == ("succeeded", 1)
        assert _records(batch) == [(zhang.pk, "(2024)豫0225执\\123号", AS_OF, {
            "case_no": "(2024)豫0225执\\123号", "court": "兰考县\t人民法院\n第二庭", "listed_on": "2024-05-06", "removed_on": None,
        })]


def test_a_failed_import_is_retried_by_submitting_the_file_again(lankao, django_capture_on_commit_callbacks):
    from django.core.files.storage import default_storage

    with in_county(lankao):
        make_farmer(name="张三", id_number=ID_ZHANG)
        content = (LAND_HEADER + f"{ID_ZHANG},张三,HT-1,3,12.5,\n").encode()
        batch, _created = imports.batch_submit_file(
            category_code="land_contract", file_name="a.csv", content=content, as_of_date=AS_OF, submitted_by="officer", schedule=False
        )
        default_storage.delete(batch.stored_path)  # the media volume lost the file

        with pytest.raises(FileNotFoundError):
            imports.batch_run(batch_id=batch.pk)
        failed = ImportBatch.objects.get(pk=batch.pk)
        with django_capture_on_commit_callbacks() as callbacks:
            again, created = imports.batch_submit_file(
                category_code="land_contract", file_name="a.csv", content=content, as_of_date=AS_OF, submitted_by="officer"
            )
        done = imports.batch_run(batch_id=batch.pk)

        assert (failed.status, failed.error_count, failed.errors[0]["line"], failed.errors[0]["reason_zh"]) == (
            "failed", 1, 0, "导入程序出错：FileNotFoundError",
        )
        assert (again.pk, created, again.status, len(callbacks)) == (batch.pk, False, "queued", 1)
        assert (done.status, done.rows_imported, done.errors) == ("succeeded", 1, [])
