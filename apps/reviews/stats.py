"""Reviewer dashboard figures, aggregated in SQL over the queues the user may review or lead: one grouped query
per table (reviewers, use cases, rules), whatever the number of verdicts."""

import datetime as dt
import statistics

from django.db import connection
from django.db.models import Aggregate, Case, Count, F, FloatField, Q, QuerySet, Value, When

from apps.core.permissions import restrict

from .models import ReviewQueue, ReviewTask, ReviewVerdict

# Rows per table: a dashboard, not an export.
MAX_ROWS = 100
# Verdicts that clear an item (an escalation hands it on), and those that change what the AI proposed.
CLEARING = (ReviewVerdict.Decision.APPROVE, ReviewVerdict.Decision.EDIT, ReviewVerdict.Decision.REJECT)
OVERRIDES = (ReviewVerdict.Decision.EDIT, ReviewVerdict.Decision.REJECT)
SQLITE_MEDIAN = "DOORSTEP_MEDIAN"


class _SqliteMedian:
    """SQLite has no median: this aggregate runs inside SQLite (registered per connection), like AVG."""

    def __init__(self):
        self.values = []

    def step(self, value):
        if value is not None:
            self.values.append(value)

    def finalize(self):
        return statistics.median(self.values) if self.values else None


class Median(Aggregate):
    function = SQLITE_MEDIAN
    name = "Median"
    output_field = FloatField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler,
            connection,
            function="PERCENTILE_CONT",
            template="%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)",
            **extra_context,
        )


def _median_ready() -> None:
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        connection.connection.create_aggregate(SQLITE_MEDIAN, 1, _SqliteMedian)


def dashboard_queues(*, user) -> QuerySet[ReviewQueue]:
    """The queues whose figures the user may see: those they review or lead."""
    queues = ReviewQueue.objects.all()
    reviewed = restrict(queues, user, "review_reviewqueue").values("pk")
    led = restrict(queues, user, "lead_reviewqueue").values("pk")
    return queues.filter(Q(pk__in=reviewed) | Q(pk__in=led))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _verdicts(queue_ids: list[int], since: dt.datetime, until: dt.datetime) -> QuerySet[ReviewVerdict]:
    return ReviewVerdict.objects.filter(
        task__queue_id__in=queue_ids, created_at__gte=since, created_at__lt=until, decision__in=CLEARING
    )


def _verdict_figures(rows) -> list[dict]:
    for row in rows:
        row["sla_hit_rate"] = _share(row.pop("on_time"), row["cleared"])
        row["override_rate"] = _share(row["overrides"], row["cleared"])
    return rows


def reviewer_stats(*, queue_ids: list[int], since: dt.datetime, until: dt.datetime) -> list[dict]:
    """Per reviewer: items cleared (verdicts, consensus votes included), median seconds per item, SLA hit rate
    (verdict before the item's due time), override rate (edit or reject share)."""
    rows = (
        _verdicts(queue_ids, since, until)
        .values("reviewer_id", "reviewer__username")
        .annotate(
            cleared=Count("pk"),
            median_seconds=Median("seconds_spent"),
            on_time=Count("pk", filter=Q(created_at__lte=F("task__due_at"))),
            overrides=Count("pk", filter=Q(decision__in=OVERRIDES)),
        )
        .order_by("-cleared", "reviewer__username")[:MAX_ROWS]
    )
    return _verdict_figures(list(rows))


def use_case_stats(*, queue_ids: list[int], since: dt.datetime, until: dt.datetime) -> list[dict]:
    """Per use case: verdict figures as for reviewers; the SLA hit rate (decided before due) of the items
    decided in the range; the agreement rate of the consensus items decided in the range or, still undecided
    (a dispute waiting for a lead), that arrived in it."""
    name = "task__recommendation__use_case__name"
    verdict_rows = (
        _verdicts(queue_ids, since, until)
        .values(name)
        .annotate(
            cleared=Count("pk"),
            median_seconds=Median("seconds_spent"),
            on_time=Count("pk", filter=Q(created_at__lte=F("task__due_at"))),
            overrides=Count("pk", filter=Q(decision__in=OVERRIDES)),
        )
        .order_by(name)[:MAX_ROWS]
    )
    task_rows = (
        ReviewTask.objects.filter(queue_id__in=queue_ids)
        .filter(
            Q(decided_at__gte=since, decided_at__lt=until)
            | Q(decided_at__isnull=True, created_at__gte=since, created_at__lt=until)
        )
        .values(name=F("recommendation__use_case__name"))
        .annotate(
            decided=Count("pk", filter=Q(decided_at__isnull=False)),
            decided_on_time=Count("pk", filter=Q(decided_at__lte=F("due_at"))),
            consensus=Count("pk", filter=Q(agreed__isnull=False)),
            agreed_count=Count("pk", filter=Q(agreed=True)),
        )
        .order_by("name")[:MAX_ROWS]
    )
    empty = {"cleared": 0, "median_seconds": None, "overrides": 0, "sla_hit_rate": None, "override_rate": None}
    empty |= {"decided": 0, "decided_on_time": 0, "consensus": 0, "agreed_count": 0}
    rows: dict[str, dict] = {}
    for row in _verdict_figures(list(verdict_rows)):
        key = row.pop(name)
        rows[key] = empty | {"name": key} | row
    for row in task_rows:
        rows.setdefault(row["name"], empty | {"name": row["name"]}).update(row)
    for row in rows.values():
        row["task_sla_hit_rate"] = _share(row["decided_on_time"], row["decided"])
        row["agreement_rate"] = _share(row["agreed_count"], row["consensus"])
    return sorted(rows.values(), key=lambda row: row["name"])


def rule_stats(*, queue_ids: list[int], since: dt.datetime, until: dt.datetime) -> list[dict]:
    """Per rule that sent items to review (task.reasons): verdicts and override rate. The JSON list is
    unnested in SQL (jsonb_array_elements on PostgreSQL, json_each on SQLite) around the ORM's own
    permission-filtered query."""
    verdicts = (
        _verdicts(queue_ids, since, until)
        .annotate(
            rule_reasons=F("task__reasons"),
            overridden=Case(When(decision__in=OVERRIDES, then=Value(1)), default=Value(0)),
        )
        .values("rule_reasons", "overridden")
    )
    inner, params = verdicts.query.sql_with_params()
    if connection.vendor == "postgresql":
        rule = "reason.value ->> 'name'"
        source = f"({inner}) v CROSS JOIN LATERAL jsonb_array_elements(v.rule_reasons) AS reason(value)"
        only_lists = "jsonb_typeof(v.rule_reasons) = 'array'"
    else:
        rule = "json_extract(reason.value, '$.name')"
        source = f"({inner}) v, json_each(v.rule_reasons) AS reason"
        only_lists = "json_type(v.rule_reasons) = 'array'"
    sql = (
        f"SELECT {rule} AS rule, COUNT(*), SUM(v.overridden) FROM {source} "
        f"WHERE {only_lists} GROUP BY {rule} ORDER BY COUNT(*) DESC, {rule} LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, MAX_ROWS])
        rows = cursor.fetchall()
    return [
        {
            "name": name or "Unnamed rule",
            "cleared": cleared,
            "overrides": overrides or 0,
            "override_rate": _share(overrides or 0, cleared),
        }
        for name, cleared, overrides in rows
    ]


def dashboard(*, user, since: dt.datetime, until: dt.datetime) -> dict:
    """Everything the dashboard shows for `user` over [since, until)."""
    queues = list(dashboard_queues(user=user).order_by("name"))
    if not queues:
        return {"queues": [], "reviewers": [], "use_cases": [], "rules": [], "agreement": None}
    _median_ready()
    queue_ids = [queue.pk for queue in queues]
    use_cases = use_case_stats(queue_ids=queue_ids, since=since, until=until)
    consensus = sum(row.get("consensus", 0) for row in use_cases)
    return {
        "queues": queues,
        "reviewers": reviewer_stats(queue_ids=queue_ids, since=since, until=until),
        "use_cases": use_cases,
        "rules": rule_stats(queue_ids=queue_ids, since=since, until=until),
        "agreement": _share(sum(row.get("agreed_count", 0) for row in use_cases), consensus),
    }
