"""URLs of the public host: the platform operators' admin console and the platform landing page."""

from django.contrib import admin
from django.urls import include, path

from platform import views

urlpatterns = [
    path("", views.public_home, name="public-home"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
]
