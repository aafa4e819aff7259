"""Monthly reports: on the page, and each as CSV and XLSX (cells escaped against formula
injection, see :mod:`counties.portal.exports`). A township officer's reports cover their
township; the access report is for the access log's readers only."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from counties.portal import reports as selectors
from counties.portal.auth import Role, forbidden, official_required
from counties.portal.exports import csv_response, xlsx_response
from counties.portal.nav import ACCESS_LOG_ROLES, REPORT_ROLES, portal_page

FORMATS = ("csv", "xlsx")
KINDS = ("loans", "consents", "access")


def _scope(request: HttpRequest) -> int | None:
    official = request.official
    return official.township_id if official.role == Role.TOWNSHIP_OFFICER else None


def _kinds(request: HttpRequest) -> list[str]:
    return [kind for kind in KINDS if kind != "access" or request.official.role in ACCESS_LOG_ROLES]


def _report(kind: str, request: HttpRequest, month: selectors.Month) -> selectors.Report:
    if kind == "loans":
        return selectors.loan_report(month=month, township_id=_scope(request))
    if kind == "consents":
        return selectors.consent_report(month=month, township_id=_scope(request))
    return selectors.access_report(month=month)


@official_required(roles=REPORT_ROLES)
@require_GET
def reports(request: HttpRequest) -> HttpResponse:
    month = selectors.Month.parse(request.GET.get("month"))
    return portal_page(
        request,
        "counties/portal/reports.html",
        {
            "month": month,
            "reports": [_report(kind, request, month) for kind in _kinds(request)],
            "formats": FORMATS,
        },
        section="portal-reports",
    )


@official_required(roles=REPORT_ROLES)
@require_GET
def report_file(request: HttpRequest, kind: str, fmt: str) -> HttpResponse:
    if kind not in KINDS or fmt not in FORMATS:
        raise Http404
    if kind not in _kinds(request):
        return forbidden(request)
    month = selectors.Month.parse(request.GET.get("month"))
    report = _report(kind, request, month)
    scope = f"-{request.official.township.code}" if _scope(request) is not None else ""
    filename = f"{kind}-report-{request.tenant.code}{scope}-{month}.{fmt}"
    if fmt == "csv":
        return csv_response(filename, report.header, report.rows)
    return xlsx_response(filename, [(f"{report.title} {month}", report.header, report.rows)])
