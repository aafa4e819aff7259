"""Import one department file for one county from the shell, synchronously:

    python manage.py import_records --county 410225 --category land_contract --file 土地承包.csv --as-of 2026-11-01
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import schema_context

from data_sharing.imports import batch_run, batch_submit_file
from platform.commands import county_or_error

# The shell is for operators checking a file; the full report is the portal's CSV download.
ERRORS_SHOWN = 50


def _as_of(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--as-of 应为 YYYY-MM-DD / --as-of must be YYYY-MM-DD: {value}") from None


class Command(BaseCommand):
    help = "Import a department file (CSV in UTF-8/GBK, or XLSX) into one county, synchronously."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--county", required=True, help="6-digit county code, e.g. 410225")
        parser.add_argument("--category", required=True, help="data category code, e.g. land_contract")
        parser.add_argument("--file", required=True, type=Path)
        parser.add_argument("--as-of", required=True, type=_as_of, help="the extract's as-of date, YYYY-MM-DD")
        parser.add_argument("--submitted-by", default="manage.py import_records")

    def handle(self, *args, county: str, category: str, file: Path, as_of: dt.date, submitted_by: str, **options) -> None:
        # call_command(..., file="x.csv", as_of="2026-11-01") skips argparse's conversions.
        file, as_of = Path(file), _as_of(as_of) if isinstance(as_of, str) else as_of
        found = county_or_error(county)
        try:
            content = file.read_bytes()
        except OSError as error:
            raise CommandError(f"无法读取文件 / Cannot read the file: {error}") from None
        with schema_context(found.schema_name):
            try:
                batch, created = batch_submit_file(
                    category_code=category, file_name=file.name, content=content, as_of_date=as_of,
                    submitted_by=submitted_by, schedule=False,
                )
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None
            if not created:
                self.stdout.write(f"同一文件已提交过（批次 {batch.pk}）/ This file was already submitted (batch {batch.pk})")
            batch = batch_run(batch_id=batch.pk)

        self.stdout.write(
            f"批次 / batch {batch.pk}: {batch.status}; 编码 / encoding {batch.encoding or '-'}; "
            f"行数 / rows {batch.rows_total}; 导入 / imported {batch.rows_imported}; 错误 / errors {batch.error_count}"
        )
        if batch.status == batch.Status.SUCCEEDED:
            return
        for error in batch.errors[:ERRORS_SHOWN]:
            self.stderr.write(f"第 {error['line']} 行 / line {error['line']} [{error['field']}]: {error['reason_zh']} / {error['reason_en']}")
        if batch.error_count > ERRORS_SHOWN:
            self.stderr.write(f"…… 共 {batch.error_count} 个错误 / {batch.error_count} errors in all")
        raise CommandError(
            f"导入被拒绝，未写入任何记录（{batch.error_count} 个错误）"
            f" / Import {batch.status}, nothing was written ({batch.error_count} errors)"
        )
