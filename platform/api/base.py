"""The base of every county endpoint of the API on the public host
(``/api/v1/counties/<code>/…``): signed client → its kind and scope → rate limit → the county
(which the client must be allowed to act for, and which must be live) → the request runs in
that county's schema, and the connection goes back to the public schema afterwards."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from loans.idempotency import idempotent
from platform.api.auth import HmacSignatureAuthentication
from platform.api.errors import ApiError, api_exception_handler
from platform.api.parsers import DecimalJSONParser
from platform.api.throttling import ClientRateThrottle
from platform.models import County, IntegrationClient

IDEMPOTENCY_HEADER = "Idempotency-Key"


class ClientKindAndScope(BasePermission):
    """The view's ``client_kind`` and ``required_scope`` (a department's system cannot call a
    bank endpoint, a bank client without the scope cannot call it either)."""

    def has_permission(self, request, view) -> bool:
        client = request.auth
        if not isinstance(client, IntegrationClient):
            return False
        if client.kind != view.client_kind:
            raise ApiError(
                status_code=403,
                code="client_kind_forbidden",
                message=_("该接口仅供%(kind)s调用") % {"kind": IntegrationClient.Kind(view.client_kind).label},
                message_en=f"This endpoint is for {view.client_kind} clients only.",
            )
        if view.required_scope and view.required_scope not in client.scopes:
            raise ApiError(
                status_code=403,
                code="scope_missing",
                message=_("该系统没有 %(scope)s 权限") % {"scope": view.required_scope},
                message_en=f"This client lacks the {view.required_scope} scope.",
            )
        return True


def county_for_client(client: IntegrationClient, code: str) -> County:
    county = County.objects.filter(code=code).first()
    if county is None:
        raise ApiError(
            status_code=404,
            code="county_not_found",
            message=_("没有行政区划代码为 %(code)s 的县") % {"code": code},
            message_en=f"No county has the code {code}.",
        )
    if not client.counties.filter(pk=county.pk).exists():
        raise ApiError(
            status_code=403,
            code="county_forbidden",
            message=_("该系统无权代表 %(name)s 调用") % {"name": county.name},
            message_en=f"This client may not act for county {code}.",
        )
    if county.status != County.Status.LIVE:
        raise ApiError(
            status_code=403,
            code="county_suspended" if county.status == County.Status.SUSPENDED else "county_not_live",
            message=_("%(name)s 的服务目前未开放") % {"name": county.name},
            message_en=f"County {code} is not live ({county.status}).",
        )
    return county


class CountyAPIView(APIView):
    """Subclasses set ``required_scope`` (and ``client_kind`` if not a bank endpoint); the URL
    has ``county_code``. ``self.client`` and ``self.county`` are set before the handler runs."""

    authentication_classes = [HmacSignatureAuthentication]
    permission_classes = [ClientKindAndScope]
    throttle_classes = [ClientRateThrottle]
    parser_classes = [DecimalJSONParser]
    renderer_classes = [JSONRenderer]
    client_kind: str = IntegrationClient.Kind.BANK
    required_scope: str = ""

    def get_exception_handler(self):
        return api_exception_handler

    def initial(self, request, *args, **kwargs) -> None:
        # Service messages come out in Chinese; the error format adds the English.
        translation.activate(settings.LANGUAGE_CODE)
        super().initial(request, *args, **kwargs)
        self.client: IntegrationClient = request.auth
        self.county = county_for_client(self.client, kwargs["county_code"])
        connection.set_tenant(self.county)

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            connection.set_schema_to_public()

    def idempotent_response(self, *, operation: str, run) -> Response:
        """Run a POST at most once per ``Idempotency-Key`` for this client (in the county's
        schema); a repeat gets the first status and body, a repeat in flight 409."""
        key = self.request.headers.get(IDEMPOTENCY_HEADER, "")
        if not key:
            raise ApiError(
                status_code=400,
                code="idempotency_key_missing",
                message=_("每个 POST 请求都需要 Idempotency-Key 请求头"),
            )
        status_code, body = idempotent(
            scope=f"client:{self.client.pk}",
            key=key,
            operation=operation,
            request={"path": self.request.path, "body": self.request.data},
            run=run,
        )
        return Response(body, status=status_code)
