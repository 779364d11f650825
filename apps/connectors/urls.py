from django.urls import path

from . import views

app_name = "connectors"

urlpatterns = [
    path("", views.connector_list, name="connector-list"),
    path("new/", views.connector_create, name="connector-create"),
    path("<int:pk>/", views.connector_detail, name="connector-detail"),
    path("<int:pk>/edit/", views.connector_edit, name="connector-edit"),
    path("<int:pk>/test/", views.connector_test, name="connector-test"),
    path("<int:pk>/browse/", views.connector_browse, name="connector-browse"),
    path("<int:pk>/access/", views.connector_access, name="connector-access"),
    path("<int:pk>/datasets/new/", views.dataset_create, name="dataset-create"),
    path("<int:pk>/datasets/<int:dataset_pk>/", views.dataset_detail, name="dataset-detail"),
    path("<int:pk>/datasets/<int:dataset_pk>/sync/", views.dataset_sync, name="dataset-sync"),
    path("<int:pk>/datasets/<int:dataset_pk>/upload/", views.dataset_upload, name="dataset-upload"),
    path("<int:pk>/destinations/new/", views.destination_create, name="destination-create"),
    path("<int:pk>/destinations/<int:destination_pk>/", views.destination_detail, name="destination-detail"),
    path("api-keys/", views.api_key_create, name="api-key-create"),
    path("api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api-key-revoke"),
]
