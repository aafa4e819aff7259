"""Argument handling shared by the management commands that work on one county."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError

from platform.models import County


def county_or_error(code: str) -> County:
    county = County.objects.filter(code=(code or "").strip()).first()
    if county is None:
        raise CommandError(f"没有代码为 {code} 的县 / no county with code {code}")
    return county


def date_or_error(value: str | dt.date | None, *, default: dt.date | None = None) -> dt.date | None:
    """A YYYY-MM-DD option (call_command may pass a date already); ``default`` when empty."""
    if not value:
        return default
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD: {value}") from None
