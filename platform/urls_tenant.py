"""URLs of a county's own domain."""

from django.urls import include, path

from counties import views as county_views
from platform import views

urlpatterns = [
    path("", county_views.county_home, name="county-home"),
    path("healthz", views.healthz, name="healthz"),
    path("portal/", include("counties.urls")),
    path("m/", include("counties.mobile.urls")),
    path("api/v1/data/", include("data_sharing.urls_api")),
    path("i18n/", include("django.conf.urls.i18n")),
]
