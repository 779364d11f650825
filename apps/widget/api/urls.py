from django.urls import path

from . import views

urlpatterns = [
    path("use-cases/<slug:slug>/widget-tokens", views.WidgetLinkCreateView.as_view(), name="api-widget-token-create")
]
