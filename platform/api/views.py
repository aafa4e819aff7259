"""The API's OpenAPI 3 document and its two readers, served from the project's own static
files (``static/vendor/``, no CDN): Swagger UI at ``/api/v1/docs/``, Redoc at
``/api/v1/redoc/``. The document covers the public host's API (``platform.urls_public``)."""

from __future__ import annotations

from django.http import HttpResponse
from django.template import engines
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from platform.api import auth


class HmacSignatureScheme(OpenApiAuthenticationExtension):
    target_class = "platform.api.auth.HmacSignatureAuthentication"
    name = "PuhuiSignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": auth.KEY_HEADER,
            "description": (
                "Every request is signed. Send `X-Puhui-Key` (the key id), `X-Puhui-Timestamp` (unix seconds, "
                "within 300 s of the server's clock), `X-Puhui-Nonce` (16–128 printable characters, never reused) "
                'and `X-Puhui-Signature` = hex HMAC-SHA256(secret, METHOD + "\\n" + PATH + "\\n" + QUERY + '
                '"\\n" + TIMESTAMP + "\\n" + NONCE + "\\n" + hex(SHA-256(body))). PATH is the path without '
                "the query string, QUERY the raw query string as sent (empty if none)."
            ),
        }


class SchemaView(SpectacularAPIView):
    urlconf = "platform.urls_public"
    authentication_classes = []
    permission_classes = [AllowAny]


class SwaggerView(SpectacularSwaggerView):
    url_name = "api-schema"
    authentication_classes = []
    permission_classes = [AllowAny]


# drf-spectacular's Redoc page loads Google Fonts; this one loads nothing from elsewhere.
REDOC_PAGE = """<!DOCTYPE html>
<html lang="zh-hans">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="{{ schema_url }}"></redoc>
<script src="{{ redoc_standalone }}"></script>
</body>
</html>
"""


class RedocView(SpectacularRedocView):
    url_name = "api-schema"
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs) -> HttpResponse:
        context = {
            "title": self.title,
            "redoc_standalone": self._redoc_standalone(),
            "schema_url": self._get_schema_url(request),
        }
        return HttpResponse(engines["django"].from_string(REDOC_PAGE).render(context, request))
