"""Department data API on a county host, under /api/v1/data/."""

from django.urls import path

from data_sharing import api

urlpatterns = [
    path("<slug:category_code>/batches", api.BatchCreateView.as_view(), name="data-api-batches"),
    path("batches/<int:pk>", api.BatchDetailView.as_view(), name="data-api-batch"),
]
