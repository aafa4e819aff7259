from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.db import connection

from platform.models import County


def public_home(request: HttpRequest) -> HttpResponse:
    counties = County.objects.filter(status=County.Status.LIVE).prefetch_related("domains")
    port = request.get_port()
    return render(request, "platform/home.html", {"counties": counties, "port": "" if port in ("80", "443") else f":{port}"})


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok", "schema": connection.schema_name})
