from django.urls import path

from . import views

app_name = "connectors"

urlpatterns = [
    path("", views.connector_list, name="connector-list"),
    path("new/", views.connector_create, name="connector-create"),
    path("<id:pk>/", views.connector_detail, name="connector-detail"),
    path("<id:pk>/edit/", views.connector_edit, name="connector-edit"),
    path("<id:pk>/test/", views.connector_test, name="connector-test"),
    path("<id:pk>/browse/", views.connector_browse, name="connector-browse"),
    path("<id:pk>/access/", views.connector_access, name="connector-access"),
    path("<id:pk>/datasets/new/", views.dataset_create, name="dataset-create"),
    path("<id:pk>/datasets/<id:dataset_pk>/", views.dataset_detail, name="dataset-detail"),
    path("<id:pk>/datasets/<id:dataset_pk>/sync/", views.dataset_sync, name="dataset-sync"),
    path("<id:pk>/datasets/<id:dataset_pk>/upload/", views.dataset_upload, name="dataset-upload"),
    path("<id:pk>/destinations/new/", views.destination_create, name="destination-create"),
    path("<id:pk>/destinations/<id:destination_pk>/", views.destination_detail, name="destination-detail"),
    path("api-keys/", views.api_key_create, name="api-key-create"),
    path("api-keys/<id:pk>/revoke/", views.api_key_revoke, name="api-key-revoke"),
]
