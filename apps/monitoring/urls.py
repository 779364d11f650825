from django.urls import path

from . import views

app_name = "monitoring"

urlpatterns = [
    path("", views.alert_list, name="alert-list"),
    path("<id:pk>/acknowledge/", views.alert_acknowledge, name="alert-acknowledge"),
    path("<id:pk>/resolve/", views.alert_resolve, name="alert-resolve"),
]
