"""The bank API's county endpoints, included by ``platform.urls_public`` under ``api/v1/``."""

from django.urls import path

from loans import api

county = "counties/<str:county_code>/"

urlpatterns = [
    path(f"{county}lines", api.LineListView.as_view(), name="api-lines"),
    path(f"{county}lines/<int:line_id>", api.LineDetailView.as_view(), name="api-line"),
    path(f"{county}quote", api.QuoteView.as_view(), name="api-quote"),
    path(f"{county}drawdowns", api.DrawdownListView.as_view(), name="api-drawdowns"),
    path(f"{county}loans/<int:loan_id>", api.LoanDetailView.as_view(), name="api-loan"),
    path(f"{county}loans/<int:loan_id>/disbursement", api.DisbursementView.as_view(), name="api-disbursement"),
    path(f"{county}loans/<int:loan_id>/repayments", api.RepaymentView.as_view(), name="api-repayments"),
]
