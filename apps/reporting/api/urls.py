from django.urls import path

from . import views

urlpatterns = [
    path("outcomes", views.OutcomeBatchView.as_view(), name="api-outcomes"),
]
