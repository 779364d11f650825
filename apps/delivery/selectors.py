from datetime import timedelta

from django.db.models import QuerySet

from apps.connectors.models import Destination
from apps.core import clock
from apps.core.permissions import restrict
from apps.workflows.models import UseCase

from .models import Delivery


def deliveries_unsent(*, older_than: timedelta = timedelta(minutes=5)) -> list[int]:
    """Pending deliveries whose next attempt is overdue by `older_than`: their task was lost (the broker
    was down when the write committed, a purged queue, a worker gone for good). A task on time has its
    `next_attempt_at` ahead or just passed, so it is not sent twice."""
    cutoff = clock.now() - older_than
    unsent = Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lt=cutoff)
    return list(unsent.order_by("next_attempt_at").values_list("pk", flat=True)[:1000])


def delivery_list(*, user) -> QuerySet[Delivery]:
    """Deliveries of outputs of use cases the user may view."""
    return Delivery.objects.filter(recommendation__use_case__in=restrict(UseCase.objects.all(), user, "view_usecase"))


def delivery_get(*, user, pk: int) -> Delivery:
    """One visible delivery with what its row shows; DoesNotExist when not visible."""
    return delivery_list(user=user).select_related("destination", "recommendation__use_case").get(pk=pk)


def deliveries_failed_page(*, user, after: int | None = None, size: int = 25) -> tuple[list[Delivery], bool]:
    """Failed deliveries the user may see, newest first, keyset-paginated after the delivery id `after`
    (no COUNT). Returns the page and whether there is a next one."""
    rows = (
        delivery_list(user=user)
        .filter(status=Delivery.Status.FAILED)
        .select_related("destination", "recommendation__use_case")
    )
    if after is not None:
        rows = rows.filter(pk__lt=after)
    page = list(rows.order_by("-pk")[: size + 1])
    return page[:size], len(page) > size


def retryable_use_case_ids(*, user, deliveries: list[Delivery]) -> set[int]:
    """Of these deliveries' use cases, those on which the user may retry (run_usecase): one query."""
    ids = {delivery.recommendation.use_case_id for delivery in deliveries}
    allowed = restrict(UseCase.objects.filter(pk__in=ids), user, "run_usecase")
    return set(allowed.values_list("pk", flat=True))


def bi_destinations() -> QuerySet[Destination]:
    return Destination.objects.filter(kind=Destination.Kind.BI_TABLE).select_related("connector").order_by("pk")
