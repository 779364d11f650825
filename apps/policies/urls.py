from django.urls import path

from . import replay_views, views

app_name = "policies"

urlpatterns = [
    path("", views.policy_list, name="policy-list"),
    path("<id:pk>/", views.policy_detail, name="policy-detail"),
    path("<id:pk>/requirements/", views.policy_requirements, name="policy-requirements"),
    path("<id:pk>/versions/new/", views.policy_version_new, name="policy-version-new"),
    path("<id:pk>/versions/<id:version_pk>/", views.policy_version_detail, name="policy-version-detail"),
    path("<id:pk>/versions/<id:version_pk>/diff/", views.policy_version_diff, name="policy-version-diff"),
    path("<id:pk>/versions/<id:version_pk>/review/", views.policy_version_review, name="policy-version-review"),
    path("<id:pk>/versions/<id:version_pk>/submit/", views.policy_version_submit, name="policy-version-submit"),
    path("<id:pk>/versions/<id:version_pk>/activate/", views.policy_version_activate, name="policy-version-activate"),
    path("<id:pk>/versions/<id:version_pk>/schedule/", views.policy_version_schedule, name="policy-version-schedule"),
    path(
        "<id:pk>/versions/<id:version_pk>/emergency/",
        views.policy_version_emergency,
        name="policy-version-emergency",
    ),
    path("<id:pk>/rule-test/", views.rule_test, name="rule-test"),
    path("<id:pk>/versions/<id:version_pk>/replay/", replay_views.policy_version_replay, name="policy-version-replay"),
]
