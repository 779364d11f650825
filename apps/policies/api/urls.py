from django.urls import path

from . import views

urlpatterns = [
    path("policies", views.PolicyListView.as_view(), name="api-policy-list"),
    path("policies/<id:pk>", views.PolicyDetailView.as_view(), name="api-policy-detail"),
    path(
        "policies/<id:pk>/versions/<id:version_pk>",
        views.PolicyVersionDetailView.as_view(),
        name="api-policy-version-detail",
    ),
    path(
        "policies/<id:pk>/versions/<id:version_pk>/reviews",
        views.PolicyVersionReviewView.as_view(),
        name="api-policy-version-review",
    ),
]
