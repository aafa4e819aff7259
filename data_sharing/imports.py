"""Department data imports: a file (CSV in UTF-8 or GBK/GB18030, or XLSX) or a JSON push for one
data category, validated row by row against the category's ``field_schema`` and written whole or
not at all.

One batch (:func:`batch_run`), in one transaction:

1. read the stored content and decode it (strict UTF-8, BOM allowed; else GB18030, the superset
   of GBK that Chinese government systems export);
2. validate each row in Python (types, ranges, choices, ID number check digit via
   ``pii.validate_id_number``, blind index of the ID);
3. meanwhile a writer thread takes the validated rows in chunks: COPY into a temporary table,
   one ``INSERT … SELECT … JOIN counties_farmer … ON CONFLICT DO NOTHING`` per chunk (the join
   on the blind index is the farmer match; a row with no farmer or another name stops the
   writing), then keeps the rows in a staging table for the checks (see :class:`_ChunkWriter`);
4. set-based checks on the staging table: duplicate record keys, and for the report, which
   lines have no farmer or a different name;
5. any error → the savepoint is rolled back (records already written, staging tables) and the
   batch is REJECTED with the report; no error → SUCCEEDED, committed with the records.

Idempotence: the same content for the same category and as-of date is one batch (a unique
constraint); re-running a finished batch returns it; rows already present for that as-of date
are left alone, so nothing is ever imported twice.

Progress (rows done / total) is written to the Django cache (Redis), not to the batch row. The
import runs in one long transaction; a progress UPDATE inside it would stay invisible until the
commit (and be rolled back with a rejection), and one on a second database connection would
need the batch row, which the import holds locked for update. Redis writes are outside every
transaction and take no database lock. ``rows_total`` (an estimate from the line count) and the
RUNNING status are committed before the long transaction starts; the exact totals are written
with the outcome. :func:`data_sharing.selectors.batch_progress` merges the two.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import math
import queue
import re
import threading
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypedDict
from xml.etree.ElementTree import ParseError as XmlParseError

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from counties.models import Official
from data_sharing import pii
from data_sharing.models import DataCategory, GovernmentRecord, ImportBatch
from data_sharing.pii import validate_id_number

logger = logging.getLogger(__name__)

# The portal's upload limit. A 500,000-row land contract CSV is about 30 MB; 200 MB leaves room
# for wide exports while bounding the memory one import takes (the content, decoded, is held
# in memory once: about 3x the file size for a GBK file of Chinese text).
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
# One JSON push is validated and written inside the request; larger extracts go as files,
# which run on a worker.
MAX_PUSH_RECORDS = 100_000
# A file with errors everywhere would otherwise store a report as big as the file.
MAX_STORED_ERRORS = 1000
PROGRESS_EVERY_ROWS = 10_000
PROGRESS_CACHE_SECONDS = 24 * 3600
# A department extract may start with a title line or two (e.g. "兰考县土地承包台账") above the
# header; the header is the first of these rows that names the ID number column.
HEADER_SEARCH_ROWS = 10
IMPORT_ROLES = frozenset({Official.Role.COUNTY_ADMIN, Official.Role.DATA_OFFICER})

FINISHED = frozenset({ImportBatch.Status.SUCCEEDED, ImportBatch.Status.REJECTED})

ID_FIELD = "id_number"
NAME_FIELD = "name"
_ID_HEADERS = ("id_number", "身份证号", "ID number", "身份证号码", "公民身份号码")
_NAME_HEADERS = ("name", "姓名")
_ID_LABELS = ("身份证号", "ID number")
_NAME_LABELS = ("姓名", "Name")


class RowError(TypedDict):
    line: int
    field: str
    reason_zh: str
    reason_en: str


def row_error(line: int, field_name: str, reason_zh: str, reason_en: str) -> RowError:
    return {"line": line, "field": field_name, "reason_zh": reason_zh, "reason_en": reason_en}


class _Invalid(Exception):
    """A value that breaks its field's rule; caught per cell and turned into a report line."""

    def __init__(self, reason_zh: str, reason_en: str) -> None:
        super().__init__(reason_en)
        self.reason_zh = reason_zh
        self.reason_en = reason_en


class _Rejected(Exception):
    """The batch cannot be imported; carries the report. Raised to roll back everything."""

    def __init__(self, errors: list[RowError], error_count: int, rows_total: int) -> None:
        super().__init__(f"{error_count} errors")
        self.errors = errors
        self.error_count = error_count
        self.rows_total = rows_total


def _file_rejected(line: int, reason_zh: str, reason_en: str, field_name: str = "") -> _Rejected:
    return _Rejected([row_error(line, field_name, reason_zh, reason_en)], 1, 0)


# --- Who may import --------------------------------------------------------------------------


def user_can_import(user: Any) -> bool:
    """County administrators and data officers upload and push department data."""
    if not getattr(user, "is_authenticated", False):
        return False
    return Official.objects.filter(user_id=user.pk, role__in=IMPORT_ROLES).exists()


# --- Field validation -----------------------------------------------------------------------

_INT_RE = re.compile(r"[+-]?[0-9]+")
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DATE_RES = (
    re.compile(r"([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})"),
    re.compile(r"([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})日"),
)
_SCIENTIFIC_RE = re.compile(r"[0-9](?:\.[0-9]+)?[eE]\+?[0-9]+")
_TRUE = frozenset({"是", "true", "1", "yes", "y"})
_FALSE = frozenset({"否", "false", "0", "no", "n"})
_MIN_DATE, _MAX_DATE = dt.date(1900, 1, 1), dt.date(2100, 12, 31)
_ID_REASONS = {
    "format": ("身份证号必须是 18 位（最后一位可为 X）", "ID number must be 18 characters (the last may be X)"),
    "region": ("身份证号的地区码无效", "ID number has an invalid region code"),
    "birth_date": ("身份证号中的出生日期无效", "ID number has an invalid birth date"),
    "check_digit": ("身份证号校验位错误", "ID number check digit is wrong"),
}
_ID_AS_NUMBER = (
    "身份证号被存成了数字（Excel 只保留 15 位有效数字，后几位已丢失）；请把该列设为文本后重新导出",
    "the ID number was stored as a number (Excel keeps only 15 significant digits, the last ones are lost); "
    "format the column as text and export again",
)


def _show(raw: object) -> str:
    """The offending value as the report shows it (short: the report is for finding the row)."""
    text = raw.isoformat() if isinstance(raw, dt.date) else str(raw)
    return text if len(text) <= 40 else text[:39] + "…"


def _formula_check(text: str) -> None:
    # Formulas are never evaluated: "=1+1" is text that is not a number or date.
    if text.startswith("="):
        raise _Invalid(f"单元格是公式，不是数值：{_show(text)}", f"the cell holds a formula, not a value: {_show(text)}")


def _excel_number_text(value: float) -> str:
    # What Excel shows for the cell (15 significant digits), not the binary expansion of the double.
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".15g")


def _string_converter(spec: dict) -> Callable[[object], object]:
    max_length = spec.get("max_length")

    def convert(raw: object) -> object:
        if type(raw) is str:
            text = raw
        elif isinstance(raw, bool):
            raise _Invalid(f"应为文本：{_show(raw)}", f"must be text: {_show(raw)}")
        elif isinstance(raw, float):
            text = _excel_number_text(raw)
        elif isinstance(raw, int | Decimal):
            text = str(raw)
        elif isinstance(raw, dt.datetime):
            text = raw.date().isoformat() if raw.time() == dt.time() else raw.isoformat(sep=" ")
        elif isinstance(raw, dt.date):
            text = raw.isoformat()
        else:
            raise _Invalid("应为单个文本值", "must be a single text value")
        if max_length and len(text) > max_length:
            raise _Invalid(f"长度超过 {max_length} 个字符", f"longer than {max_length} characters")
        return text

    return convert


def _parse_decimal(raw: object) -> Decimal:
    if type(raw) is str:
        _formula_check(raw)
        if not _DECIMAL_RE.fullmatch(raw):
            raise _Invalid(f"不是数字：{_show(raw)}", f"not a number: {_show(raw)}")
        return Decimal(raw)
    if isinstance(raw, bool):
        raise _Invalid(f"不是数字：{_show(raw)}", f"not a number: {_show(raw)}")
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float) and math.isfinite(raw):
        # Only XLSX number cells (and callers passing floats) get here; JSON pushes parse
        # numbers as Decimal. Take the digits Excel displays.
        return Decimal(_excel_number_text(raw))
    if isinstance(raw, Decimal) and raw.is_finite():
        return raw
    raise _Invalid(f"不是数字：{_show(raw)}", f"not a number: {_show(raw)}")


def _range_check(value: object, low: object, high: object) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        low_text = "" if low is None else str(low)
        high_text = "" if high is None else str(high)
        raise _Invalid(
            f"超出范围（{low_text} 到 {high_text}）：{_show(value)}",
            f"out of range ({low_text} to {high_text}): {_show(value)}",
        )


def _integer_converter(spec: dict) -> Callable[[object], object]:
    low, high = spec.get("min"), spec.get("max")
    low = None if low is None else int(low)
    high = None if high is None else int(high)

    def convert(raw: object) -> object:
        if type(raw) is int:
            value = raw
        elif type(raw) is str and _INT_RE.fullmatch(raw):
            value = int(raw)
        else:
            number = _parse_decimal(raw)
            # "3.0" or an XLSX number cell 3.0 is the whole number 3; "3.5" is not.
            if number != number.to_integral_value():
                raise _Invalid(f"不是整数：{_show(raw)}", f"not a whole number: {_show(raw)}")
            value = int(number)
        _range_check(value, low, high)
        return value

    return convert


def _decimal_converter(spec: dict) -> Callable[[object], object]:
    places = int(spec.get("places", 2))
    quantum = Decimal(1).scaleb(-places)
    low = None if spec.get("min") is None else Decimal(str(spec["min"]))
    high = None if spec.get("max") is None else Decimal(str(spec["max"]))

    def convert(raw: object) -> object:
        value = _parse_decimal(raw)
        try:
            fixed = value.quantize(quantum)
        except InvalidOperation:
            raise _Invalid(f"数值过大：{_show(raw)}", f"number too large: {_show(raw)}") from None
        # Government figures are never rounded silently: 12.345 with 2 places is an error.
        if fixed != value:
            raise _Invalid(
                f"小数位数超过 {places} 位：{_show(raw)}", f"more than {places} decimal places: {_show(raw)}"
            )
        _range_check(fixed, low, high)
        return str(fixed.copy_abs() if fixed == 0 else fixed)

    return convert


def _date_converter(spec: dict) -> Callable[[object], object]:
    def convert(raw: object) -> object:
        if isinstance(raw, dt.datetime):  # an Excel date cell
            day = raw.date()
        elif isinstance(raw, dt.date):
            day = raw
        elif type(raw) is str:
            _formula_check(raw)
            for pattern in _DATE_RES:
                match = pattern.fullmatch(raw)
                if match:
                    break
            else:
                raise _Invalid(
                    f"日期格式应为 YYYY-MM-DD：{_show(raw)}", f"date must be written YYYY-MM-DD: {_show(raw)}"
                )
            try:
                day = dt.date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                raise _Invalid(f"日期不存在：{_show(raw)}", f"no such date: {_show(raw)}") from None
        else:
            raise _Invalid(f"日期格式应为 YYYY-MM-DD：{_show(raw)}", f"date must be written YYYY-MM-DD: {_show(raw)}")
        if not _MIN_DATE <= day <= _MAX_DATE:
            raise _Invalid(f"日期超出合理范围：{_show(raw)}", f"date out of the plausible range: {_show(raw)}")
        return day.isoformat()

    return convert


def _boolean_converter(spec: dict) -> Callable[[object], object]:
    def convert(raw: object) -> object:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return raw == 1
        if type(raw) is str:
            _formula_check(raw)
            text = raw.casefold()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        raise _Invalid(f"应为 是/否：{_show(raw)}", f"must be yes/no (是/否, true/false, 1/0): {_show(raw)}")

    return convert


def _choice_converter(spec: dict) -> Callable[[object], object]:
    lookup: dict[str, str] = {}
    for value, (label_zh, label_en) in spec["choices"].items():
        for text in (value, label_zh, label_en):
            lookup[unicodedata.normalize("NFKC", text).casefold()] = value
    allowed_zh = "、".join(f"{labels[0]}（{value}）" for value, labels in spec["choices"].items())
    allowed_en = ", ".join(f"{value} = {labels[1]}" for value, labels in spec["choices"].items())

    def convert(raw: object) -> object:
        if type(raw) is str:
            value = lookup.get(raw.casefold()) or lookup.get(unicodedata.normalize("NFKC", raw).casefold())
            if value is not None:
                return value
        raise _Invalid(
            f"不是可选值：{_show(raw)}（可选：{allowed_zh}）", f"not an allowed value: {_show(raw)} (allowed: {allowed_en})"
        )

    return convert


_CONVERTERS: dict[str, Callable[[dict], Callable[[object], object]]] = {
    "string": _string_converter,
    "integer": _integer_converter,
    "decimal": _decimal_converter,
    "date": _date_converter,
    "boolean": _boolean_converter,
    "choice": _choice_converter,
}


@dataclass(frozen=True, slots=True)
class FieldRule:
    name: str
    label_zh: str
    label_en: str
    required: bool
    convert: Callable[[object], object]


@dataclass(frozen=True)
class CategoryRules:
    """A category's field schema compiled into converters, once per batch."""

    fields: tuple[FieldRule, ...]
    key: tuple[str, ...]

    @classmethod
    def of(cls, category: DataCategory) -> CategoryRules:
        schema = category.field_schema
        fields = tuple(
            FieldRule(
                name=spec["name"],
                label_zh=spec.get("label_zh", spec["name"]),
                label_en=spec.get("label_en", spec["name"]),
                required=bool(spec.get("required", False)),
                convert=_CONVERTERS[spec["type"]](spec),
            )
            for spec in schema["fields"]
        )
        return cls(fields=fields, key=tuple(schema["key"]))

    @property
    def key_field(self) -> str:
        """The name errors about a duplicate record key are filed under (``year+kind`` if composite)."""
        return "+".join(self.key)

    def rank(self, field_name: str) -> int:
        """Order of a field within a line of the report: ID, name, then the schema's fields."""
        order = {"": -1, ID_FIELD: 0, NAME_FIELD: 1, self.key_field: 2}
        order.update({rule.name: index + 3 for index, rule in enumerate(self.fields)})
        return order.get(field_name, len(order) + 3)


def field_labels(category: DataCategory) -> dict[str, tuple[str, str]]:
    """Column labels (zh, en) for every name an error can be filed under."""
    labels = {ID_FIELD: _ID_LABELS, NAME_FIELD: _NAME_LABELS}
    for spec in category.field_schema["fields"]:
        labels[spec["name"]] = (spec.get("label_zh", spec["name"]), spec.get("label_en", spec["name"]))
    key = category.field_schema["key"]
    labels["+".join(key)] = ("+".join(labels[name][0] for name in key), " + ".join(labels[name][1] for name in key))
    return labels


def _header_key(text: object) -> str:
    # "承包面积(亩)", "承包面积（亩）" and " Area (mu) " all name the same column.
    return "".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def _header_names(rules: CategoryRules) -> dict[str, str]:
    names = {_header_key(alias): ID_FIELD for alias in _ID_HEADERS}
    names.update({_header_key(alias): NAME_FIELD for alias in _NAME_HEADERS})
    for rule in rules.fields:
        for alias in (rule.name, rule.label_zh, rule.label_en):
            names[_header_key(alias)] = rule.name
    return names


def _map_header(line: int, cells: Sequence[object], rules: CategoryRules) -> list[int | None]:
    """Column index per position [ID, name, field…] (None: column absent). Raises _Rejected."""
    names = _header_names(rules)
    columns: dict[str, int] = {}
    errors: list[RowError] = []
    for index, cell in enumerate(cells):
        if cell is None or not str(cell).strip():
            continue
        name = names.get(_header_key(cell))
        if name is None:
            continue  # extra columns (序号, 村名, 备注…) are common in department exports
        if name in columns:
            errors.append(row_error(line, name, f"列重复：{_show(cell)}", f"duplicate column: {_show(cell)}"))
            continue
        columns[name] = index
    if ID_FIELD not in columns:
        errors.append(row_error(line, ID_FIELD, "缺少身份证号列（身份证号 / id_number）", "missing the ID number column (身份证号 / id_number)"))
    for rule in rules.fields:
        if rule.required and rule.name not in columns:
            errors.append(
                row_error(
                    line, rule.name, f"缺少必填列：{rule.label_zh}（{rule.name}）", f"missing required column: {rule.label_en} ({rule.name})"
                )
            )
    if errors:
        raise _Rejected(errors, len(errors), 0)
    return [columns.get(ID_FIELD), columns.get(NAME_FIELD), *(columns.get(rule.name) for rule in rules.fields)]


# --- Reading files --------------------------------------------------------------------------


# Chinese characters read as valid UTF-8 before the first invalid byte that make a file UTF-8.
_UTF8_EVIDENCE_CHARS = 8


def decode_text(content: bytes) -> tuple[str, str]:
    """(text, encoding): strict UTF-8 (with or without BOM) first, else GB18030 (which reads
    GBK and GB2312). Raises ValidationError naming the first line that is neither."""
    try:
        return content.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as error:
        utf8_error = error
    # GB18030 decodes most UTF-8 byte runs without complaint (as nonsense), so a UTF-8 file
    # with one damaged byte would import as mojibake. A GBK file breaks UTF-8 at its first few
    # Chinese characters; many valid UTF-8 characters before the break mean a damaged UTF-8 file.
    prefix = content[: utf8_error.start]
    # Bytes beyond one per character: 2 for each Chinese character decoded.
    if len(prefix) - len(prefix.decode("utf-8")) >= 2 * _UTF8_EVIDENCE_CHARS:
        error_at = utf8_error.start
    else:
        try:
            return content.decode("gb18030"), "gb18030"
        except UnicodeDecodeError as error:
            error_at = error.start
    line = content.count(b"\n", 0, error_at) + 1
    raise ValidationError(
        f"文件编码无法识别（第 {line} 行既不是 UTF-8 也不是 GBK）；请另存为 UTF-8 或 GBK 编码的 CSV"
        f" / The file's encoding is not recognised (line {line} is neither UTF-8 nor GBK); "
        "save it as a UTF-8 or GBK CSV",
        code="encoding",
        params={"line": line},
    )


@dataclass
class _Source:
    """Rows of one batch: (line, cells, unknown keys) for each data row, header already mapped."""

    rows_estimate: int
    encoding: str
    rows: Callable[[CategoryRules], tuple[list[int | None], Iterator[tuple[int, Sequence[object] | None, tuple[str, ...]]]]]
    close: Callable[[], None] = field(default=lambda: None)


def _header_and_rows(
    numbered: Iterator[tuple[int, Sequence[object]]], rules: CategoryRules
) -> tuple[list[int | None], Iterator[tuple[int, Sequence[object] | None, tuple[str, ...]]]]:
    id_headers = {_header_key(alias) for alias in _ID_HEADERS}
    first_line, first_cells = 0, None
    for searched, (line, cells) in enumerate(numbered):
        if first_cells is None:
            first_line, first_cells = line, cells
        if any(cell is not None and _header_key(cell) in id_headers for cell in cells):
            columns = _map_header(line, cells, rules)
            return columns, ((line, cells, ()) for line, cells in numbered)
        if searched + 1 >= HEADER_SEARCH_ROWS:
            break
    if first_cells is None:
        raise _file_rejected(1, "文件为空", "the file is empty")
    # No row names the ID column: report the first row's problems as the header's.
    _map_header(first_line, first_cells, rules)
    raise AssertionError("unreachable: a header without the ID column is rejected")


def _csv_source(content: bytes) -> _Source:
    try:
        text, encoding = decode_text(content)
    except ValidationError as error:
        message = error.messages[0]
        zh, _sep, en = message.partition(" / ")
        raise _file_rejected(error.params["line"] if error.params else 0, zh, en) from None
    nul = text.find("\x00")
    if nul >= 0:
        # PostgreSQL text cannot hold NUL; it is also what a UTF-16 file without BOM decodes to.
        line = text.count("\n", 0, nul) + 1
        raise _file_rejected(
            line,
            "文件含有 NUL（\\0）字符，可能是 UTF-16 编码；请另存为 UTF-8 或 GBK 编码的 CSV",
            "the file contains NUL (\\0) characters, perhaps it is UTF-16; save it as a UTF-8 or GBK CSV",
        )
    newlines = text.count("\n")
    lines = newlines + (0 if text.endswith("\n") or not text else 1)
    first_line = text[: text.find("\n")] if newlines else text
    # Department exports are comma-separated; a few systems write tab-separated "CSV".
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","

    def rows(rules: CategoryRules):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)

        def numbered() -> Iterator[tuple[int, Sequence[object]]]:
            # Line = the record's row in a spreadsheet (header = 1); it is the text line
            # unless a quoted cell spans lines. Rows with every cell empty are skipped.
            line = 0
            try:
                for cells in reader:
                    line += 1
                    if any(cells):
                        yield line, cells
            except csv.Error as error:
                raise _file_rejected(line + 1, f"CSV 格式错误：{error}", f"malformed CSV: {error}") from None

        return _header_and_rows(numbered(), rules)

    return _Source(rows_estimate=max(lines - 1, 0), encoding=encoding, rows=rows)


# An XLSX file is a zip of XML parts. A zip bomb (a few KB inflating to GBs, or to millions of
# tiny shared strings, which openpyxl loads into memory whole even in read-only mode: 1,000,000
# of them took 17 s from a 46 KB file) is refused from the zip's directory, before anything is
# inflated. The sizes declared there bound what is read: zipfile stops a part at its declared
# size and fails its CRC check if there was more. A 500,000-row county file is ~150 MB of sheet
# XML and ~50 MB of shared strings; spreadsheet XML deflates 5-30 times.
MAX_XLSX_INFLATED_BYTES = 1024 * 1024 * 1024
MAX_XLSX_SHARED_STRINGS_BYTES = 256 * 1024 * 1024
MAX_XLSX_RATIO = 100
_XLSX_RATIO_FROM_BYTES = 1024 * 1024  # small parts (styles, themes) may deflate better


def _xlsx_inflation_check(content: bytes) -> None:
    try:
        parts = zipfile.ZipFile(io.BytesIO(content)).infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise _file_rejected(0, f"不是有效的 XLSX 文件：{error}", f"not a valid XLSX file: {error}") from None
    too_big = sum(part.file_size for part in parts) > MAX_XLSX_INFLATED_BYTES or any(
        (part.filename.endswith("sharedStrings.xml") and part.file_size > MAX_XLSX_SHARED_STRINGS_BYTES)
        or (part.file_size > _XLSX_RATIO_FROM_BYTES and part.file_size > MAX_XLSX_RATIO * max(part.compress_size, 1))
        for part in parts
    )
    if too_big:
        raise _file_rejected(
            0,
            "XLSX 文件解压后过大或压缩比异常（疑似压缩炸弹），未读取；请另存为 CSV 上传",
            "the XLSX file inflates to too much or is compressed suspiciously well (a zip bomb?); it was not read: "
            "save it as CSV",
        )


def _xlsx_source(content: bytes) -> _Source:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    _xlsx_inflation_check(content)
    try:
        # read_only streams the sheet; data_only=False returns a formula cell as its text
        # ("=1+1"), so nothing is ever evaluated and no cached result is trusted.
        workbook = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=False, keep_links=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, XmlParseError, zlib.error) as error:
        raise _file_rejected(0, f"不是有效的 XLSX 文件：{error}", f"not a valid XLSX file: {error}") from None
    sheet = workbook.worksheets[0]
    estimate = max((sheet.max_row or 1) - 1, 0)

    def rows(rules: CategoryRules):
        def numbered() -> Iterator[tuple[int, Sequence[object]]]:
            line = 0
            try:
                for line, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
                    if any(cell is not None and cell != "" for cell in cells):
                        yield line, [cell.strip() if type(cell) is str else cell for cell in cells]
            except (zipfile.BadZipFile, XmlParseError, zlib.error) as error:  # the sheet's XML is damaged
                raise _file_rejected(line + 1, f"XLSX 文件已损坏：{error}", f"the XLSX file is damaged: {error}") from None

        return _header_and_rows(numbered(), rules)

    return _Source(rows_estimate=estimate, encoding="", rows=rows, close=workbook.close)


def _json_source(content: bytes) -> _Source:
    records = json.loads(content, parse_float=Decimal)

    def rows(rules: CategoryRules):
        names = [ID_FIELD, NAME_FIELD, *(rule.name for rule in rules.fields)]
        known = frozenset(names)

        def numbered():
            # Line = the record's position in "records", counting from 1.
            for line, record in enumerate(records, start=1):
                if not isinstance(record, dict):
                    yield line, None, ()
                    continue
                unknown = tuple(sorted(key for key in record if key not in known))
                yield line, [record.get(name) for name in names], unknown

        return list(range(len(names))), numbered()

    return _Source(rows_estimate=len(records), encoding="", rows=rows)


_XLSX_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _open_source(batch: ImportBatch, content: bytes) -> _Source:
    if batch.source == ImportBatch.Source.API:
        return _json_source(content)
    if content.startswith(_XLSX_MAGIC):
        return _xlsx_source(content)
    if content.startswith(_OLE_MAGIC):
        raise _file_rejected(
            0, "不支持旧版 Excel（.xls）文件；请另存为 .xlsx 或 CSV", "old Excel (.xls) files are not supported; save as .xlsx or CSV"
        )
    return _csv_source(content)


# --- Running a batch ------------------------------------------------------------------------


class _Clock:
    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings if timings is not None else {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = round(self.timings.get(phase, 0.0) + time.perf_counter() - began, 3)


def progress_cache_key(batch_id: int) -> str:
    # The cache's key function (django_tenants.cache.make_key) prefixes the schema.
    return f"import-progress:{batch_id}"


def _report_progress(batch_id: int, rows_done: int, rows_total: int) -> None:
    try:
        cache.set(progress_cache_key(batch_id), {"rows_done": rows_done, "rows_total": rows_total}, PROGRESS_CACHE_SECONDS)
    except Exception:  # progress is advisory: a Redis hiccup must not fail the import
        logger.warning("import batch %s: could not record progress", batch_id, exc_info=True)


def _read_stored(batch: ImportBatch) -> bytes:
    # A missing file is the platform's fault, not the department's: the batch FAILS (and can be
    # retried by submitting the file again) rather than being rejected.
    with default_storage.open(batch.stored_path, "rb") as stored:
        return stored.read()


def batch_run(*, batch_id: int, timings: dict[str, float] | None = None) -> ImportBatch:
    """Validate and import one batch. A batch already SUCCEEDED or REJECTED is returned as it
    is; a QUEUED, RUNNING (a worker died) or FAILED one is run (again). ``timings``, if given,
    receives seconds per phase."""
    clock = _Clock(timings)
    batch = ImportBatch.objects.select_related("category").get(pk=batch_id)
    if batch.status in FINISHED:
        return batch
    source = None
    try:
        with clock("read"):
            content = _read_stored(batch)
        with clock("decode"):
            source = _open_source(batch, content)
        del content
        ImportBatch.objects.filter(pk=batch_id).exclude(status__in=FINISHED).update(
            status=ImportBatch.Status.RUNNING, encoding=source.encoding, rows_total=source.rows_estimate, rows_done=0
        )
        _report_progress(batch_id, 0, source.rows_estimate)
        commit_began = 0.0
        with transaction.atomic(durable=True):
            # Held to the end: a second worker given the same batch waits here, then finds it finished.
            batch = ImportBatch.objects.select_for_update().select_related("category").get(pk=batch_id)
            if batch.status in FINISHED:
                return batch
            try:
                with transaction.atomic():
                    rows_total, imported = _validate_and_write(batch, source, clock)
            except _Rejected as rejected:
                _finish(batch, ImportBatch.Status.REJECTED, rejected.rows_total, 0, rejected.errors, rejected.error_count)
            else:
                _finish(batch, ImportBatch.Status.SUCCEEDED, rows_total, imported, [], 0)
            commit_began = time.perf_counter()
        # Committing checks the foreign keys and flushes the index updates of every row written.
        clock.timings["commit"] = round(time.perf_counter() - commit_began, 3)
    except _Rejected as rejected:  # the file could not be read, decoded or parsed at all
        ImportBatch.objects.filter(pk=batch_id).exclude(status__in=FINISHED).update(
            status=ImportBatch.Status.REJECTED, errors=rejected.errors, error_count=rejected.error_count,
            rows_total=0, rows_done=0, rows_imported=0, finished_at=timezone.now(),
        )
    except Exception as error:
        logger.exception("import batch %s failed", batch_id)
        ImportBatch.objects.filter(pk=batch_id).exclude(status__in=FINISHED).update(
            status=ImportBatch.Status.FAILED, finished_at=timezone.now(), error_count=1,
            errors=[row_error(0, "", f"导入程序出错：{type(error).__name__}", f"the import failed: {type(error).__name__}: {error}"[:300])],
        )
        raise
    finally:
        if source is not None:
            source.close()
        try:
            cache.delete(progress_cache_key(batch_id))
        except Exception:  # as in _report_progress: the entry expires on its own
            logger.warning("import batch %s: could not clear progress", batch_id, exc_info=True)
    batch.refresh_from_db()
    return batch


def _finish(batch: ImportBatch, status: str, rows_total: int, imported: int, errors: list[RowError], error_count: int) -> None:
    batch.status = status
    batch.rows_total = rows_total
    batch.rows_done = rows_total
    batch.rows_imported = imported
    batch.errors = errors
    batch.error_count = error_count
    batch.finished_at = timezone.now()
    batch.save(update_fields=["status", "rows_total", "rows_done", "rows_imported", "errors", "error_count", "finished_at"])


# Staging column type per field type: integers and booleans keep their JSON type when the data
# object is built in SQL; every other normalised value is a JSON string.
_STAGING_TYPES = {"integer": "bigint", "boolean": "boolean"}
# jsonb_build_object takes at most 100 arguments: 50 fields per call, joined with ||.
_JSON_PAIRS_PER_CALL = 50
# Rows handed to the writer thread at a time: about 5 MB of COPY text for a land contract
# file, with at most two chunks waiting, so memory stays flat whatever the file's size.
WRITE_CHUNK_ROWS = 50_000
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: object) -> str:
    """One value in COPY text format."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if type(value) is int:
        return str(value)
    return str(value).translate(_COPY_ESCAPES)


class _ChunkWriter:
    """Writes validated rows while the next ones are being validated.

    The import is CPU-bound on both sides: Python validating rows, and PostgreSQL joining them to
    the roster, inserting them into six indexes and checking three foreign keys per row. Done one
    after the other they add up; here a thread owns the database connection for the length of the
    import and does PostgreSQL's part chunk by chunk (psycopg releases the GIL while the server
    works), so the two run on separate cores. The calling thread does not touch the database
    until :meth:`finish` has joined the thread.

    Each chunk is COPYed into a small table, inserted into the records joined to the roster (while
    every row so far has matched and nothing is wrong), then moved to the staging table that the
    duplicate check and the error report read. Rows already written are undone by the caller's
    savepoint if the file turns out to be rejected.
    """

    def __init__(self, cursor, *, staging: str, chunk: str, insert_sql: str, insert_params: list[object]) -> None:
        self._cursor = cursor
        self._staging = staging
        self._chunk = chunk
        self._insert_sql = insert_sql
        self._insert_params = insert_params
        self._lines: list[str] = []
        self._queue: queue.Queue[tuple[str, int] | None] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="import-writer", daemon=True)
        self._error: BaseException | None = None
        self.writing = True
        self.all_matched = True
        self.inserted = 0
        # Seconds the thread spent writing, and the caller spent waiting for it (the slower
        # side of the two shows in the other's waiting).
        self.busy_seconds = 0.0
        self.waited_seconds = 0.0
        self._thread.start()

    def add(self, row: tuple) -> None:
        self._lines.append("\t".join(map(_copy_value, row)))
        if len(self._lines) >= WRITE_CHUNK_ROWS:
            self._flush()

    def stop_writing(self) -> None:
        """Something is wrong with the file: keep staging rows for the report, insert no more."""
        self.writing = False

    def _flush(self) -> None:
        if self._lines:
            text = "\n".join(self._lines) + "\n"
            began = time.perf_counter()
            self._queue.put((text, len(self._lines)))
            self.waited_seconds += time.perf_counter() - began
            self._lines = []

    def finish(self, *, flush: bool = True) -> None:
        """Write what is left, wait for the thread and raise what it raised."""
        try:
            if flush:
                self._flush()
        finally:
            began = time.perf_counter()
            self._queue.put(None)
            self._thread.join()
            self.waited_seconds += time.perf_counter() - began
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain: the caller finds out in finish()
            began = time.perf_counter()
            try:
                self._write(*item)
            except BaseException as error:  # re-raised in the calling thread
                self._error = error
            self.busy_seconds += time.perf_counter() - began

    def _write(self, text: str, rows: int) -> None:
        cursor = self._cursor
        with cursor.copy(f"COPY {self._chunk} FROM STDIN") as copy:
            copy.write(text)
        if self.writing:
            cursor.execute(self._insert_sql, self._insert_params)
            matched, inserted = cursor.fetchone()
            if matched == rows:
                self.inserted += inserted
            else:  # someone not on the roster, or another name: the report will say who
                self.writing = self.all_matched = False
        cursor.execute(f"WITH moved AS (DELETE FROM {self._chunk} RETURNING *) INSERT INTO {self._staging} SELECT * FROM moved")


def _insert_sql(table: str, rules: CategoryRules, field_columns: list[str], batch: ImportBatch) -> tuple[str, list[object]]:
    """INSERT … SELECT of one chunk joined to the roster; returns (rows matched, rows inserted).

    A row matches when its ID's blind index is on the roster and its name (if the file has
    one) is the roster's. Matched rows count whether or not they were inserted: a version already
    there for this as-of date is left alone (ON CONFLICT DO NOTHING), never duplicated."""
    pairs = [(rule.name, column) for rule, column in zip(rules.fields, field_columns, strict=True)]
    groups = [pairs[start : start + _JSON_PAIRS_PER_CALL] for start in range(0, len(pairs), _JSON_PAIRS_PER_CALL)] or [[]]
    data_sql = " || ".join(
        "jsonb_build_object(" + ", ".join(f"%s::text, c.{column}" for _name, column in group) + ")" for group in groups
    )
    names = [name for group in groups for name, _column in group]
    sql = f"""
        WITH joined AS MATERIALIZED (
            SELECT f.id AS farmer_id, c.record_key, {data_sql} AS data
              FROM {table} c JOIN counties_farmer f ON f.id_number_hash = c.id_hash
             WHERE c.name IS NULL OR c.name = f.name
        ), inserted AS (
            INSERT INTO {GovernmentRecord._meta.db_table} (category_id, farmer_id, record_key, as_of_date, data, batch_id)
            SELECT %s, farmer_id, record_key, %s, data, %s FROM joined
            ON CONFLICT (farmer_id, category_id, record_key, as_of_date) DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM joined), (SELECT count(*) FROM inserted)
    """
    return sql, [*names, batch.category_id, batch.as_of_date, batch.pk]


def _validate_and_write(batch: ImportBatch, source: _Source, clock: _Clock) -> tuple[int, int]:
    """(rows, rows imported). Raises _Rejected with the report; the caller's savepoint then
    rolls back the records written, the staging tables and everything else."""
    rules = CategoryRules.of(batch.category)
    staging, chunk = f"import_staging_{batch.pk}", f"import_chunk_{batch.pk}"
    field_columns = [f"f{index}" for index in range(len(rules.fields))]
    columns_sql = "".join(
        f", {column} {_STAGING_TYPES.get(spec['type'], 'text')}"
        for column, spec in zip(field_columns, batch.category.field_schema["fields"], strict=True)
    )
    insert_sql, insert_params = _insert_sql(chunk, rules, field_columns, batch)
    with connection.cursor() as cursor:
        # Enough memory to group and join a county's rows without spilling to disk.
        cursor.execute("SET LOCAL work_mem = '256MB'")
        # A chunk of 50,000 rows is best joined through the roster's ID index; a hash join would
        # read the whole roster (a million farmers: 600 MB) once per chunk.
        cursor.execute("SET LOCAL enable_hashjoin = off")
        cursor.execute("SET LOCAL enable_mergejoin = off")
        # Foreign keys are checked as each chunk is inserted, on the writer's core, instead of
        # all at once at commit while nothing else can happen.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        for table in (staging, chunk):
            cursor.execute(
                f"CREATE TEMP TABLE {table} (line integer NOT NULL, id_hash text NOT NULL, name text,"
                f" record_key text{columns_sql}) ON COMMIT DROP"
            )
        with clock("validate_and_write"):
            writer = _ChunkWriter(cursor.cursor, staging=staging, chunk=chunk, insert_sql=insert_sql, insert_params=insert_params)
            completed = False
            try:
                checked = _validate_rows(batch, source, rules, writer)
                completed = True
            finally:
                writer.finish(flush=completed)
                clock.timings["database_busy"] = round(writer.busy_seconds, 3)
                clock.timings["waiting_for_database"] = round(writer.waited_seconds, 3)
        if not checked.error_count and not checked.rows:
            raise _Rejected([row_error(1, "", "文件只有表头，没有数据行", "the file has a header but no data rows")], 1, 0)
        with clock("check"):
            duplicates = _duplicate_keys(cursor, staging, rules)
            if checked.error_count or duplicates[1] or not writer.all_matched:
                sql_errors = [duplicates, _unmatched_rows(cursor, staging)]
                error_count = checked.error_count + sum(count for _errors, count in sql_errors)
                merged = sorted(
                    [*checked.errors, *(error for errors, _count in sql_errors for error in errors)],
                    key=lambda error: (error["line"], rules.rank(error["field"])),
                )
                raise _Rejected(merged[:MAX_STORED_ERRORS], error_count, checked.rows)
        # Callers already inside a transaction (tests) would otherwise keep the tables until
        # their outer commit; ON COMMIT DROP only fires there.
        cursor.execute(f"DROP TABLE {staging}, {chunk}")
    return checked.rows, writer.inserted


@dataclass
class _Checked:
    rows: int = 0
    staged: int = 0
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)

    def add(self, error: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_STORED_ERRORS:
            self.errors.append(error)


def _validate_rows(batch: ImportBatch, source: _Source, rules: CategoryRules, writer: _ChunkWriter) -> _Checked:
    """Check every row in Python; stage (line, id hash, name, record key, normalised values…)
    for each row whose ID number is valid, for the set-based checks and the write. This loop
    runs once per row of a county file, so it is written for speed: locals, no per-row calls
    that can be hoisted, values staged as typed columns rather than serialised here."""
    columns, rows = source.rows(rules)
    id_column, name_column, *field_columns = columns
    plan = [(rule.name, rule.required, rule.convert, column) for rule, column in zip(rules.fields, field_columns, strict=True)]
    key_positions = [index for index, rule in enumerate(rules.fields) if rule.name in rules.key]
    key_field = rules.key_field
    max_key_length = GovernmentRecord._meta.get_field("record_key").max_length
    checked = _Checked()

    def add(error: RowError) -> None:
        if not checked.error_count:
            writer.stop_writing()
        checked.add(error)

    stage = writer.add
    id_hash_of = pii.blind_index
    today = timezone.localdate()
    estimate = source.rows_estimate
    next_progress = PROGRESS_EVERY_ROWS
    count = staged = 0
    for line, cells, unknown in rows:
        count += 1
        if count >= next_progress:
            _report_progress(batch.pk, count, max(estimate, count))
            next_progress += PROGRESS_EVERY_ROWS
        if cells is None:
            add(row_error(line, "", "记录必须是 JSON 对象", "a record must be a JSON object"))
            continue
        for name in unknown:
            add(row_error(line, name, "未知字段", "unknown field"))
        width = len(cells)

        id_hash = None
        raw = cells[id_column] if id_column < width else None
        if type(raw) is str:
            raw = raw.strip()
        if raw is None or raw == "":
            add(row_error(line, ID_FIELD, "必填项为空", "required value is missing"))
        elif type(raw) is not str:
            add(row_error(line, ID_FIELD, *(_ID_AS_NUMBER if isinstance(raw, int | float | Decimal) else _ID_REASONS["format"])))
        else:
            try:
                id_hash = id_hash_of(validate_id_number(raw, today=today))
            except ValidationError as error:
                reasons = _ID_AS_NUMBER if _SCIENTIFIC_RE.fullmatch(raw) else _ID_REASONS.get(error.code or "format", _ID_REASONS["format"])
                add(row_error(line, ID_FIELD, *reasons))

        name = None
        if name_column is not None and name_column < width:
            raw = cells[name_column]
            if raw is not None:
                # "张 三" / "张　三": some exports pad two-character names to line them up.
                name = "".join(str(raw).split()) or None

        values: list[object] = []
        append = values.append
        for field_name, required, convert, column in plan:
            raw = cells[column] if column is not None and column < width else None
            if type(raw) is str:
                raw = raw.strip()
                if not raw:
                    raw = None
            if raw is None:
                if required:
                    add(row_error(line, field_name, "必填项为空", "required value is missing"))
                append(None)
                continue
            try:
                append(convert(raw))
            except _Invalid as invalid:
                add(row_error(line, field_name, invalid.reason_zh, invalid.reason_en))
                append(None)

        if id_hash is None:
            continue
        record_key = None
        key_values = [values[index] for index in key_positions]
        if None not in key_values:
            record_key = "|".join(
                ("true" if value else "false") if isinstance(value, bool) else str(value) for value in key_values
            )
            if len(record_key) > max_key_length:
                add(row_error(line, key_field, "记录键过长", "the record key is too long"))
                record_key = None
        # Rows with errors are still staged so the report also says whether the person is on
        # the roster and whether the key repeats; nothing is written once there is an error.
        staged += 1
        stage((line, id_hash, name, record_key, *values))
    checked.rows = count
    checked.staged = staged
    return checked


def _unmatched_rows(cursor, staging: str) -> tuple[list[RowError], int]:
    """Rows whose person is not on the roster, or whose name differs from the roster's."""
    cursor.execute(
        f"""
        SELECT s.line, f.id IS NULL, count(*) OVER ()
          FROM {staging} s LEFT JOIN counties_farmer f ON f.id_number_hash = s.id_hash
         WHERE f.id IS NULL OR s.name <> f.name
         ORDER BY s.line LIMIT %s
        """,
        [MAX_STORED_ERRORS],
    )
    found = cursor.fetchall()
    errors = [
        row_error(line, ID_FIELD, "本县农民名册中没有这个身份证号", "no farmer with this ID number in the county's roster")
        if unknown
        else row_error(line, NAME_FIELD, "姓名与名册中该身份证号的姓名不一致", "the name differs from the roster's name for this ID number")
        for line, unknown, _total in found
    ]
    return errors, found[0][2] if found else 0


def _duplicate_keys(cursor, staging: str, rules: CategoryRules) -> tuple[list[RowError], int]:
    """Second and later rows of the same person with the same record key."""
    # Grouping (a hash aggregate) finds the few repeated keys without sorting every row.
    cursor.execute(
        f"""
        WITH repeated AS (
            SELECT min(line) AS first_line, array_agg(line) AS lines, record_key
              FROM {staging} WHERE record_key IS NOT NULL
             GROUP BY id_hash, record_key HAVING count(*) > 1
        )
        SELECT line, first_line, record_key, count(*) OVER ()
          FROM repeated, unnest(lines) AS line
         WHERE line <> first_line
         ORDER BY line LIMIT %s
        """,
        [MAX_STORED_ERRORS],
    )
    found = cursor.fetchall()
    errors = [
        row_error(
            line, rules.key_field, f"与第 {first} 行重复（同一人、同一记录键 {_show(key)}）",
            f"duplicates line {first} (same person and record key {_show(key)})",
        )
        for line, first, key, _total in found
    ]
    return errors, found[0][3] if found else 0


# --- Submitting ----------------------------------------------------------------------------


def _category(code: str) -> DataCategory:
    category = DataCategory.objects.filter(code=code, is_active=True).first()
    if category is None:
        raise ValidationError(f"未知的数据类别：{code} / Unknown data category: {code}", code="category")
    return category


def _store(name: str, content: bytes) -> str:
    # Same content, same name: a repeated upload finds the file already there.
    if default_storage.exists(name):
        return name
    return default_storage.save(name, ContentFile(content))


def _batch_get_or_create(*, category: DataCategory, sha256: str, as_of_date: dt.date, defaults: dict) -> tuple[ImportBatch, bool]:
    existing = ImportBatch.objects.filter(category=category, content_sha256=sha256, as_of_date=as_of_date).first()
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            return ImportBatch.objects.create(category=category, content_sha256=sha256, as_of_date=as_of_date, **defaults), True
    except IntegrityError:  # the same content submitted at the same moment by someone else
        return ImportBatch.objects.get(category=category, content_sha256=sha256, as_of_date=as_of_date), False


def batch_submit_file(
    *,
    category_code: str,
    file_name: str,
    content: bytes,
    as_of_date: dt.date,
    submitted_by: str,
    schedule: bool = True,
) -> tuple[ImportBatch, bool]:
    """Store an uploaded department file and queue its import: ``(batch, created)``.

    The same content for the same category and as-of date returns the existing batch
    (``created`` False) and queues nothing, unless that batch FAILED: then it is queued again.
    With ``schedule`` the Celery task is sent once the
    batch row is committed; the management command runs :func:`batch_run` itself instead.
    """
    category = _category(category_code)
    if len(content) > MAX_UPLOAD_BYTES:
        raise ValidationError(
            f"文件超过 {MAX_UPLOAD_BYTES // (1024 * 1024)} MB 的上限 / The file is larger than the {MAX_UPLOAD_BYTES // (1024 * 1024)} MB limit",
            code="too_large",
        )
    if not content:
        raise ValidationError("文件为空 / The file is empty", code="empty")
    sha256 = hashlib.sha256(content).hexdigest()
    stored_path = _store(f"imports/{connection.schema_name}/{sha256}", content)
    batch, created = _batch_get_or_create(
        category=category, sha256=sha256, as_of_date=as_of_date,
        defaults={"source": ImportBatch.Source.UPLOAD, "file_name": file_name[:255], "stored_path": stored_path, "submitted_by": submitted_by},
    )
    if not created and batch.status == ImportBatch.Status.FAILED:
        # Submitting the file again is how an official retries an import that failed.
        ImportBatch.objects.filter(pk=batch.pk, status=ImportBatch.Status.FAILED).update(
            status=ImportBatch.Status.QUEUED, errors=[], error_count=0, finished_at=None
        )
        batch.refresh_from_db()
        retry = True
    else:
        retry = False
    if (created or retry) and schedule:
        batch_id = batch.pk
        transaction.on_commit(lambda: _queue_import(batch_id))
    return batch, created


def _queue_import(batch_id: int) -> None:
    """Send the import task. With the task queue (Redis) unreachable the batch FAILS, saying
    so, instead of waiting as QUEUED for a message that was never sent; the file is kept, and
    submitting it again queues it (see above)."""
    from data_sharing.tasks import import_batch  # the task module imports this one

    try:
        import_batch.delay(batch_id)
    except Exception as error:
        logger.error("import batch %s could not be queued: %s", batch_id, error)
        ImportBatch.objects.filter(pk=batch_id, status=ImportBatch.Status.QUEUED).update(
            status=ImportBatch.Status.FAILED, finished_at=timezone.now(), error_count=1,
            errors=[row_error(0, "", "任务队列暂时不可用，导入没有开始；文件已保存，请稍后重新提交同一文件",
                              "the task queue is unavailable, so the import did not start; the file is kept: "
                              "submit the same file again later")],
        )


def _canonical_json(records: list[Any]) -> bytes:
    def default(value: object) -> object:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    return json.dumps(records, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=default).encode()


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


def records_push(
    *, category_code: str, records: list[dict], as_of_date: dt.date, submitted_by: str
) -> tuple[ImportBatch, bool]:
    """A department's JSON push, validated and written synchronously like a file:
    ``(batch, created)``. Each record is ``{"id_number": …, "name": … (optional), <field>: …}``;
    errors name the record's position (from 1) as their line. The canonical JSON (sorted keys,
    decimals as strings) is stored as the batch's content and hashed, so a repeated push returns
    the first batch."""
    category = _category(category_code)
    if not records:
        raise ValidationError("没有记录 / No records", code="empty")
    if len(records) > MAX_PUSH_RECORDS:
        raise ValidationError(
            f"一次最多推送 {MAX_PUSH_RECORDS} 条记录，更多请上传文件 / At most {MAX_PUSH_RECORDS} records per push; upload a file for more",
            code="too_many",
        )
    content = _canonical_json(records)
    if b"\\u0000" in content:  # a cheap screen; PostgreSQL text and jsonb cannot hold NUL
        position = next((index for index, record in enumerate(records, start=1) if _has_nul(record)), None)
        if position is not None:
            raise ValidationError(
                f"第 {position} 条记录含有 NUL（\\0）字符 / Record {position} contains a NUL (\\0) character",
                code="nul",
                params={"line": position},
            )
    sha256 = hashlib.sha256(content).hexdigest()
    stored_path = _store(f"imports/{connection.schema_name}/{sha256}.json", content)
    batch, created = _batch_get_or_create(
        category=category, sha256=sha256, as_of_date=as_of_date,
        defaults={"source": ImportBatch.Source.API, "stored_path": stored_path, "submitted_by": submitted_by},
    )
    if created or batch.status not in FINISHED:
        batch = batch_run(batch_id=batch.pk)
    return batch, created


# --- The error report ----------------------------------------------------------------------

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    # Spreadsheets evaluate a cell starting with these characters as a formula; a leading
    # quote makes it text (OWASP "CSV injection").
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def error_report_csv(batch: ImportBatch) -> str:
    """The batch's errors as CSV for Excel/WPS: UTF-8 with BOM, both languages."""
    labels = field_labels(batch.category)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(["行号 Line", "字段 Field", "字段名称", "Field name", "原因", "Reason"])
    for error in batch.errors:
        label_zh, label_en = labels.get(error["field"], (error["field"], error["field"]))
        writer.writerow(
            _safe_cell(value)
            for value in (error["line"], error["field"], label_zh, label_en, error["reason_zh"], error["reason_en"])
        )
    if batch.error_count > len(batch.errors):
        writer.writerow(
            ["", "", "", "", f"仅列出前 {len(batch.errors)} 个错误，共 {batch.error_count} 个",
             f"only the first {len(batch.errors)} of {batch.error_count} errors are listed"]
        )
    return out.getvalue()

