"""The portal's department-data pages, included under /portal/data/ (counties/urls.py)."""

from django.urls import path

from data_sharing import views_imports as views

urlpatterns = [
    path("", views.category_list, name="data-imports"),
    path("upload/", views.upload, name="data-import-upload"),
    path("categories/<slug:code>/", views.category_history, name="data-import-category"),
    path("batches/<int:batch_id>/", views.batch_detail, name="data-import-batch"),
    path("batches/<int:batch_id>/progress", views.batch_progress, name="data-import-progress"),
    path("batches/<int:batch_id>/errors.csv", views.batch_errors_csv, name="data-import-errors"),
]
