from django.urls import path

from . import views

urlpatterns = [
    path("review-tasks", views.ReviewTaskListView.as_view(), name="api-review-task-list"),
    path("review-tasks/<id:pk>", views.ReviewTaskDetailView.as_view(), name="api-review-task-detail"),
    path("review-tasks/<id:pk>/decision", views.ReviewTaskDecisionView.as_view(), name="api-review-task-decision"),
]
urlpatterns += [
    path("approvals", views.ApprovalCreateView.as_view(), name="api-approval-list"),
    path("approvals/<uuid:public_id>", views.ApprovalDetailView.as_view(), name="api-approval-detail"),
]
