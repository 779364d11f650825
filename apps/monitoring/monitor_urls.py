"""/monitoring/: figures per use case and endpoint, alert rules, cost reconciliation."""

from django.urls import path

from . import views

app_name = "monitor"

urlpatterns = [
    path("", views.monitoring, name="overview"),
    path("rules/", views.rule_list, name="rule-list"),
    path("rules/new/", views.rule_edit, name="rule-create"),
    path("rules/<id:pk>/", views.rule_edit, name="rule-edit"),
    path("costs/", views.cost_list, name="cost-list"),
    path("costs/<id:pk>/", views.cost_detail, name="cost-detail"),
]
