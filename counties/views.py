"""The county's public home page. The officials' portal is :mod:`counties.portal`."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from counties import selectors


def county_home(request: HttpRequest) -> HttpResponse:
    return render(request, "counties/home.html", {"county": request.tenant, "summary": selectors.county_summary()})
