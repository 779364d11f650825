"""Monitoring reads: alerts about a connector or use case the user may see (superusers see all), and the
figures of use cases and model endpoints over a window, aggregated in the database."""

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from django.db.models import Count, DecimalField, Exists, F, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from apps.connectors.models import Connector
from apps.core import clock
from apps.core.permissions import restrict
from apps.delivery.models import Delivery
from apps.reviews.models import ReviewTask
from apps.workflows.models import ContextSnapshot, RecommendationEvent, Run, UseCase

from .models import Alert, AlertRule, CostImport, CostImportLine, MonthlySpend

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


# --- Monitoring figures: a fixed handful of aggregate queries per page or rule sweep, never one per row. ---

WINDOWS = {
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
# Latency histogram bounds (ms): p50/p95 are read from cumulative counts per bound in the same aggregate
# query, interpolated inside the bucket (as Prometheus' histogram_quantile does), so they work on every
# database and cost no sort; above the last bound a percentile reads as that bound.
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


def monitored_use_cases(*, user) -> QuerySet[UseCase]:
    """The use cases whose figures `user` may see."""
    return restrict(UseCase.objects.all(), user, "view_usecase").order_by("name")


def _percentile(counts: list[int], total: int, share: float) -> float | None:
    if not total:
        return None
    rank = share * total
    lower, below = 0.0, 0
    for bound, count in zip(LATENCY_BOUNDS_MS, counts, strict=True):
        if count >= rank:
            inside = count - below
            return round(lower + (bound - lower) * ((rank - below) / inside if inside else 1), 1)
        lower, below = float(bound), count
    return float(LATENCY_BOUNDS_MS[-1])


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 2) if whole else None


def _run_figures(runs: QuerySet, group: str) -> dict:
    """Run figures per `group` (use_case or model_endpoint) in one aggregate query."""
    buckets = {f"le{i}": Count("pk", filter=Q(model_latency_ms__lte=b)) for i, b in enumerate(LATENCY_BOUNDS_MS)}
    rows = runs.values(group).annotate(
        runs=Count("pk"),
        finished=Count("pk", filter=Q(status__in=(Run.Status.SUCCEEDED, Run.Status.FAILED))),
        failed=Count("pk", filter=Q(status=Run.Status.FAILED)),
        called=Count("pk", filter=Q(model_latency_ms__isnull=False)),
        fallbacks=Count("pk", filter=Q(used_fallback=True)),
        cost=Coalesce(Sum("cost"), Decimal("0"), output_field=DecimalField()),
        tokens_in=Coalesce(Sum("tokens_in"), 0),
        tokens_out=Coalesce(Sum("tokens_out"), 0),
        **buckets,
    )
    figures = {}
    for row in rows:
        counts = [row.pop(f"le{i}") for i in range(len(LATENCY_BOUNDS_MS))]
        figures[row.pop(group)] = {
            **row,
            "error_rate": _rate(row["failed"], row["finished"]),
            "fallback_rate": _rate(row["fallbacks"], row["called"]),
            "latency_p50": _percentile(counts, row["called"], 0.5),
            "latency_p95": _percentile(counts, row["called"], 0.95),
        }
    return figures


def _counts(queryset: QuerySet, group: str) -> dict:
    return dict(queryset.values_list(group).annotate(n=Count("pk")).values_list(group, "n"))


def use_case_figures(*, use_case_ids: list[int], since: dt.datetime, until: dt.datetime) -> dict[int, dict]:
    """Every monitored signal of each use case over [since, until): run figures, review backlog (now) and SLA
    breaches (items due in the window and not decided in time), stale contexts, failed deliveries and the
    acceptance rate (accepted / shown). Seven aggregate queries whatever the number of rows."""
    runs = Run.objects.filter(use_case_id__in=use_case_ids, created_at__gte=since, created_at__lt=until)
    figures = {pk: {"runs": 0, "cost": Decimal("0")} for pk in use_case_ids}
    for pk, row in _run_figures(runs, "use_case").items():
        figures[pk].update(row)
    pending = ReviewTask.objects.filter(recommendation__use_case_id__in=use_case_ids).exclude(
        status=ReviewTask.Status.DECIDED
    )
    now = min(clock.now(), until)
    backlog = pending.values("recommendation__use_case").annotate(
        backlog=Count("pk"), overdue=Count("pk", filter=Q(due_at__lt=now))
    )
    for row in backlog:
        figures[row["recommendation__use_case"]].update(backlog=row["backlog"], overdue=row["overdue"])
    breached = ReviewTask.objects.filter(
        Q(decided_at__isnull=True) | Q(decided_at__gt=F("due_at")),
        recommendation__use_case_id__in=use_case_ids,
        due_at__gte=since,
        due_at__lt=now,
    )
    stale = ContextSnapshot.objects.filter(run__in=runs.values("pk"), freshness=ContextSnapshot.Freshness.STALE)
    failed = Delivery.objects.filter(
        recommendation__use_case_id__in=use_case_ids,
        status=Delivery.Status.FAILED,
        created_at__gte=since,
        created_at__lt=until,
    )
    for name, queryset, group in (
        ("sla_breaches", breached, "recommendation__use_case"),
        ("freshness_breaches", stale, "run__use_case"),
        ("delivery_failures", failed, "recommendation__use_case"),
    ):
        for pk, n in _counts(queryset, group).items():
            figures[pk][name] = n
    feedback = (
        RecommendationEvent.objects.filter(
            type__in=(RecommendationEvent.Type.SHOWN, RecommendationEvent.Type.ACCEPTED),
            at__gte=since,
            at__lt=until,
            recommendation__use_case_id__in=use_case_ids,
        )
        .values_list("recommendation__use_case", "type")
        .annotate(n=Count("pk"))
    )
    for pk, kind, n in feedback:
        figures[pk][kind] = n
    days = Decimal((until - since).total_seconds()) / 86400
    for row in figures.values():
        for name in ("backlog", "overdue", "sla_breaches", "freshness_breaches", "delivery_failures"):
            row.setdefault(name, 0)
        row["shown"], row["accepted"] = row.pop("shown", 0), row.pop("accepted", 0)
        row["acceptance_rate"] = _rate(row["accepted"], row["shown"])
        row["cost_per_day"] = (row["cost"] / days).quantize(Decimal("0.0001"))
    return figures


def endpoint_figures(
    *, since: dt.datetime, until: dt.datetime, use_case_ids: list[int] | None = None, connector_ids=None
) -> dict[int, dict]:
    """Run figures per model endpoint over [since, until), over the given use cases (all when None) and
    endpoints (all when None). One aggregate query."""
    runs = Run.objects.filter(created_at__gte=since, created_at__lt=until, model_endpoint__isnull=False)
    if use_case_ids is not None:
        runs = runs.filter(use_case_id__in=use_case_ids)
    if connector_ids is not None:
        runs = runs.filter(model_endpoint_id__in=connector_ids)
    return _run_figures(runs, "model_endpoint")


def daily_cost(*, use_case_ids: list[int], since: dt.datetime, until: dt.datetime) -> dict[dt.date, dict]:
    """Model cost per day and use case over the window: {day: {use_case_id: cost}}. One query."""
    rows = (
        Run.objects.filter(use_case_id__in=use_case_ids, created_at__gte=since, created_at__lt=until)
        .annotate(day=TruncDate("created_at"))
        .values_list("day", "use_case")
        .annotate(cost=Sum("cost"))
    )
    days = defaultdict(dict)
    for day, use_case_id, cost in rows:
        days[day][use_case_id] = cost
    return dict(sorted(days.items()))


def month_spend(*, use_case_ids: list[int], at: dt.datetime) -> dict[int, Decimal]:
    """This month's model cost so far per use case (the pipeline's running totals). One query."""
    month = timezone.localdate(at).replace(day=1)
    rows = MonthlySpend.objects.filter(use_case_id__in=use_case_ids, month=month).values_list("use_case_id", "cost")
    return dict(rows)


def alert_rule_list(*, user) -> QuerySet[AlertRule]:
    """Alert rules about a use case or model endpoint `user` may see."""
    rules = AlertRule.objects.select_related("use_case", "connector", "notify_webhook")
    if user.is_superuser:
        return rules
    connectors = restrict(Connector.objects.all(), user, "view_connector").values("pk")
    use_cases = restrict(UseCase.objects.all(), user, "view_usecase").values("pk")
    return rules.filter(Q(connector__in=connectors) | Q(use_case__in=use_cases))


def alert_rule_get(*, user, pk: int) -> AlertRule:
    """One rule `user` may see; raises AlertRule.DoesNotExist otherwise."""
    return alert_rule_list(user=user).get(pk=pk)


def alert_rule_history(rule: AlertRule, limit: int = 20) -> list:
    return list(rule.history.select_related("history_user").order_by("-history_date", "-history_id")[:limit])


def _endpoints_seen(user) -> QuerySet:
    return restrict(Connector.objects.filter(kind__in=Connector.MODEL_KINDS), user, "view_connector").values("pk")


def cost_import_list(*, user) -> QuerySet[CostImport]:
    """Imports with at least one line on a model endpoint `user` may see, newest first."""
    lines = CostImportLine.objects.filter(cost_import=OuterRef("pk"), connector__in=_endpoints_seen(user))
    return CostImport.objects.filter(Exists(lines)).select_related("uploaded_by").order_by("-uploaded_at", "-pk")


def cost_import_get(*, user, pk: int) -> tuple[CostImport, list[CostImportLine]]:
    """One import and its lines on the endpoints `user` may see; raises CostImport.DoesNotExist otherwise."""
    cost_import = cost_import_list(user=user).get(pk=pk)
    lines = cost_import.lines.filter(connector__in=_endpoints_seen(user)).select_related("connector")
    return cost_import, list(lines.order_by("day", "connector__name"))
