from datetime import datetime

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


def claimable(now: datetime, *, user=None) -> Q:
    """Tasks nobody holds: open, or claimed with an expired lease (and, given `user`, their own claims)."""
    condition = Q(status=ReviewTask.Status.OPEN) | Q(status=ReviewTask.Status.CLAIMED, lease_expires_at__lt=now)
    if user is not None:
        condition |= Q(status=ReviewTask.Status.CLAIMED, claimed_by=user)
    return condition


def _after(priority: int, created_at: datetime, pk: int) -> Q:
    """Keyset condition: the rows after (priority, created_at, pk) in the order (-priority, created_at, pk)."""
    return (
        Q(priority__lt=priority)
        | Q(priority=priority, created_at__gt=created_at)
        | Q(priority=priority, created_at=created_at, pk__gt=pk)
    )


def task_page(*, user, queue: ReviewQueue, after: tuple | None, size: int) -> tuple[list[ReviewTask], bool]:
    """One keyset page of a queue's pending tasks after the position `after`, and whether more follow
    (no COUNT of the tasks, PITFALLS #4)."""
    tasks = task_list(user=user, queue=queue, status="pending")
    if after is not None:
        tasks = tasks.filter(_after(*after))
    page = list(tasks[: size + 1])
    return page[:size], len(page) > size


def task_after(*, user, task: ReviewTask) -> ReviewTask | None:
    """The next task of the same queue the user may take, after `task` in queue order, wrapping round."""
    candidates = (
        task_list(user=user, queue=task.queue, status="pending")
        .exclude(pk=task.pk)
        .filter(claimable(clock.now(), user=user))
    )
    return candidates.filter(_after(task.priority, task.created_at, task.pk)).first() or candidates.first()
