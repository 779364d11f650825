from django.urls import path

from . import views

app_name = "reviews"

urlpatterns = [
    path("", views.queue_list, name="queue-list"),
    path("queues/<int:pk>/", views.queue_detail, name="queue-detail"),
    path("queues/<int:pk>/next/", views.claim_next, name="claim-next"),
    path("tasks/<int:pk>/", views.task_detail, name="task-detail"),
    path("tasks/<int:pk>/decide/", views.task_decide, name="task-decide"),
]
