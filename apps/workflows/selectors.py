from datetime import timedelta

from django.db.models import QuerySet

from apps.core import clock
from apps.core.permissions import has_object_permission, restrict

from .models import Recommendation, Run, UseCase


def use_case_list(*, user) -> QuerySet[UseCase]:
    return restrict(UseCase.objects.all(), user, "view_usecase").select_related(
        "owner", "policy", "review_queue", "source_dataset", "model_endpoint", "fallback_endpoint"
    )


def use_case_by_slug(*, user, slug: str) -> UseCase | None:
    """One use case the user may view, loaded lean: the API's ingestion hot path looks it up per request."""
    use_case = UseCase.objects.select_related("review_queue").filter(slug=slug).first()
    return use_case if use_case is not None and has_object_permission(user, "view_usecase", use_case) else None


def recommendation_list(*, user) -> QuerySet[Recommendation]:
    """Recommendations of use cases the user may view."""
    return Recommendation.objects.filter(use_case__in=restrict(UseCase.objects.all(), user, "view_usecase"))


def recommendation_trace(*, user, pk: int) -> Recommendation:
    """One recommendation with everything its trace page shows; DoesNotExist when not visible."""
    return (
        recommendation_list(user=user)
        .select_related("use_case", "run__model_endpoint", "policy_version__policy", "policy_decision", "review_task")
        .prefetch_related("events", "run__context_snapshots", "deliveries__destination", "review_task__verdicts")
        .get(pk=pk)
    )


def run_list(*, user) -> QuerySet[Run]:
    return Run.objects.filter(use_case__in=restrict(UseCase.objects.all(), user, "view_usecase"))


def runs_unstarted(*, older_than: timedelta = timedelta(minutes=5)) -> list[int]:
    """Runs still pending a while after they were requested: their task was lost (see send_after_commit)."""
    cutoff = clock.now() - older_than
    pending = Run.objects.filter(status=Run.Status.PENDING, created_at__lt=cutoff)
    return list(pending.values_list("pk", flat=True)[:1000])


def use_case_changes(*, use_case: UseCase, limit: int = 20) -> list:
    """The use case's recorded changes that carry a reason (lifecycle moves, sampling overrides), newest first,
    each with the status before it so a page can show "from → to"."""
    records = list(
        use_case.history.select_related("history_user").order_by("-history_date", "-history_id")[: limit * 5]
    )
    changes = []
    for record, previous in zip(records, [*records[1:], None], strict=True):
        if record.history_change_reason:
            record.previous_status = UseCase.Status(previous.status).label if previous else None
            changes.append(record)
    return changes[:limit]
