"""HMAC-signed requests for integration clients (banks, government departments).

Every request carries four headers:

* ``X-Puhui-Key`` — the client's key id (``phk_…``);
* ``X-Puhui-Timestamp`` — unix seconds; refused more than 300 s from the server's clock;
* ``X-Puhui-Nonce`` — 16–128 printable characters, never reused: each is remembered for 10
  minutes (Redis, ``cache.add``), longer than the timestamp window, so a captured request
  cannot be replayed;
* ``X-Puhui-Signature`` — hex HMAC-SHA256 under the client's secret of::

      METHOD \\n PATH \\n QUERY \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body))

  with PATH the path without the query string, percent-escapes decoded
  (``/api/v1/counties/410225/lines``), and QUERY the raw query string as sent (``cursor=…``;
  empty when there is none).

Why not OAuth2 client credentials: no token endpoint, token store or refresh to run and keep
in step across hosts; the signature covers the body (a changed amount fails) and the nonce and
timestamp refuse replays, which a bearer token does not; and a bank's integration needs only
an HMAC library.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from django.core.cache import cache
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from platform.api.services import client_secret
from platform.models import IntegrationClient

KEY_HEADER = "X-Puhui-Key"
TIMESTAMP_HEADER = "X-Puhui-Timestamp"
NONCE_HEADER = "X-Puhui-Nonce"
SIGNATURE_HEADER = "X-Puhui-Signature"
MAX_CLOCK_SKEW_SECONDS = 300
NONCE_TTL_SECONDS = 600
NONCE_MIN_LENGTH, NONCE_MAX_LENGTH = 16, 128
AUTH_SCHEME = "Puhui-HMAC-SHA256"


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body or b"").hexdigest()


def string_to_sign(*, method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join([method.upper(), path, query, timestamp, nonce, body_digest(body)])


def request_signature(
    secret: str, *, method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    message = string_to_sign(method=method, path=path, query=query, timestamp=timestamp, nonce=nonce, body=body)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signed_headers(
    *,
    key_id: str,
    secret: str,
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers of a signed request (what a client does; the tests and docs use it)."""
    timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    signature = request_signature(
        secret, method=method, path=path, query=query, timestamp=timestamp_text, nonce=nonce, body=body
    )
    return {KEY_HEADER: key_id, TIMESTAMP_HEADER: timestamp_text, NONCE_HEADER: nonce, SIGNATURE_HEADER: signature}


class ClientPrincipal:
    """``request.user`` for a signed request: the integration client, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, client: IntegrationClient) -> None:
        self.client = client
        self.pk = self.id = client.pk

    def get_username(self) -> str:
        return f"client:{self.client.key_id}"

    def __str__(self) -> str:
        return self.get_username()


def service_unavailable():
    from platform.api.errors import ApiError

    return ApiError(
        status_code=503, code="service_unavailable",
        message=_("服务暂时不可用，请稍后重试"), message_en="The service is briefly unavailable; retry later",
    )


def _refuse(code: str, message) -> exceptions.AuthenticationFailed:
    return exceptions.AuthenticationFailed(detail=str(message), code=code)


class HmacSignatureAuthentication(BaseAuthentication):
    """DRF authentication: ``request.user`` is a :class:`ClientPrincipal`, ``request.auth`` the
    :class:`~platform.models.IntegrationClient`. A request without ``X-Puhui-Key`` is
    unauthenticated (401 ``not_authenticated``); a wrong one is refused (401 with a code)."""

    def authenticate(self, request) -> tuple[ClientPrincipal, IntegrationClient] | None:
        django_request: HttpRequest = request._request
        key_id = request.headers.get(KEY_HEADER, "")
        if not key_id:
            return None
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        nonce = request.headers.get(NONCE_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not (timestamp and nonce and signature):
            raise _refuse(
                "signature_missing",
                _("缺少签名请求头 / Missing X-Puhui-Timestamp, X-Puhui-Nonce or X-Puhui-Signature"),
            )
        client = IntegrationClient.objects.filter(key_id=key_id).first()
        if client is None or not client.is_active:
            raise _refuse("key_invalid", _("密钥无效或已吊销 / Unknown or revoked key"))
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise _refuse("timestamp_invalid", _("时间戳须为 Unix 秒 / The timestamp must be unix seconds"))
        # Whole seconds on both sides: 300 s off is accepted, 301 s refused.
        if abs(int(time.time()) - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
            raise _refuse(
                "timestamp_expired",
                _("时间戳与服务器时间相差超过 300 秒 / The timestamp is more than 300 s from the server's clock"),
            )
        if not (NONCE_MIN_LENGTH <= len(nonce) <= NONCE_MAX_LENGTH and nonce.isascii() and nonce.isprintable()):
            raise _refuse(
                "nonce_invalid", _("Nonce 须为 16–128 个可打印字符 / The nonce must be 16–128 printable characters")
            )
        expected = request_signature(
            client_secret(client),
            method=django_request.method,
            path=django_request.path,
            query=django_request.META.get("QUERY_STRING", ""),
            timestamp=timestamp,
            nonce=nonce,
            body=django_request.body,
        )
        if not hmac.compare_digest(expected, signature.lower()):
            raise _refuse("signature_invalid", _("签名不正确 / The signature does not match"))
        # Only a correctly signed request spends its nonce (nobody else can burn a client's).
        try:
            fresh = cache.add(f"api-nonce:{client.pk}:{hashlib.sha256(nonce.encode()).hexdigest()}", 1, NONCE_TTL_SECONDS)
        except Exception as error:  # Redis down: a nonce that cannot be remembered cannot be checked
            raise service_unavailable() from error
        if not fresh:
            raise _refuse("nonce_replayed", _("该 Nonce 已使用过（疑似重放） / The nonce was already used (replay)"))
        return ClientPrincipal(client), client

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to an unauthenticated request.
        return f'{AUTH_SCHEME} realm="puhui-api"'
