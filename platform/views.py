from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from platform.models import County


def public_home(request: HttpRequest) -> HttpResponse:
    counties = County.objects.filter(status=County.Status.LIVE).prefetch_related("domains")
    # Link county domains on the port this page was reached on (8000 in the demo).
    _host, _sep, port = request.get_host().partition(":")
    return render(request, "platform/home.html", {"counties": counties, "port": f":{port}" if port else ""})


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "schema": connection.schema_name})
