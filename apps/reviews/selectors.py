from django.db.models import Count, Min, Q, QuerySet

from apps.core import clock
from apps.core.permissions import restrict

from .models import ReviewQueue, ReviewTask


def queue_list(*, user) -> QuerySet[ReviewQueue]:
    """Queues the user may review, with open counts, oldest open item and overdue count."""
    now = clock.now()
    pending = Q(tasks__status__in=[ReviewTask.Status.OPEN, ReviewTask.Status.CLAIMED])
    return restrict(ReviewQueue.objects.all(), user, "review_reviewqueue").annotate(
        pending_count=Count("tasks", filter=pending),
        oldest_pending=Min("tasks__created_at", filter=pending),
        overdue_count=Count("tasks", filter=pending & Q(tasks__due_at__lt=now)),
    )


def task_list(*, user, queue: ReviewQueue | None = None, status: str | None = None) -> QuerySet[ReviewTask]:
    queues = restrict(ReviewQueue.objects.all(), user, "review_reviewqueue")
    tasks = ReviewTask.objects.filter(queue__in=queues).select_related(
        "queue", "claimed_by", "recommendation__use_case"
    )
    if queue is not None:
        tasks = tasks.filter(queue=queue)
    if status == "pending":
        tasks = tasks.filter(status__in=[ReviewTask.Status.OPEN, ReviewTask.Status.CLAIMED])
    elif status:
        tasks = tasks.filter(status=status)
    return tasks.order_by("-priority", "created_at", "pk")


def task_get(*, user, pk: int) -> ReviewTask:
    """One task the user may review; ReviewTask.DoesNotExist otherwise (a guessed id finds nothing)."""
    return (
        task_list(user=user)
        .select_related(
            "recommendation__run", "recommendation__policy_decision", "recommendation__policy_version__policy"
        )
        .get(pk=pk)
    )
