from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("login/second-factor/", views.second_factor, name="second-factor"),
    path("two-factor/", views.two_factor, name="two-factor"),
    path("sso/start/", views.sso_start, name="sso-start"),
    path("sso/callback/", views.sso_callback, name="sso-callback"),
]
