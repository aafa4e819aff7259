"""The bank API (public host, ``/api/v1/counties/<code>/…``): a lending partner's system syncs
credit lines, quotes schedules, confirms disbursements and posts repayments for the counties its
client may act for. Authentication, the county switch, throttling and the error format are
:class:`platform.api.base.CountyAPIView`'s; views here validate input, call one service and
serialise the result. Every POST runs at most once per ``Idempotency-Key``.

A bank sees only what is its own: loans whose lending partner is its partner, and a county's
credit lines only while its partner is the lender of the county's active credit policy.
Farmers are referred to by their internal id; no personal data leaves through this API.
"""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from loans.models import CreditLine, Installment, Loan, Repayment
from loans.policy import policy_active
from loans.schedule import Method, PrepaymentMode, schedule_build
from loans.services import (
    drawdown_quote,
    loan_disbursement_confirm,
    loan_partner_repayment,
    payoff_quote,
)
from platform.api.base import IDEMPOTENCY_HEADER, CountyAPIView
from platform.api.errors import ApiError
from platform.api.pagination import MAX_PK, KeysetPagination
from platform.models import IntegrationClient

Scope = IntegrationClient.Scope
MONEY = {"max_digits": 12, "decimal_places": 2}
PARTNER_REFERENCE = {
    "regex": r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$",
    "max_length": 64,
    "help_text": "The bank's own transaction reference: 1–64 characters A–Z a–z 0–9 . _ : / -",
}


def _loan_not_found() -> ApiError:
    return ApiError(status_code=404, code="loan_not_found", message=_("没有这笔贷款"), message_en="No such loan.")


def _pk(value: int, *, what: str) -> int:
    if not 0 < value <= MAX_PK:
        raise ApiError(status_code=404, code=f"{what}_not_found", message=_("未找到"), message_en="Not found.")
    return value


# --- Serializers ----------------------------------------------------------------------------------


class LineSerializer(serializers.ModelSerializer):
    farmer_id = serializers.IntegerField(read_only=True, help_text="The farmer's internal id in the county.")
    available = serializers.DecimalField(read_only=True, help_text="Amount minus outstanding principal.", **MONEY)

    class Meta:
        model = CreditLine
        fields = [
            "id",
            "farmer_id",
            "amount",
            "available",
            "outstanding_principal",
            "grade",
            "annual_rate",
            "valid_until",
            "status",
            "suspension",
            "business_date",
            "updated_at",
        ]
        read_only_fields = fields


class LinePageSerializer(serializers.Serializer):
    results = LineSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True, help_text="Pass as `cursor` for what changed next.")
    has_more = serializers.BooleanField(help_text="More rows are available right now.")


class PeriodSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    due_date = serializers.DateField()
    principal = serializers.DecimalField(**MONEY)
    interest = serializers.DecimalField(**MONEY)
    payment = serializers.DecimalField(**MONEY)
    remaining = serializers.DecimalField(**MONEY)


class ScheduleSerializer(serializers.Serializer):
    """Documents ``loans.schedule.Schedule.as_dict()`` (what ``manage.py loan_schedule --json``
    prints)."""

    method = serializers.ChoiceField(choices=[m.value for m in Method])
    method_label = inline_serializer("MethodLabel", {"zh": serializers.CharField(), "en": serializers.CharField()})
    principal = serializers.DecimalField(**MONEY)
    annual_rate = serializers.CharField(help_text="Annual rate as a decimal fraction, e.g. 0.0435")
    start = serializers.DateField()
    first_period_days = serializers.IntegerField(allow_null=True)
    total_interest = serializers.DecimalField(**MONEY)
    total_payment = serializers.DecimalField(**MONEY)
    apr = serializers.CharField(help_text="Annualised rate (APR) to 4 places, e.g. 0.0435")
    periods = PeriodSerializer(many=True)


class QuoteRequestSerializer(serializers.Serializer):
    amount = serializers.DecimalField(min_value=Decimal("0.01"), **MONEY)
    term_months = serializers.IntegerField(min_value=1, max_value=360)
    method = serializers.ChoiceField(choices=[m.value for m in Method])
    # Kept exactly as written (0.0435 stays 0.0435, as in loan_schedule's output), not padded.
    annual_rate = serializers.DecimalField(
        max_digits=None,
        decimal_places=None,
        min_value=Decimal("0"),
        max_value=Decimal("0.999999"),
        required=False,
        help_text="Annual rate as a fraction, at most 6 decimal places, 0 ≤ rate < 1. Give this or line_id.",
    )
    line_id = serializers.IntegerField(
        min_value=1,
        max_value=MAX_PK,
        required=False,
        help_text="Quote a drawdown from this line: its rate, its available amount and the county's products apply.",
    )
    start = serializers.DateField(required=False, help_text="Loan start date (default: today, Asia/Shanghai).")

    def validate_annual_rate(self, rate: Decimal) -> Decimal:
        if rate.as_tuple().exponent < -6:
            raise serializers.ValidationError("At most 6 decimal places.")
        return rate

    def validate(self, data):
        if ("annual_rate" in data) == ("line_id" in data):
            raise serializers.ValidationError({"annual_rate": ["Give exactly one of annual_rate and line_id."]})
        return data


class DrawdownSerializer(serializers.ModelSerializer):
    farmer_id = serializers.IntegerField(read_only=True)
    line_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Loan
        fields = [
            "id",
            "farmer_id",
            "line_id",
            "principal",
            "annual_rate",
            "term_months",
            "method",
            "start_date",
            "maturity_date",
            "disbursement",
            "disbursed_at",
            "partner_reference",
            "created_at",
        ]
        read_only_fields = fields


class DrawdownPageSerializer(serializers.Serializer):
    results = DrawdownSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


class DrawdownFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Loan.Disbursement.choices, default=Loan.Disbursement.REQUESTED)


class DisbursementRequestSerializer(serializers.Serializer):
    partner_reference = serializers.RegexField(**PARTNER_REFERENCE)
    disbursed_at = serializers.DateTimeField(help_text="When the money reached the farmer (ISO 8601 with offset).")


class InstallmentSerializer(serializers.ModelSerializer):
    farmer_interest = serializers.DecimalField(
        read_only=True, help_text="Interest the farmer pays (interest less the county's subsidy).", **MONEY
    )
    payment = serializers.DecimalField(read_only=True, help_text="principal + farmer_interest", **MONEY)

    class Meta:
        model = Installment
        fields = [
            "number",
            "due_date",
            "principal",
            "interest",
            "subsidy",
            "farmer_interest",
            "payment",
            "principal_paid",
            "interest_paid",
            "status",
            "paid_on",
        ]
        read_only_fields = fields


class RepaymentSerializer(serializers.ModelSerializer):
    loan_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Repayment
        fields = [
            "id",
            "loan_id",
            "kind",
            "amount",
            "to_penalty",
            "to_interest",
            "to_principal",
            "business_date",
            "channel",
            "partner_reference",
            "prepayment_mode",
            "created_at",
        ]
        read_only_fields = fields


class BalancesSerializer(serializers.Serializer):
    outstanding_principal = serializers.DecimalField(**MONEY)
    interest_due = serializers.DecimalField(help_text="Interest fallen due and unpaid (farmer's part).", **MONEY)
    penalty_due = serializers.DecimalField(**MONEY)
    subsidy_due = serializers.DecimalField(help_text="Interest subsidy the county owes.", **MONEY)


class PayoffSerializer(serializers.Serializer):
    on = serializers.DateField()
    amount = serializers.DecimalField(help_text="What a payoff today costs (post it as kind=payoff).", **MONEY)


class LoanDetailSerializer(serializers.ModelSerializer):
    farmer_id = serializers.IntegerField(read_only=True)
    line_id = serializers.IntegerField(read_only=True)
    balances = serializers.SerializerMethodField()
    payoff = serializers.SerializerMethodField()
    schedule = serializers.SerializerMethodField()
    repayments = serializers.SerializerMethodField()

    class Meta:
        model = Loan
        fields = [
            "id",
            "farmer_id",
            "line_id",
            "principal",
            "annual_rate",
            "penalty_rate",
            "subsidy_share",
            "term_months",
            "method",
            "start_date",
            "maturity_date",
            "status",
            "disbursement",
            "disbursed_at",
            "partner_reference",
            "days_past_due",
            "classification",
            "closed_on",
            "balances",
            "payoff",
            "schedule",
            "repayments",
        ]
        read_only_fields = fields

    def get_balances(self, loan: Loan) -> BalancesSerializer:
        return BalancesSerializer(loan).data

    def get_payoff(self, loan: Loan) -> PayoffSerializer(allow_null=True):
        if loan.status != Loan.Status.ACTIVE:
            return None
        quote = payoff_quote(loan=loan)
        return PayoffSerializer({"on": quote.on, "amount": quote.total}).data

    def get_schedule(self, loan: Loan) -> InstallmentSerializer(many=True):
        installments = loan.installments.exclude(status=Installment.Status.SUPERSEDED).order_by("number")
        return InstallmentSerializer(installments, many=True).data

    def get_repayments(self, loan: Loan) -> RepaymentSerializer(many=True):
        return RepaymentSerializer(loan.repayments.order_by("created_at", "id"), many=True).data


class RepaymentRequestSerializer(serializers.Serializer):
    amount = serializers.DecimalField(min_value=Decimal("0.01"), **MONEY)
    kind = serializers.ChoiceField(choices=Repayment.Kind.choices)
    partner_reference = serializers.RegexField(**PARTNER_REFERENCE)
    prepayment_mode = serializers.ChoiceField(
        choices=[m.value for m in PrepaymentMode],
        required=False,
        help_text="Required for kind=prepayment: shorter_term (same installment) or smaller_installment (same term).",
    )

    def validate(self, data):
        if data["kind"] == Repayment.Kind.PREPAYMENT and not data.get("prepayment_mode"):
            raise serializers.ValidationError({"prepayment_mode": ["Required for a prepayment."]})
        return data


class RepaymentResultSerializer(RepaymentSerializer):
    loan = serializers.SerializerMethodField()

    class Meta(RepaymentSerializer.Meta):
        fields = [*RepaymentSerializer.Meta.fields, "loan"]
        read_only_fields = fields

    def get_loan(self, repayment: Repayment) -> inline_serializer(
        "LoanAfterRepayment",
        {
            "status": serializers.ChoiceField(choices=Loan.Status.choices),
            "outstanding_principal": serializers.DecimalField(**MONEY),
            "interest_due": serializers.DecimalField(**MONEY),
            "penalty_due": serializers.DecimalField(**MONEY),
        },
    ):
        loan = Loan.objects.get(pk=repayment.loan_id)
        return {
            "status": loan.status,
            "outstanding_principal": f"{loan.outstanding_principal:.2f}",
            "interest_due": f"{loan.interest_due:.2f}",
            "penalty_due": f"{loan.penalty_due:.2f}",
        }


# --- OpenAPI helpers ------------------------------------------------------------------------------

ErrorSerializer = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorDetail",
            {
                "code": serializers.CharField(help_text="Stable machine-readable code, e.g. amount_exceeds_available"),
                "message": serializers.CharField(help_text="Chinese"),
                "message_en": serializers.CharField(help_text="English"),
                "fields": serializers.DictField(
                    child=serializers.JSONField(), required=False, help_text="Invalid input: field → problems"
                ),
            },
        )
    },
)


def error_response(description: str, code: str, message: str, message_en: str) -> OpenApiResponse:
    """An error response for the OpenAPI document: the shared error body with one example
    (also used by data_sharing/api.py)."""
    return OpenApiResponse(
        ErrorSerializer,
        description=description,
        examples=[
            OpenApiExample(
                code, value={"error": {"code": code, "message": message, "message_en": message_en}}, response_only=True
            )
        ],
    )


COMMON_ERRORS = {
    400: error_response(
        "Invalid input (`invalid_request` with `fields`, `invalid_cursor`, `idempotency_key_missing`).",
        "invalid_request",
        "请求参数有误，详见 fields",
        "The request is not valid; see fields.",
    ),
    401: error_response(
        "Not signed, or the signature, key, timestamp or nonce is refused "
        "(`not_authenticated`, `signature_invalid`, `key_invalid`, `timestamp_expired`, `nonce_replayed`, …).",
        "signature_invalid",
        "签名不正确",
        "The signature does not match",
    ),
    403: error_response(
        "The client may not act for this county (`county_forbidden`), the county is suspended "
        "(`county_suspended`), or the client's kind or scopes do not allow this (`client_kind_forbidden`, "
        "`scope_missing`, `partner_not_lender`).",
        "county_forbidden",
        "该系统无权代表 兰考县 调用",
        "This client may not act for county 410225.",
    ),
    404: error_response(
        "No such county, line or loan (or not this bank's).",
        "county_not_found",
        "没有行政区划代码为 419999 的县",
        "No county has the code 419999.",
    ),
    429: error_response(
        "Rate limit of this client exceeded; see Retry-After.",
        "rate_limited",
        "请求过于频繁，请在 Retry-After 秒后重试",
        "Too many requests; retry after the number of seconds in Retry-After.",
    ),
}
POST_ERRORS = {
    **COMMON_ERRORS,
    409: error_response(
        "The same Idempotency-Key is still being processed (`idempotency_in_progress`), or the request conflicts "
        "with an earlier one (`disbursement_conflict`, `duplicate_partner_reference`).",
        "idempotency_in_progress",
        "相同的请求正在处理中，请稍后再查看结果",
        "The same request is still being processed; retry later to get its result.",
    ),
    422: error_response(
        "The rules refuse the request (the code says why, e.g. `overpayment`, `nothing_due`, `not_disbursed`, "
        "`amount_exceeds_available`, `idempotency_key_reused`).",
        "overpayment",
        "还款金额超过应还金额 1,234.56 元",
        "The amount exceeds what is owed.",
    ),
}
COUNTY_CODE = OpenApiParameter(
    "county_code",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The county's 6-digit GB/T 2260 code, e.g. 410225 (兰考县).",
    pattern=r"^\d{6}$",
)
IDEMPOTENCY_KEY = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="1–128 printable characters, unique per intended operation (a UUID). A repeat returns the first "
    "result (same status and body); a repeat while the first is running gets 409.",
)
CURSOR_PARAMETERS = [
    OpenApiParameter(
        "cursor", OpenApiTypes.STR, description="`next_cursor` of the previous page; omit to start at the beginning."
    ),
    OpenApiParameter(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": KeysetPagination.max_page_size},
        description=f"Rows per page, 1–{KeysetPagination.max_page_size} (default {KeysetPagination.page_size}).",
    ),
]
LINE_EXAMPLE = {
    "id": 81,
    "farmer_id": 1207,
    "amount": "50000.00",
    "available": "40000.00",
    "outstanding_principal": "10000.00",
    "grade": "B",
    "annual_rate": "0.043500",
    "valid_until": "2027-11-29",
    "status": "active",
    "suspension": "",
    "business_date": "2026-11-28",
    "updated_at": "2026-11-29T02:13:07.120541+08:00",
}
SCHEDULE_EXAMPLE = {
    "method": "equal_installment",
    "method_label": {"zh": "等额本息", "en": "Equal installment"},
    "principal": "10000.00",
    "annual_rate": "0.0435",
    "start": "2026-12-01",
    "first_period_days": None,
    "total_interest": "72.59",
    "total_payment": "10072.59",
    "apr": "0.0435",
    "periods": [
        {
            "number": 1,
            "due_date": "2027-01-01",
            "principal": "3321.28",
            "interest": "36.25",
            "payment": "3357.53",
            "remaining": "6678.72",
        },
        {
            "number": 2,
            "due_date": "2027-02-01",
            "principal": "3333.32",
            "interest": "24.21",
            "payment": "3357.53",
            "remaining": "3345.40",
        },
        {
            "number": 3,
            "due_date": "2027-03-01",
            "principal": "3345.40",
            "interest": "12.13",
            "payment": "3357.53",
            "remaining": "0.00",
        },
    ],
}
DRAWDOWN_EXAMPLE = {
    "id": 5012,
    "farmer_id": 1207,
    "line_id": 81,
    "principal": "10000.00",
    "annual_rate": "0.043500",
    "term_months": 12,
    "method": "equal_installment",
    "start_date": "2026-11-29",
    "maturity_date": "2027-11-29",
    "disbursement": "requested",
    "disbursed_at": None,
    "partner_reference": "",
    "created_at": "2026-11-29T09:30:12.004211+08:00",
}
REPAYMENT_RESULT_EXAMPLE = {
    "id": 733,
    "loan_id": 5012,
    "kind": "scheduled",
    "amount": "853.10",
    "to_penalty": "0.00",
    "to_interest": "36.25",
    "to_principal": "816.85",
    "business_date": "2026-12-29",
    "channel": "partner",
    "partner_reference": "MYB20261229000117",
    "prepayment_mode": "",
    "created_at": "2026-12-29T10:02:41.551200+08:00",
    "loan": {"status": "active", "outstanding_principal": "9183.15", "interest_due": "0.00", "penalty_due": "0.00"},
}


# --- Views ----------------------------------------------------------------------------------------


class LineListView(CountyAPIView):
    required_scope = Scope.LINES_READ

    @extend_schema(
        operation_id="lines_list",
        tags=["credit lines"],
        summary="Credit lines changed since a cursor",
        description=(
            "The county's credit lines ordered by (updated_at, id), from the position after `cursor`. Poll it: "
            "keep the `next_cursor` of the last page and ask again later with it to get what changed since "
            "(new lines, nightly re-assessment, drawdowns and repayments moving `available`, suspension). "
            "Only while this bank is the lender of the county's active credit policy (else 403 "
            "`partner_not_lender`). Farmers appear by internal id only."
        ),
        parameters=[COUNTY_CODE, *CURSOR_PARAMETERS],
        responses={
            200: OpenApiResponse(
                LinePageSerializer,
                examples=[
                    OpenApiExample(
                        "page",
                        value={
                            "results": [LINE_EXAMPLE],
                            "next_cursor": "MjAyNi0xMS0yOVQwMjoxMzowNy4xMjA1NDErMDg6MDB8ODE",
                            "has_more": False,
                        },
                    )
                ],
            ),
            **COMMON_ERRORS,
        },
    )
    def get(self, request: Request, county_code: str) -> Response:
        self.lines_visible()
        paginator = KeysetPagination(field="updated_at")
        rows = paginator.paginate_queryset(CreditLine.objects.all(), request, view=self)
        return paginator.get_paginated_response(LineSerializer(rows, many=True).data)

    def lines_visible(self) -> None:
        policy = policy_active()
        if policy is None or policy.partner_id != self.client.partner_id:
            raise ApiError(
                status_code=403,
                code="partner_not_lender",
                message=_("贵机构不是该县当前授信政策的贷款机构"),
                message_en="Your institution is not the lender of this county's active credit policy.",
            )


class LineDetailView(LineListView):
    @extend_schema(
        operation_id="lines_retrieve",
        tags=["credit lines"],
        summary="One credit line",
        description="A credit line by id, with what is available now.",
        parameters=[COUNTY_CODE],
        responses={
            200: OpenApiResponse(LineSerializer, examples=[OpenApiExample("line", value=LINE_EXAMPLE)]),
            **COMMON_ERRORS,
        },
    )
    def get(self, request: Request, county_code: str, line_id: int) -> Response:
        self.lines_visible()
        line = CreditLine.objects.filter(pk=_pk(line_id, what="line")).first()
        if line is None:
            raise ApiError(
                status_code=404, code="line_not_found", message=_("没有这个授信额度"), message_en="No such line."
            )
        return Response(LineSerializer(line).data)


class QuoteView(CountyAPIView):
    required_scope = Scope.QUOTES

    @extend_schema(
        operation_id="quote_create",
        tags=["quotes"],
        summary="Quote a repayment schedule",
        description=(
            "The schedule a loan would have: the same figures as `manage.py loan_schedule --json` and as the loan "
            "itself (per-period principal and interest rounded half up to the fen, the last period absorbing the "
            "rounding). Give `annual_rate` for plain arithmetic, or `line_id` to quote a drawdown from that line "
            "(its rate; refused with 422 if the amount exceeds what is available or the term or method is not one "
            "the county offers). Writes nothing, but like every POST needs an Idempotency-Key."
        ),
        parameters=[COUNTY_CODE, IDEMPOTENCY_KEY],
        request=QuoteRequestSerializer,
        responses={
            200: OpenApiResponse(ScheduleSerializer, examples=[OpenApiExample("schedule", value=SCHEDULE_EXAMPLE)]),
            **POST_ERRORS,
        },
        examples=[
            OpenApiExample(
                "by rate",
                value={
                    "amount": "10000.00",
                    "term_months": 3,
                    "method": "equal_installment",
                    "annual_rate": "0.0435",
                    "start": "2026-12-01",
                },
                request_only=True,
            ),
            OpenApiExample(
                "from a line",
                value={"amount": "10000.00", "term_months": 12, "method": "equal_principal", "line_id": 81},
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request, county_code: str) -> Response:
        data = _valid(QuoteRequestSerializer, request.data)
        return self.idempotent_response(operation="quote", run=lambda: (200, _quote(data)))


def _quote(data: dict) -> dict:
    start = data.get("start") or timezone.localdate()
    if "line_id" in data:
        line = CreditLine.objects.filter(pk=data["line_id"]).first()
        if line is None:
            raise ApiError(
                status_code=404, code="line_not_found", message=_("没有这个授信额度"), message_en="No such line."
            )
        schedule = drawdown_quote(
            line=line, amount=data["amount"], term_months=data["term_months"], method=data["method"], on=start
        )
        return schedule.as_dict()
    try:
        schedule = schedule_build(
            principal=data["amount"],
            annual_rate=data["annual_rate"],
            months=data["term_months"],
            method=data["method"],
            start=start,
        )
    except ValueError as error:
        zh, _sep, en = str(error).partition(" / ")
        raise ApiError(status_code=422, code="invalid_terms", message=zh, message_en=en or None) from None
    return schedule.as_dict()


class DrawdownListView(CountyAPIView):
    required_scope = Scope.DISBURSEMENTS

    @extend_schema(
        operation_id="drawdowns_list",
        tags=["disbursements"],
        summary="Loans awaiting (or past) disbursement",
        description=(
            "This bank's loans in the county by disbursement status (default `requested`: drawn by the farmer, "
            "to be paid out by the bank), oldest first, keyset-paginated on (created_at, id). The same loans are "
            "pushed as `drawdown.requested` events to the bank's webhook."
        ),
        parameters=[
            COUNTY_CODE,
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=Loan.Disbursement.values, description="Default requested."
            ),
            *CURSOR_PARAMETERS,
        ],
        responses={
            200: OpenApiResponse(
                DrawdownPageSerializer,
                examples=[
                    OpenApiExample(
                        "page",
                        value={
                            "results": [DRAWDOWN_EXAMPLE],
                            "next_cursor": "MjAyNi0xMS0yOVQwOTozMDoxMi4wMDQyMTErMDg6MDB8NTAxMg",
                            "has_more": False,
                        },
                    )
                ],
            ),
            **COMMON_ERRORS,
        },
    )
    def get(self, request: Request, county_code: str) -> Response:
        wanted = _valid(DrawdownFilterSerializer, request.query_params)
        loans = Loan.objects.filter(partner_id=self.client.partner_id, disbursement=wanted["status"])
        paginator = KeysetPagination(field="created_at")
        rows = paginator.paginate_queryset(loans, request, view=self)
        return paginator.get_paginated_response(DrawdownSerializer(rows, many=True).data)


class DisbursementView(CountyAPIView):
    required_scope = Scope.DISBURSEMENTS

    @extend_schema(
        operation_id="disbursement_confirm",
        tags=["disbursements"],
        summary="Confirm a loan's disbursement",
        description=(
            "The bank paid the loan out. Confirming again with the same `partner_reference` returns the loan "
            "unchanged (200); with a different one it is refused with 409 `disbursement_conflict`."
        ),
        parameters=[COUNTY_CODE, IDEMPOTENCY_KEY],
        request=DisbursementRequestSerializer,
        responses={
            200: OpenApiResponse(
                DrawdownSerializer,
                examples=[
                    OpenApiExample(
                        "confirmed",
                        value={
                            **DRAWDOWN_EXAMPLE,
                            "disbursement": "confirmed",
                            "disbursed_at": "2026-11-29T09:30:13+08:00",
                            "partner_reference": "MYB20261129004521",
                        },
                    )
                ],
            ),
            **POST_ERRORS,
        },
        examples=[
            OpenApiExample(
                "confirm",
                value={"partner_reference": "MYB20261129004521", "disbursed_at": "2026-11-29T09:30:13+08:00"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, county_code: str, loan_id: int) -> Response:
        data = _valid(DisbursementRequestSerializer, request.data)
        loan_id = _pk(loan_id, what="loan")

        def run():
            try:
                loan = loan_disbursement_confirm(
                    loan_id=loan_id,
                    partner=self.client.partner,
                    partner_reference=data["partner_reference"],
                    disbursed_at=data["disbursed_at"],
                )
            except Loan.DoesNotExist:
                raise _loan_not_found() from None
            return 200, dict(DrawdownSerializer(loan).data)

        return self.idempotent_response(operation="disbursement", run=run)


class RepaymentView(CountyAPIView):
    required_scope = Scope.REPAYMENTS

    @extend_schema(
        operation_id="repayment_create",
        tags=["repayments"],
        summary="Post a repayment the bank collected",
        description=(
            "`scheduled`: what has fallen due, allocated in the county's order (penalty → interest → principal by "
            "default), oldest installment first; more than is due is refused (`overpayment`), nothing due is "
            "refused (`nothing_due`). `prepayment`: `amount` is principal not yet due, paid with its interest to "
            "the day, and the rest of the schedule is rebuilt (`prepayment_mode`). `payoff`: `amount` must equal "
            "the loan's payoff quote (`payoff.amount` of GET loans/{id}). The `partner_reference` is posted once "
            "per loan (409 `duplicate_partner_reference`)."
        ),
        parameters=[COUNTY_CODE, IDEMPOTENCY_KEY],
        request=RepaymentRequestSerializer,
        responses={
            201: OpenApiResponse(
                RepaymentResultSerializer, examples=[OpenApiExample("posted", value=REPAYMENT_RESULT_EXAMPLE)]
            ),
            **POST_ERRORS,
        },
        examples=[
            OpenApiExample(
                "scheduled",
                value={"amount": "853.10", "kind": "scheduled", "partner_reference": "MYB20261229000117"},
                request_only=True,
            ),
            OpenApiExample(
                "prepayment",
                value={
                    "amount": "3000.00",
                    "kind": "prepayment",
                    "partner_reference": "MYB20270105000009",
                    "prepayment_mode": "shorter_term",
                },
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request, county_code: str, loan_id: int) -> Response:
        data = _valid(RepaymentRequestSerializer, request.data)
        loan_id = _pk(loan_id, what="loan")

        def run():
            try:
                repayment = loan_partner_repayment(
                    loan_id=loan_id,
                    partner=self.client.partner,
                    kind=data["kind"],
                    amount=data["amount"],
                    partner_reference=data["partner_reference"],
                    prepayment_mode=data.get("prepayment_mode", ""),
                )
            except Loan.DoesNotExist:
                raise _loan_not_found() from None
            return status.HTTP_201_CREATED, dict(RepaymentResultSerializer(repayment).data)

        return self.idempotent_response(operation="repayment", run=run)


class LoanDetailView(CountyAPIView):
    required_scope = Scope.LOANS_READ

    @extend_schema(
        operation_id="loans_retrieve",
        tags=["loans"],
        summary="A loan: status, balances, schedule and repayments",
        description=(
            "Balances as of the last nightly close and the payments posted since; `payoff` is what paying the "
            "whole loan off today costs (null once closed). The schedule lists current installments (those "
            "replaced by a prepayment are left out)."
        ),
        parameters=[COUNTY_CODE],
        responses={
            200: OpenApiResponse(
                LoanDetailSerializer,
                examples=[
                    OpenApiExample(
                        "loan",
                        value={
                            **{k: v for k, v in DRAWDOWN_EXAMPLE.items() if k != "created_at"},
                            "penalty_rate": "0.065250",
                            "subsidy_share": "0.0000",
                            "status": "active",
                            "disbursement": "confirmed",
                            "disbursed_at": "2026-11-29T09:30:13+08:00",
                            "partner_reference": "MYB20261129004521",
                            "days_past_due": 0,
                            "classification": "normal",
                            "closed_on": None,
                            "balances": {
                                "outstanding_principal": "10000.00",
                                "interest_due": "0.00",
                                "penalty_due": "0.00",
                                "subsidy_due": "0.00",
                            },
                            "payoff": {"on": "2026-12-10", "amount": "10013.29"},
                            "schedule": [
                                {
                                    "number": 1,
                                    "due_date": "2026-12-29",
                                    "principal": "816.85",
                                    "interest": "36.25",
                                    "subsidy": "0.00",
                                    "farmer_interest": "36.25",
                                    "payment": "853.10",
                                    "principal_paid": "0.00",
                                    "interest_paid": "0.00",
                                    "status": "scheduled",
                                    "paid_on": None,
                                }
                            ],
                            "repayments": [],
                        },
                    )
                ],
            ),
            **COMMON_ERRORS,
        },
    )
    def get(self, request: Request, county_code: str, loan_id: int) -> Response:
        loan = Loan.objects.filter(pk=_pk(loan_id, what="loan"), partner_id=self.client.partner_id).first()
        if loan is None:
            raise _loan_not_found()
        return Response(LoanDetailSerializer(loan).data)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
