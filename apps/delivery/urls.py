from django.urls import path

from . import views

app_name = "delivery"

urlpatterns = [
    path("failed/", views.failed_list, name="failed-list"),
    path("<id:pk>/retry/", views.delivery_retry, name="delivery-retry"),
]
