"""Alert reads: only alerts about a connector or use case the user may see (superusers see all)."""

from collections import defaultdict

from django.db.models import Q, QuerySet

from apps.connectors.models import Connector
from apps.core.permissions import restrict
from apps.workflows.models import UseCase

from .models import Alert

PAGE_LIMIT = 200


def _visible(user) -> QuerySet[Alert]:
    alerts = Alert.objects.select_related("connector", "use_case", "acknowledged_by")
    if user.is_superuser:
        return alerts
    connectors = restrict(Connector.objects.all(), user, "view_connector").values("pk")
    use_cases = restrict(UseCase.objects.all(), user, "view_usecase").values("pk")
    return alerts.filter(Q(connector__in=connectors) | Q(use_case__in=use_cases))


def alert_list(*, user, resolved: bool = False) -> QuerySet[Alert]:
    """Unresolved alerts (or, with `resolved`, resolved ones), newest first, that `user` may see."""
    if resolved:
        return _visible(user).filter(status=Alert.Status.RESOLVED).order_by("-resolved_at", "-pk")
    return _visible(user).exclude(status=Alert.Status.RESOLVED).order_by("-opened_at", "-pk")


def alert_get(*, user, pk: int) -> Alert:
    """One alert the user may see, resolved or not; raises Alert.DoesNotExist otherwise."""
    return _visible(user).get(pk=pk)


def alert_history(alerts: list[Alert]) -> dict[int, list]:
    """History rows of the given alerts (one query), newest first, by alert id."""
    rows = defaultdict(list)
    history = Alert.history.filter(id__in=[a.pk for a in alerts]).select_related("history_user")
    for record in history.order_by("-history_date", "-history_id"):
        rows[record.id].append(record)
    return rows
