from django.urls import path

from . import views

urlpatterns = [
    path("feedback", views.FeedbackView.as_view(), name="api-feedback"),
    path("deliveries", views.DeliveryListView.as_view(), name="api-delivery-list"),
    path("deliveries/<id:pk>/retry", views.DeliveryRetryView.as_view(), name="api-delivery-retry"),
]
