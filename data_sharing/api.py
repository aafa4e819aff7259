"""REST endpoints for department data pushed as JSON, one category's records per batch.

* Government departments' systems: signed integration clients (kind ``department``, scope
  ``records:push``) on the **public host**, ``/api/v1/counties/<code>/data/…`` — the same HMAC
  authentication, county check, throttling, ``Idempotency-Key`` and error format as the bank
  endpoints (:class:`platform.api.base.CountyAPIView`).
* County officials (data officer or county administrator): the same push on their county's own
  host, ``/api/v1/data/…``, with their portal session — password *and* TOTP code, as every
  portal page asks.

A push is validated and written synchronously, exactly like an uploaded file (see
:func:`data_sharing.imports.records_push`): whole or not at all, with each error naming the
record's position (from 1) as ``line`` and its reason in Chinese and English.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from data_sharing.imports import MAX_PUSH_RECORDS, records_push, user_can_import
from data_sharing.models import DataCategory, ImportBatch
from loans.api import COUNTY_CODE, IDEMPOTENCY_KEY, error_response
from platform.api.base import CountyAPIView
from platform.api.errors import ApiError
from platform.api.pagination import MAX_PK
from platform.api.parsers import DecimalJSONParser
from platform.models import IntegrationClient


class PushSerializer(serializers.Serializer):
    as_of_date = serializers.DateField(help_text="The date the records are true on (versions the records).")
    # Each record is checked by the import itself (and reported by position), not here.
    records = serializers.ListField(
        child=serializers.JSONField(encoder=DjangoJSONEncoder),
        allow_empty=False,
        max_length=MAX_PUSH_RECORDS,
        help_text=(
            f"1–{MAX_PUSH_RECORDS:,} records, each an object: `id_number` (the farmer's 18-digit ID), `name` "
            "(optional, checked against the roster) and the category's fields."
        ),
    )


class RowErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="The record's position in `records`, from 1 (0: the whole batch).")
    field = serializers.CharField(help_text="The field, or empty for the whole record.")
    reason_zh = serializers.CharField()
    reason_en = serializers.CharField()


class BatchSerializer(serializers.ModelSerializer):
    category = serializers.CharField(source="category.code")
    errors = RowErrorSerializer(many=True, read_only=True, help_text="The first 1,000 errors, in record order.")

    class Meta:
        model = ImportBatch
        fields = [
            "id", "category", "source", "file_name", "as_of_date", "status", "encoding", "rows_total", "rows_done",
            "rows_imported", "error_count", "errors", "submitted_by", "created_at", "finished_at",
        ]
        read_only_fields = fields


def _category_exists(code: str) -> bool:
    return DataCategory.objects.filter(code=code, is_active=True).exists()


# --- Officials, on their county's host -------------------------------------------------------------


class IsImportOfficial(BasePermission):
    message = "需要数据专员或县级管理员权限，并已输入验证码 / Requires a data officer or county administrator signed in with their code"

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        # The portal's second factor (django-otp): a password alone does not push data.
        return user_can_import(user) and getattr(user, "is_verified", lambda: False)()


class _OfficialImportView:
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsImportOfficial]


class BatchCreateView(_OfficialImportView, APIView):
    parser_classes = [DecimalJSONParser]

    @extend_schema(exclude=True)  # the public API document covers the departments' endpoint
    def post(self, request: Request, category_code: str) -> Response:
        if not _category_exists(category_code):
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


class BatchDetailView(_OfficialImportView, generics.RetrieveAPIView):
    """A batch's status, counts and (first 1,000) errors."""

    queryset = ImportBatch.objects.select_related("category")
    serializer_class = BatchSerializer

    @extend_schema(exclude=True)
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


# --- Departments' systems, on the public host ------------------------------------------------------

RECORD_EXAMPLE = {
    "id_number": "410225198005171230",
    "name": "张三",
    "contract_no": "HT-0001",
    "parcels": 3,
    "area_mu": 12.50,
    "term_end": "2028-12-31",
}
BATCH_EXAMPLE = {
    "id": 42,
    "category": "land_contract",
    "source": "api",
    "file_name": "",
    "as_of_date": "2026-06-30",
    "status": "succeeded",
    "encoding": "",
    "rows_total": 2,
    "rows_done": 2,
    "rows_imported": 2,
    "error_count": 0,
    "errors": [],
    "submitted_by": "client:phk_3f9a0c1d2e4b5a67",
    "created_at": "2026-07-01T09:30:12.004211+08:00",
    "finished_at": "2026-07-01T09:30:12.318774+08:00",
}
REJECTED_EXAMPLE = {
    **BATCH_EXAMPLE,
    "status": "rejected",
    "rows_imported": 0,
    "error_count": 2,
    "errors": [
        {
            "line": 2,
            "field": "id_number",
            "reason_zh": "本县农民名册中没有这个身份证号",
            "reason_en": "no farmer with this ID number in the county's roster",
        },
        {"line": 2, "field": "parcels", "reason_zh": "不是整数：3.5", "reason_en": "not a whole number: 3.5"},
    ],
}
CATEGORY_CODE = OpenApiParameter(
    "category_code",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The data category's code, e.g. land_contract (土地承包经营权), subsidy, insurance.",
    pattern=r"^[-a-zA-Z0-9_]+$",
)


DEPARTMENT_ERRORS = {
    400: error_response(
        "Invalid envelope (`invalid_request` with `fields`: no as_of_date, no records, more than "
        f"{MAX_PUSH_RECORDS:,}), `idempotency_key_missing`, `malformed_request`. Errors in the records themselves "
        "are not a 400: the batch is created and rejected, naming each record.",
        "invalid_request",
        "请求参数有误，详见 fields",
        "The request is not valid; see fields.",
    ),
    401: error_response(
        "Not signed, or the signature, key, timestamp or nonce is refused.",
        "signature_invalid",
        "签名不正确",
        "The signature does not match",
    ),
    403: error_response(
        "The client may not act for this county (`county_forbidden`), the county is suspended (`county_suspended`), "
        "the client is not a department's (`client_kind_forbidden`) or lacks `records:push` (`scope_missing`).",
        "client_kind_forbidden",
        "该接口仅供政府部门系统调用",
        "This endpoint is for department clients only.",
    ),
    404: error_response(
        "No such county, data category or batch (or not pushed by this client).",
        "category_not_found",
        "未知的数据类别：horoscope",
        "Unknown data category: horoscope",
    ),
    429: error_response(
        "Rate limit of this client exceeded; see Retry-After.",
        "rate_limited",
        "请求过于频繁，请在 Retry-After 秒后重试",
        "Too many requests; retry after the number of seconds in Retry-After.",
    ),
}
DEPARTMENT_POST_ERRORS = {
    **DEPARTMENT_ERRORS,
    409: error_response(
        "The same Idempotency-Key is still being processed.",
        "idempotency_in_progress",
        "相同的请求正在处理中，请稍后再查看结果",
        "The same request is still being processed; retry later to get its result.",
    ),
    422: error_response(
        "The Idempotency-Key was already used for a different request.",
        "idempotency_key_reused",
        "该幂等键已用于另一个请求",
        "This Idempotency-Key was already used for a different request.",
    ),
}


class DepartmentAPIView(CountyAPIView):
    client_kind = IntegrationClient.Kind.DEPARTMENT
    required_scope = IntegrationClient.Scope.RECORDS_PUSH


class DepartmentBatchCreateView(DepartmentAPIView):
    @extend_schema(
        operation_id="data_batch_create",
        tags=["department data"],
        summary="Push one category's records for an as-of date",
        description=(
            "For a government department's system (client kind `department`, scope `records:push`). The records "
            "are validated and written synchronously, whole or not at all, exactly like a file an official uploads.\n\n"
            "* **201** a new batch: `status` `succeeded` (every record imported) or `rejected` (nothing imported; "
            "`errors` name each record by its position in `records`, from 1, as `line`, with the field and the "
            "reason in Chinese and English).\n"
            "* **200** the same records were pushed before for this date (under another Idempotency-Key): the "
            "earlier batch, nothing imported twice.\n\n"
            "A repeat with the same Idempotency-Key gets the first answer again. `Location` is the batch's URL."
        ),
        parameters=[COUNTY_CODE, CATEGORY_CODE, IDEMPOTENCY_KEY],
        request=PushSerializer,
        examples=[
            OpenApiExample(
                "push",
                value={"as_of_date": "2026-06-30", "records": [RECORD_EXAMPLE, {**RECORD_EXAMPLE, "contract_no": "HT-0002"}]},
                request_only=True,
            )
        ],
        responses={
            201: OpenApiResponse(
                BatchSerializer,
                description="A new batch, imported or rejected.",
                examples=[
                    OpenApiExample("succeeded", value=BATCH_EXAMPLE, response_only=True, status_codes=["201"]),
                    OpenApiExample("rejected", value=REJECTED_EXAMPLE, response_only=True, status_codes=["201"]),
                ],
            ),
            200: OpenApiResponse(
                BatchSerializer,
                description="The same records for the same date were pushed before: that batch.",
                examples=[OpenApiExample("repeat", value=BATCH_EXAMPLE, response_only=True, status_codes=["200"])],
            ),
            **DEPARTMENT_POST_ERRORS,
        },
    )
    def post(self, request: Request, county_code: str, category_code: str) -> Response:
        if not _category_exists(category_code):
            raise _category_not_found(category_code)
        push = PushSerializer(data=request.data)
        push.is_valid(raise_exception=True)
        data = push.validated_data
        submitted_by = request.user.get_username()

        def run() -> tuple[int, dict]:
            batch, created = records_push(
                category_code=category_code,
                records=data["records"],
                as_of_date=data["as_of_date"],
                submitted_by=submitted_by,
            )
            return (status.HTTP_201_CREATED if created else status.HTTP_200_OK), BatchSerializer(batch).data

        response = self.idempotent_response(operation="records.push", run=run)
        response["Location"] = reverse(
            "api-data-batch", kwargs={"county_code": county_code, "batch_id": response.data["id"]}
        )
        return response


class DepartmentBatchDetailView(DepartmentAPIView):
    @extend_schema(
        operation_id="data_batch_retrieve",
        tags=["department data"],
        summary="A pushed batch: status, counts and row errors",
        description="Only batches this client pushed. `errors` lists the first 1,000 errors in record order.",
        parameters=[
            COUNTY_CODE,
            OpenApiParameter("batch_id", {"type": "integer", "minimum": 1, "maximum": MAX_PK}, OpenApiParameter.PATH),
        ],
        responses={
            200: OpenApiResponse(
                BatchSerializer,
                examples=[OpenApiExample("rejected", value=REJECTED_EXAMPLE, response_only=True)],
            ),
            **DEPARTMENT_ERRORS,
        },
    )
    def get(self, request: Request, county_code: str, batch_id: int) -> Response:
        batch = (
            ImportBatch.objects.select_related("category")
            .filter(pk=batch_id if 0 < batch_id <= MAX_PK else 0, submitted_by=request.user.get_username())
            .first()
        )
        if batch is None:
            raise ApiError(
                status_code=404, code="batch_not_found", message=_("没有这个导入批次"), message_en="No such batch."
            )
        return Response(BatchSerializer(batch).data)


def _category_not_found(code: str) -> ApiError:
    return ApiError(
        status_code=404,
        code="category_not_found",
        message=_("未知的数据类别：%(code)s") % {"code": code},
        message_en=f"Unknown data category: {code}",
    )
