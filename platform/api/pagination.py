"""Keyset ("seek") pagination for change feeds: rows ordered by (timestamp, id), the cursor is
the position of the last row returned. Unlike offsets it neither skips nor repeats rows when
rows change between pages, and unlike DRF's CursorPagination it always hands back a cursor, so
a bank polling for changes keeps its place after the last page (``has_more`` false) and asks
again later with the same cursor."""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from platform.api.errors import ApiError

MAX_PK = 2**63 - 1


def cursor_encode(moment: dt.datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{moment.isoformat()}|{pk}".encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[dt.datetime, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment_text, _sep, pk_text = text.partition("|")
        moment, pk = dt.datetime.fromisoformat(moment_text), int(pk_text)
        if moment.tzinfo is None or not 0 <= pk <= MAX_PK:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            status_code=400, code="invalid_cursor", message=_("cursor 无效"), message_en="The cursor is not valid."
        ) from None
    return moment, pk


class KeysetPagination(BasePagination):
    field = "updated_at"
    page_size = 100
    max_page_size = 500

    def __init__(self, field: str | None = None) -> None:
        self.field = field or self.field

    def paginate_queryset(self, queryset, request, view=None) -> list:
        self.cursor = request.query_params.get("cursor") or None
        limit = self._page_size(request)
        if self.cursor:
            moment, pk = cursor_decode(self.cursor)
            queryset = queryset.filter(Q(**{f"{self.field}__gt": moment}) | Q(**{self.field: moment, "pk__gt": pk}))
        rows = list(queryset.order_by(self.field, "pk")[: limit + 1])
        self.has_more = len(rows) > limit
        rows = rows[:limit]
        if rows:
            self.cursor = cursor_encode(getattr(rows[-1], self.field), rows[-1].pk)
        return rows

    def _page_size(self, request) -> int:
        raw = request.query_params.get("page_size")
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ApiError(
                status_code=400,
                code="invalid_request",
                message=_("请求参数有误，详见 fields"),
                fields={"page_size": [f"1–{self.max_page_size}"]},
            )
        return int(raw)

    def get_paginated_response(self, data) -> Response:
        return Response({"results": data, "next_cursor": self.cursor, "has_more": self.has_more})
