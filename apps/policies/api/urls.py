from django.urls import path

from . import views

urlpatterns = [
    path("policies", views.PolicyListView.as_view(), name="api-policy-list"),
    path("policies/<int:pk>", views.PolicyDetailView.as_view(), name="api-policy-detail"),
    path(
        "policies/<int:pk>/versions/<int:version_pk>",
        views.PolicyVersionDetailView.as_view(),
        name="api-policy-version-detail",
    ),
    path(
        "policies/<int:pk>/versions/<int:version_pk>/reviews",
        views.PolicyVersionReviewView.as_view(),
        name="api-policy-version-review",
    ),
]
