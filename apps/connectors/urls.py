from django.urls import path

from . import views

app_name = "connectors"

urlpatterns = [
    path("", views.connector_list, name="connector-list"),
    path("<int:pk>/test/", views.connector_test, name="connector-test"),
    path("api-keys/", views.api_key_create, name="api-key-create"),
    path("api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api-key-revoke"),
]
