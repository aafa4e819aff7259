"""URLs of the public host: the platform operators' admin console, the platform landing page and
the bank and department API (``/api/v1/``, county code in the path)."""

from django.contrib import admin
from django.urls import include, path, re_path

from data_sharing.urls_api import county_urlpatterns as department_urlpatterns
from platform import views
from platform.api.errors import api_not_found
from platform.api.views import RedocView, SchemaView, SwaggerView

urlpatterns = [
    path("", views.public_home, name="public-home"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/schema/", SchemaView.as_view(), name="api-schema"),
    path("api/v1/docs/", SwaggerView.as_view(), name="api-docs"),
    path("api/v1/redoc/", RedocView.as_view(), name="api-redoc"),
    path("api/v1/", include("loans.urls_api")),
    path("api/v1/", include(department_urlpatterns)),
    re_path(r"^api/", api_not_found),
]
