from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("", views.trail, name="trail"),
    path("recommendations/<int:pk>/", views.trace, name="trace"),
    path("verify/", views.verify, name="verify"),
]
