"""The officials' portal, under /portal/ on a county's domain (platform/urls_tenant.py)."""

from django.urls import URLPattern, URLResolver, include, path

from counties.portal import views, views_auth, views_policy, views_programmes, views_reports
from counties.portal.auth import otp_verified_required
from data_sharing import urls_imports


def _second_factor_required(patterns: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    """The department-data pages check roles themselves; the second factor is checked here so
    that no portal page opens on a password alone. (Copies: the app's own patterns stay as
    they are.)"""
    return [
        URLPattern(pattern.pattern, otp_verified_required(pattern.callback), pattern.default_args, pattern.name)
        if isinstance(pattern, URLPattern)
        else pattern
        for pattern in patterns
    ]


urlpatterns = [
    path("", views.dashboard, name="portal-dashboard"),
    path("dashboard.json", views.dashboard_json, name="portal-dashboard-json"),
    # Signing in: password, then the TOTP code (or enrolment of a device).
    path("login/", views_auth.OfficialLoginView.as_view(), name="official-login"),
    path("login/code/", views_auth.otp_verify, name="official-verify"),
    path("login/enrol/", views_auth.otp_enrol, name="official-enrol"),
    path("logout/", views_auth.OfficialLogoutView.as_view(), name="official-logout"),
    path("loans/", views.loans, name="portal-loans"),
    path("nightly/", views.nightly, name="portal-nightly"),
    path("nightly/<str:business_date>/", views.nightly_detail, name="portal-nightly-run"),
    path("nightly/<str:business_date>/progress", views.nightly_progress, name="portal-nightly-progress"),
    path("nightly/<str:business_date>/rerun", views.nightly_rerun, name="portal-nightly-rerun"),
    path("farmers/", views.farmer_list, name="official-farmers"),
    path("farmers/<int:farmer_id>/", views.farmer_detail, name="portal-farmer"),
    path("access/", views.access_log, name="portal-access"),
    path("access/export.csv", views.access_log_csv, name="portal-access-csv"),
    # The credit policy: model card, drafts, the what-if sandbox, the second official's approval.
    path("policy/", views_policy.policy, name="portal-policy"),
    path("policy/new", views_policy.policy_new, name="portal-policy-new"),
    path("policy/<int:version>/", views_policy.policy_version, name="portal-policy-version"),
    path("policy/<int:version>/submit", views_policy.policy_version_submit, name="portal-policy-submit"),
    path("policy/<int:version>/approve", views_policy.policy_version_approve, name="portal-policy-approve"),
    path("policy/<int:version>/reject", views_policy.policy_version_reject, name="portal-policy-reject"),
    # County programmes: interest subsidy, the risk compensation fund, disaster pauses.
    path("programmes/", views_programmes.programmes, name="portal-programmes"),
    path("programmes/loans/<int:loan_id>/write-off", views_programmes.loan_write_off, name="portal-loan-write-off"),
    path("programmes/pauses/<int:pause_id>/lift", views_programmes.pause_lift, name="portal-pause-lift"),
    # Monthly reports, on the page and as CSV / XLSX.
    path("reports/", views_reports.reports, name="portal-reports"),
    path("reports/<slug:kind>.<slug:fmt>", views_reports.report_file, name="portal-report-file"),
    path("officials/", views.officials, name="portal-officials"),
    path("officials/<int:official_id>/reset-otp", views.official_reset_otp, name="portal-official-reset-otp"),
    path("officials/<int:official_id>/unlock", views.official_unlock, name="portal-official-unlock"),
    path("officials/<int:official_id>/active", views.official_active, name="portal-official-active"),
    path("data/", include(_second_factor_required(urls_imports.urlpatterns))),
]
