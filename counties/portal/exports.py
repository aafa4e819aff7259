"""Tables leaving the portal as files: CSV (UTF-8 with a BOM, which Excel and WPS need) and
XLSX (openpyxl).

A spreadsheet evaluates a text cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some,
a tab or carriage return) as a formula — a farmer's name, a township's, an accessor's could be
made to start with one (OWASP "CSV injection"). Every text cell that does gets a leading single
quote, in both formats, so it is shown as typed and never evaluated. Numbers and dates are
written as numbers and dates (a negative amount is not text and not escaped).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

from django.http import HttpResponse, StreamingHttpResponse

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def safe_text(value: object) -> str:
    """``value`` as text, with a leading quote if a spreadsheet would take it for a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def safe_cell(value: object) -> object:
    """A cell for openpyxl: numbers and dates as they are, everything else as escaped text
    (openpyxl itself stores a string starting with ``=`` as a formula)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | Decimal | dt.date | dt.datetime):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.replace(tzinfo=None)  # Excel has no time zones: local time as shown
        return value
    return safe_text(value)


def _csv_value(value: object) -> str:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return safe_text(value)


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[object], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """The lines of a CSV file, BOM first, every cell escaped."""
    writer = csv.writer(_Echo())
    yield "\ufeff"
    yield writer.writerow([_csv_value(value) for value in header])
    for row in rows:
        yield writer.writerow([_csv_value(value) for value in row])


def csv_response(filename: str, header: Sequence[object], rows: Iterable[Sequence[object]]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def xlsx_bytes(sheets: Sequence[tuple[str, Sequence[object], Iterable[Sequence[object]]]]) -> bytes:
    """An XLSX workbook with one sheet per ``(title, header, rows)``, every cell escaped. Written
    in openpyxl's write-only mode: rows stream to a temporary file instead of building a cell
    object per value in memory."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    for title, header, rows in sheets:
        sheet = workbook.create_sheet(title=safe_text(title)[:31] or "Sheet")
        sheet.append([safe_cell(value) for value in header])
        for row in rows:
            sheet.append([safe_cell(value) for value in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def xlsx_response(filename: str, sheets: Sequence[tuple[str, Sequence[object], Iterable[Sequence[object]]]]) -> HttpResponse:
    response = HttpResponse(xlsx_bytes(sheets), content_type=XLSX_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
