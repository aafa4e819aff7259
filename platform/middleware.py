"""Resolve the request's host to a county schema, the public schema, or a clear refusal."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django_tenants.middleware.main import TenantMainMiddleware
from django_tenants.utils import get_public_schema_name, schema_context

from platform.models import County, Domain

logger = logging.getLogger(__name__)

TENANT_CACHE_SECONDS = 60


def tenant_cache_key(hostname: str) -> str:
    return f"tenant-host:{hostname}"


def _cache_call(operation, *args):
    """``operation(*args)``, or None with a warning when the cache (Redis) is unreachable: the
    host → county cache only saves a query, so Redis being down must not take every page down
    (and an entry that could not be forgotten expires within TENANT_CACHE_SECONDS anyway)."""
    try:
        return operation(*args)
    except Exception as error:
        logger.warning("tenant cache unavailable (%s: %s); using the database", operation.__name__, error)
        return None


def forget_county_hosts(hostnames: list[str]) -> None:
    """Drop cached host → county answers; call after changing a county or its domains."""
    with schema_context(get_public_schema_name()):
        _cache_call(cache.delete_many, [tenant_cache_key(host) for host in hostnames])


class CountyTenantMiddleware(TenantMainMiddleware):
    """django-tenants' host → schema middleware with the answers a county platform needs:

    * a public host (``PUBLIC_HOSTS``) → the public schema (admin console, platform API);
    * an unknown host → 404 page;
    * a suspended county → 403 page, never the county's data;
    * host → county lookups cached in Redis for a minute (they run on every request); with
      Redis unreachable they are read from PostgreSQL, so the portals keep working.
    """

    def get_tenant(self, domain_model, hostname):
        # The connection is on the public schema here, so the key carries the public prefix.
        # Services that change a county or its domains delete these keys (forget_county_hosts).
        key = tenant_cache_key(hostname)
        county = _cache_call(cache.get, key)
        if county is None:
            county = domain_model.objects.select_related("tenant").get(domain=hostname).tenant
            _cache_call(cache.set, key, county, TENANT_CACHE_SECONDS)
        return county

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        connection.set_schema_to_public()
        hostname = self.hostname_from_request(request)
        if hostname in settings.PUBLIC_HOSTS:
            request.tenant = connection.tenant  # django-tenants' stand-in for the public schema
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            from django.urls import set_urlconf

            set_urlconf(request.urlconf)
            return None
        try:
            county = self.get_tenant(Domain, hostname)
        except Domain.DoesNotExist:
            return _page(request, 404, _("找不到这个县的网站"), _("没有县使用域名 %(host)s。") % {"host": hostname})
        if county.status == County.Status.SUSPENDED:
            return _page(
                request,
                403,
                _("该县服务已暂停"),
                _("%(name)s 的服务目前已暂停，请联系县农业农村局或平台运营方。") % {"name": county.name},
            )
        county.domain_url = hostname
        request.tenant = county
        connection.set_tenant(county)
        self.setup_url_routing(request)
        return None


def _page(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    html = render_to_string("platform/refusal.html", {"title": title, "message": message, "status": status}, request)
    return HttpResponse(html, status=status)


# Room for the multipart envelope and the form's other fields around the largest allowed file.
REQUEST_BODY_MARGIN_BYTES = 1024 * 1024


class RequestSizeLimitMiddleware:
    """Refuse a request whose declared body is larger than the largest upload allowed, before
    anything reads it (the CSRF check would otherwise stream the whole body to a temporary
    file first). Django reads no more than Content-Length, so the declared size bounds it."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from data_sharing import imports

        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        limit = imports.MAX_UPLOAD_BYTES + REQUEST_BODY_MARGIN_BYTES
        if declared > limit:
            return _page(
                request,
                413,
                _("文件太大"),
                _("请求超过 %(limit)s MB 的上限，请分成几个文件上传。") % {"limit": imports.MAX_UPLOAD_BYTES // (1024 * 1024)},
            )
        return self.get_response(request)
