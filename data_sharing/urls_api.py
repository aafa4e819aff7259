"""Department data API: for officials on a county host under ``/api/v1/data/`` (``urlpatterns``,
included by ``platform.urls_tenant``), and for departments' signed systems on the public host
under ``/api/v1/counties/<code>/data/`` (``county_urlpatterns``, included by
``platform.urls_public``)."""

from django.urls import path

from data_sharing import api

urlpatterns = [
    path("<slug:category_code>/batches", api.BatchCreateView.as_view(), name="data-api-batches"),
    path("batches/<int:pk>", api.BatchDetailView.as_view(), name="data-api-batch"),
]

county = "counties/<str:county_code>/data/"

county_urlpatterns = [
    path(f"{county}<slug:category_code>/batches", api.DepartmentBatchCreateView.as_view(), name="api-data-batches"),
    path(f"{county}batches/<int:batch_id>", api.DepartmentBatchDetailView.as_view(), name="api-data-batch"),
]
