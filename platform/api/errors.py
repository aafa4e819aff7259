"""One error format for every 4xx answer of the API:

    {"error": {"code": "amount_exceeds_available", "message": "借款金额超过可用额度 5,000.00 元",
               "message_en": "The amount exceeds the available credit.", "fields": {...}}}

``code`` is stable and machine-readable; ``message`` is Chinese (the platform's first
language), ``message_en`` English; ``fields`` (only for invalid input) maps each field to its
problems. A service's refusal (:class:`loans.services.LoanRefused`) keeps its own code and
message and answers 422 (409 where it is a conflict with an earlier request).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import override
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from loans.idempotency import IdempotencyError

# Refusals that conflict with an earlier request rather than with the rules.
CONFLICT_CODES = frozenset({"disbursement_conflict", "duplicate_partner_reference"})

# English for codes whose Chinese message is formatted with figures (a formatted lazy string is
# no longer translatable) or not in the English catalog.
MESSAGES_EN = {
    "invalid_amount": "The amount is not a valid amount in yuan (at most 2 decimal places).",
    "amount_too_small": "Each loan is at least 1,000 yuan.",
    "amount_exceeds_available": "The amount exceeds the available credit of the line.",
    "invalid_term": "The term is not one this county offers.",
    "invalid_method": "The repayment method is not one this county offers.",
    "no_line": "The farmer has no credit line.",
    "line_not_active": "The credit line is not available.",
    "no_consent": "The farmer's data consent is paused, revoked or needs renewing.",
    "overdue": "The farmer has an overdue loan.",
    "nothing_due": "Nothing has fallen due; use a prepayment or a payoff to pay ahead.",
    "overpayment": "The amount exceeds what is owed.",
    "amount_mismatch": "The payoff amount must equal the payoff quote.",
    "loan_closed": "The loan is already closed.",
    "invalid_mode": "Choose a prepayment mode: shorter_term or smaller_installment.",
    "amount_due_first": "Pay what has fallen due before prepaying.",
    "use_payoff": "The prepayment would repay all the principal; use a payoff instead.",
    "not_disbursed": "The loan's disbursement has not been confirmed yet.",
    "disbursement_conflict": "The disbursement was already confirmed with another partner reference.",
    "duplicate_partner_reference": "A repayment with this partner reference was already posted for this loan.",
    "invalid_terms": "The loan terms are not valid.",
    "invalid_request": "The request is not valid; see fields.",
    "malformed_request": "The request body is not valid JSON.",
    "not_authenticated": "The request is not signed: send X-Puhui-Key, -Timestamp, -Nonce and -Signature.",
    "permission_denied": "This client may not do this.",
    "not_found": "Not found.",
    "method_not_allowed": "Method not allowed.",
    "not_acceptable": "Only application/json responses are available.",
    "unsupported_media_type": "Send the body as application/json.",
    "rate_limited": "Too many requests; retry after the number of seconds in Retry-After.",
    "idempotency_in_progress": "The same request is still being processed; retry later to get its result.",
    "idempotency_key_reused": "This Idempotency-Key was already used for a different request.",
    "idempotency_key_invalid": "The Idempotency-Key must be 1–128 printable characters.",
    "idempotency_key_missing": "Every POST needs an Idempotency-Key header.",
}

_DRF_CODES = {
    exceptions.ParseError: ("malformed_request", _("请求内容不是有效的 JSON")),
    exceptions.NotAuthenticated: (
        "not_authenticated",
        _("请求未签名：需要 X-Puhui-Key、-Timestamp、-Nonce 和 -Signature"),
    ),
    exceptions.PermissionDenied: ("permission_denied", _("该系统无权执行此操作")),
    exceptions.NotFound: ("not_found", _("未找到")),
    exceptions.MethodNotAllowed: ("method_not_allowed", _("不支持该请求方法")),
    exceptions.NotAcceptable: ("not_acceptable", _("只提供 application/json 格式的响应")),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", _("请求内容须为 application/json")),
    exceptions.Throttled: ("rate_limited", _("请求过于频繁，请在 Retry-After 秒后重试")),
}


class ApiError(exceptions.APIException):
    """An API refusal with its own code and bilingual message."""

    def __init__(self, *, status_code: int, code: str, message, message_en: str | None = None, fields=None) -> None:
        super().__init__(detail=str(message), code=code)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.message_en = message_en
        self.fields = fields


def error_body(*, code: str, message, message_en: str | None = None, fields=None) -> dict:
    error = {"code": code, "message": _zh(message), "message_en": message_en or _en(code, message)}
    if fields:
        error["fields"] = fields
    return {"error": error}


def _zh(message) -> str:
    with override("zh-hans"):
        return str(message)


def _en(code: str, message) -> str:
    """English from the catalog when the message is still a lazy translatable string and has a
    translation; else the code's English text; else the Chinese as it is."""
    if isinstance(message, Promise):
        with override("en"):
            english = str(message)
        if english != _zh(message):
            return english
    if code in MESSAGES_EN:
        return MESSAGES_EN[code]
    text = str(message)
    # Messages already written "中文 / English" (e.g. loans.schedule's) carry their own English.
    return text.split(" / ", 1)[1] if " / " in text else text


def _split_bilingual(text: str) -> tuple[str, str | None]:
    zh, sep, en = text.partition(" / ")
    return (zh, en) if sep else (text, None)


def api_exception_handler(exc, context) -> Response | None:
    """DRF exception handler for the API views (set per view, so other DRF views in the project
    keep their own format)."""
    headers = {}
    if isinstance(exc, IdempotencyError):
        status_code, body = exc.status_code, error_body(code=exc.code, message=exc.message)
    elif isinstance(exc, ApiError):
        status_code = exc.status_code
        body = error_body(code=exc.code, message=exc.message, message_en=exc.message_en, fields=exc.fields)
    elif isinstance(exc, DjangoValidationError):
        # LoanRefused and other service refusals: the rules say no.
        code = getattr(exc, "code", None) or "invalid"
        status_code = status.HTTP_409_CONFLICT if code in CONFLICT_CODES else status.HTTP_422_UNPROCESSABLE_ENTITY
        message = getattr(exc, "message", None)
        if message is None:
            message = "; ".join(exc.messages)
        elif getattr(exc, "params", None):
            message = message % exc.params
        body = error_body(code=code, message=message)
    elif isinstance(exc, exceptions.ValidationError):
        status_code = status.HTTP_400_BAD_REQUEST
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body = error_body(code="invalid_request", message=_("请求参数有误，详见 fields"), fields=_plain(fields))
    elif isinstance(exc, exceptions.APIException | Http404 | DjangoPermissionDenied):
        if isinstance(exc, Http404):
            exc = exceptions.NotFound()
        elif isinstance(exc, DjangoPermissionDenied):
            exc = exceptions.PermissionDenied()
        status_code = exc.status_code
        code, message = _drf_code(exc)
        if isinstance(exc, exceptions.AuthenticationFailed | exceptions.NotAuthenticated | exceptions.PermissionDenied):
            # Our authentication and permission classes raise with their own code and message.
            detail_code = getattr(exc.detail, "code", None)
            if detail_code not in (None, "authentication_failed", "not_authenticated", "permission_denied"):
                code = detail_code
                message, english = _split_bilingual(str(exc.detail))
                body = error_body(code=code, message=message, message_en=english)
            else:
                body = error_body(code=code, message=message)
        else:
            body = error_body(code=code, message=message)
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait) + 1)
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
    else:
        return None
    set_rollback()
    return Response(body, status=status_code, headers=headers)


def _drf_code(exc: exceptions.APIException) -> tuple[str, object]:
    if isinstance(exc, exceptions.AuthenticationFailed):
        return "not_authenticated", _("签名验证失败")
    for kind, (code, message) in _DRF_CODES.items():
        if isinstance(exc, kind):
            return code, message
    return (getattr(exc, "default_code", None) or "error"), str(exc.detail)


def _plain(detail):
    """ErrorDetail trees → plain lists and dicts of strings."""
    if isinstance(detail, dict):
        return {str(key): _plain(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_plain(item) for item in detail]
    return str(detail)


@csrf_exempt  # an API path, never a browser form: answer 404, not the CSRF page
def api_not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    """Any other path under /api/: 404 in the API's format, not an HTML page."""
    return JsonResponse(error_body(code="not_found", message=_("未找到")), status=404)
