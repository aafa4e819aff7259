"""The farmer portal, included under /m/ on every county's domain (platform/urls_tenant.py)."""

from django.urls import path

from counties.mobile import loans_views, views

urlpatterns = [
    path("", views.home, name="mobile-home"),
    path("login/", views.login, name="mobile-login"),
    path("login/code/", views.login_code, name="mobile-login-code"),
    path("login/resend/", views.login_resend, name="mobile-login-resend"),
    path("login/identify/", views.login_identify, name="mobile-login-identify"),
    path("logout/", views.logout, name="mobile-logout"),
    path("consent/", views.consent, name="mobile-consent"),
    path("consent/grant/", views.consent_grant, name="mobile-consent-grant"),
    path("consent/<int:consent_id>/pause/", views.consent_pause, name="mobile-consent-pause"),
    path("consent/<int:consent_id>/resume/", views.consent_resume, name="mobile-consent-resume"),
    path("consent/<int:consent_id>/revoke/", views.consent_revoke, name="mobile-consent-revoke"),
    path("consent/<int:consent_id>/receipt/", views.consent_receipt, name="mobile-consent-receipt"),
    path("data/", views.my_data, name="mobile-data"),
    path("borrow/", loans_views.borrow, name="mobile-borrow"),
    path("borrow/preview/", loans_views.borrow_preview, name="mobile-borrow-preview"),
    path("borrow/confirm/", loans_views.borrow_confirm, name="mobile-borrow-confirm"),
    path("borrow/resend/", loans_views.borrow_resend, name="mobile-borrow-resend"),
    path("borrow/done/<int:loan_id>/", loans_views.borrow_done, name="mobile-borrow-done"),
    path("loans/", loans_views.loans, name="mobile-loans"),
    path("loans/<int:loan_id>/", loans_views.loan, name="mobile-loan"),
    path("loans/<int:loan_id>/repay/", loans_views.loan_repay, name="mobile-loan-repay"),
    path("loans/<int:loan_id>/payoff/", loans_views.loan_payoff, name="mobile-loan-payoff"),
    path("loans/<int:loan_id>/prepay/", loans_views.loan_prepay, name="mobile-loan-prepay"),
]
