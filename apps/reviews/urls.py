from django.urls import path

from . import views

app_name = "reviews"

urlpatterns = [
    path("", views.queue_list, name="queue-list"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("queues/<id:pk>/", views.queue_detail, name="queue-detail"),
    path("queues/<id:pk>/next/", views.claim_next, name="claim-next"),
    path("queues/<id:pk>/bulk/", views.queue_bulk_decide, name="queue-bulk-decide"),
    path("tasks/<id:pk>/", views.task_detail, name="task-detail"),
    path("tasks/<id:pk>/decide/", views.task_decide, name="task-decide"),
    path("tasks/<id:pk>/similar/", views.task_similar, name="task-similar"),
    path("tasks/<id:pk>/renew/", views.task_renew, name="task-renew"),
    path("tasks/<id:pk>/take-over/", views.task_take_over, name="task-take-over"),
]
