from django.contrib.auth import views as auth_views
from django.urls import include, path

from counties import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="counties/login.html"), name="official-login"),
    path("logout/", auth_views.LogoutView.as_view(), name="official-logout"),
    path("farmers/", views.farmer_list, name="official-farmers"),
    path("data/", include("data_sharing.urls_imports")),
]
