"""REST endpoints for departments pushing records of one category as JSON, on the county host.

Auth for now: a county official (data officer or county administrator) by session or HTTP Basic;
signed integration clients come later. A push is validated and written synchronously, exactly
like an uploaded file (see data_sharing.imports).
"""

from __future__ import annotations

import codecs
import json
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from data_sharing.imports import MAX_PUSH_RECORDS, records_push, user_can_import
from data_sharing.models import DataCategory, ImportBatch


class DecimalJSONParser(JSONParser):
    """JSON whose fractional numbers become ``Decimal`` exactly as written (12.50, not a float)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.load(codecs.getreader(encoding)(stream), parse_float=Decimal)
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from None


class IsImportOfficial(BasePermission):
    message = "需要数据专员或县级管理员权限 / Requires a data officer or county administrator"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return user_can_import(request.user)


class PushSerializer(serializers.Serializer):
    as_of_date = serializers.DateField()
    # Each record is checked by the import itself (and reported by position), not here.
    records = serializers.ListField(allow_empty=False, max_length=MAX_PUSH_RECORDS)


class BatchSerializer(serializers.ModelSerializer):
    category = serializers.CharField(source="category.code")

    class Meta:
        model = ImportBatch
        fields = [
            "id", "category", "source", "file_name", "as_of_date", "status", "encoding", "rows_total", "rows_done",
            "rows_imported", "error_count", "errors", "submitted_by", "created_at", "finished_at",
        ]
        read_only_fields = fields


class _ImportAPIView:
    # Basic first: an unauthenticated caller gets 401 with a WWW-Authenticate challenge, not 403.
    authentication_classes = [BasicAuthentication, SessionAuthentication]
    permission_classes = [IsImportOfficial]


class BatchCreateView(_ImportAPIView, APIView):
    parser_classes = [DecimalJSONParser]

    @extend_schema(
        request=PushSerializer,
        responses={201: BatchSerializer, 200: BatchSerializer},
        summary="Push one category's records for an as-of date",
        description=(
            "Validated and written whole or not at all. 201: a new batch (status succeeded or rejected, "
            "errors name the record's position from 1 as `line`). 200: the same records were pushed before "
            "for this date; the earlier batch is returned and nothing is imported again."
        ),
    )
    def post(self, request: Request, category_code: str) -> Response:
        if not DataCategory.objects.filter(code=category_code, is_active=True).exists():
            raise NotFound(f"未知的数据类别 / Unknown data category: {category_code}")
        push = PushSerializer(data=request.data)
        push.is_valid(raise_exception=True)
        try:
            batch, created = records_push(
                category_code=category_code,
                records=push.validated_data["records"],
                as_of_date=push.validated_data["as_of_date"],
                submitted_by=request.user.get_username(),
            )
        except ValidationError as error:
            raise serializers.ValidationError({"records": error.messages}) from None
        location = reverse("data-api-batch", kwargs={"pk": batch.pk})
        return Response(
            BatchSerializer(batch).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={"Location": location},
        )


class BatchDetailView(_ImportAPIView, generics.RetrieveAPIView):
    """A batch's status, counts and (first 1,000) errors."""

    queryset = ImportBatch.objects.select_related("category")
    serializer_class = BatchSerializer
