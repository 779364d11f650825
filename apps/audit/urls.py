from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("", views.trail, name="trail"),
    path("export/<slug:format>", views.trail_export, name="trail-export"),
    path("recommendations/<id:pk>/", views.trace, name="trace"),
    path("verify/", views.verify, name="verify"),
]
