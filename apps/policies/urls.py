from django.urls import path

from . import views

app_name = "policies"

urlpatterns = [
    path("", views.policy_list, name="policy-list"),
    path("<int:pk>/", views.policy_detail, name="policy-detail"),
    path("<int:pk>/versions/<int:version_pk>/review/", views.policy_version_review, name="policy-version-review"),
    path("<int:pk>/rule-test/", views.rule_test, name="rule-test"),
]
