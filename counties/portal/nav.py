"""Who may open which portal page, and the navigation each official sees (only what their role
may open). Shared by the portal's views and the department-data pages (data_sharing)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext_lazy

from counties.models import Official
from counties.portal.auth import Role, official_of

# Who may use what (the brief's role table; the 403 page answers everyone else).
DASHBOARD_ROLES = tuple(Role.values)
LOANS_ROLES = (Role.COUNTY_ADMIN, Role.RISK_OFFICER, Role.TOWNSHIP_OFFICER, Role.AUDITOR)
NIGHTLY_ROLES = (Role.COUNTY_ADMIN, Role.RISK_OFFICER, Role.DATA_OFFICER, Role.AUDITOR)
RERUN_ROLES = (Role.COUNTY_ADMIN, Role.RISK_OFFICER)
FARMER_ROLES = (Role.COUNTY_ADMIN, Role.RISK_OFFICER, Role.TOWNSHIP_OFFICER, Role.DATA_OFFICER)
ACCESS_LOG_ROLES = (Role.AUDITOR, Role.COUNTY_ADMIN)
# The policy and the programmes: administrators and risk officers write, auditors read.
POLICY_ROLES = (Role.COUNTY_ADMIN, Role.RISK_OFFICER, Role.AUDITOR)
POLICY_WRITE_ROLES = (Role.COUNTY_ADMIN, Role.RISK_OFFICER)
PROGRAMME_ROLES = (Role.COUNTY_ADMIN, Role.RISK_OFFICER, Role.AUDITOR)
PROGRAMME_WRITE_ROLES = (Role.COUNTY_ADMIN, Role.RISK_OFFICER)
# Reports: a township officer gets the loan and consent reports of their own township; the
# access report is the access log's, for its readers only.
REPORT_ROLES = (Role.COUNTY_ADMIN, Role.RISK_OFFICER, Role.AUDITOR, Role.TOWNSHIP_OFFICER)
OFFICIALS_ROLES = (Role.COUNTY_ADMIN,)
IMPORT_ROLES = (Role.COUNTY_ADMIN, Role.DATA_OFFICER)

NAV = [
    ("portal-dashboard", gettext_lazy("总览"), DASHBOARD_ROLES),
    ("portal-loans", gettext_lazy("贷款"), LOANS_ROLES),
    ("portal-nightly", gettext_lazy("夜间批处理"), NIGHTLY_ROLES),
    ("official-farmers", gettext_lazy("农民查询"), FARMER_ROLES),
    ("data-imports", gettext_lazy("部门数据导入"), IMPORT_ROLES),
    ("portal-policy", gettext_lazy("授信政策"), POLICY_ROLES),
    ("portal-programmes", gettext_lazy("县级项目"), PROGRAMME_ROLES),
    ("portal-reports", gettext_lazy("报表"), REPORT_ROLES),
    ("portal-access", gettext_lazy("访问记录"), ACCESS_LOG_ROLES),
    ("portal-officials", gettext_lazy("工作人员"), OFFICIALS_ROLES),
]


def nav_for(official: Official, section: str) -> list[dict]:
    return [
        {"url": reverse(name), "label": label, "current": name == section}
        for name, label, roles in NAV
        if official.role in roles
    ]


def portal_context(request: HttpRequest, *, section: str) -> dict:
    """What counties/portal/base.html needs: the official, their navigation, the county."""
    official = getattr(request, "official", None) or official_of(request.user)
    return {
        "official": official,
        "nav": nav_for(official, section) if official else [],
        "county": request.tenant,
    }


def portal_page(
    request: HttpRequest, template: str, context: dict, *, section: str, status: int = 200
) -> HttpResponse:
    """Render a portal page for ``request.official`` (set by ``official_required``)."""
    return render(request, template, {**portal_context(request, section=section), **context}, status=status)
