from django.urls import path

from . import views

app_name = "reporting"

urlpatterns = [
    path("", views.roi, name="roi"),
    path("export.csv", views.roi_export, name="roi-export"),
]
