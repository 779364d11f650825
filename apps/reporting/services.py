"""Daily rollups: the only numbers the ROI view reads, recomputed exactly from the facts.

A rollup row is a pure function of recommendations, review verdicts and lifecycle events, so a
rebuild of any day range is idempotent and safe to repeat (the beat job rebuilds today and yesterday).
"""

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from apps.reviews.models import ReviewVerdict
from apps.workflows.models import Recommendation, RecommendationEvent

from .models import DailyRollup

# Lifecycle events counted per day, one per recommendation (a recommendation delivered to two
# destinations, or shown twice, counts once on that day).
EVENT_FIELDS = {
    RecommendationEvent.Type.DELIVERED: "delivered",
    RecommendationEvent.Type.SHOWN: "shown",
    RecommendationEvent.Type.ACCEPTED: "accepted",
    RecommendationEvent.Type.ACTED_ON: "acted_on",
}


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00, end+1 00:00) in the current time zone: the same days TruncDate reports."""
    tz = timezone.get_current_timezone()
    lower = dt.datetime.combine(start, dt.time.min, tzinfo=tz)
    upper = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    return lower, upper


def _as_date(value) -> dt.date:
    # TruncDate gives a date on every backend we support; keep strings (old SQLite drivers) safe too.
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _seconds(value) -> float:
    if value is None:
        return 0.0
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value) / 1_000_000  # a raw microsecond count


def rollup_compute(*, start: dt.date, end: dt.date, use_case_ids=None) -> dict[tuple[int, dt.date], dict]:
    """The rollup figures for every (use case, day) in [start, end] that had any activity.

    Five grouped queries for the whole range, whatever its length; days without activity are absent.
    """
    lower, upper = _bounds(start, end)
    rows: dict[tuple[int, dt.date], dict] = defaultdict(dict)

    def scoped(queryset, use_case_path):
        if use_case_ids is not None:
            queryset = queryset.filter(**{f"{use_case_path}__in": list(use_case_ids)})
        return queryset

    recommendations = (
        scoped(Recommendation.objects.filter(created_at__gte=lower, created_at__lt=upper), "use_case_id")
        .annotate(day=TruncDate("created_at"))
        .values("use_case_id", "day")
        .annotate(
            n=Count("pk"),
            blocked=Count("pk", filter=Q(status=Recommendation.Status.BLOCKED)),
            cost=Sum("cost"),
        )
        .order_by()
    )
    for r in recommendations:
        row = rows[(r["use_case_id"], _as_date(r["day"]))]
        row.update(recommendations=r["n"], blocked=r["blocked"], model_cost=r["cost"] or Decimal("0"))

    Decision = ReviewVerdict.Decision
    verdicts = (
        scoped(
            ReviewVerdict.objects.filter(created_at__gte=lower, created_at__lt=upper),
            "task__recommendation__use_case_id",
        )
        .annotate(day=TruncDate("created_at"), use_case_id=F("task__recommendation__use_case_id"))
        .values("use_case_id", "day")
        .annotate(
            n=Count("pk"),
            approved=Count("pk", filter=Q(decision=Decision.APPROVE)),
            edited=Count("pk", filter=Q(decision=Decision.EDIT)),
            rejected=Count("pk", filter=Q(decision=Decision.REJECT)),
            seconds=Sum("seconds_spent"),
        )
        .order_by()
    )
    for v in verdicts:
        row = rows[(v["use_case_id"], _as_date(v["day"]))]
        row.update(
            reviewed=v["n"],
            approved=v["approved"],
            edited=v["edited"],
            rejected=v["rejected"],
            review_seconds=float(v["seconds"] or 0),
        )

    events = (
        scoped(
            RecommendationEvent.objects.filter(type__in=list(EVENT_FIELDS), at__gte=lower, at__lt=upper),
            "recommendation__use_case_id",
        )
        .annotate(day=TruncDate("at"), use_case_id=F("recommendation__use_case_id"))
        .values("use_case_id", "day", "type")
        .annotate(n=Count("recommendation_id", distinct=True))
        .order_by()
    )
    for e in events:
        rows[(e["use_case_id"], _as_date(e["day"]))][EVENT_FIELDS[e["type"]]] = e["n"]

    # Cycle time: created → delivered (all destinations done), counted on the day it was delivered.
    cycles = (
        scoped(Recommendation.objects.filter(delivered_at__gte=lower, delivered_at__lt=upper), "use_case_id")
        .annotate(day=TruncDate("delivered_at"))
        .values("use_case_id", "day")
        .annotate(
            n=Count("pk"),
            total=Sum(ExpressionWrapper(F("delivered_at") - F("created_at"), output_field=DurationField())),
        )
        .order_by()
    )
    for c in cycles:
        row = rows[(c["use_case_id"], _as_date(c["day"]))]
        row.update(cycle_count=c["n"], cycle_seconds_total=max(0.0, _seconds(c["total"])))
    return dict(rows)


def rollup_rebuild(*, start: dt.date, end: dt.date, use_case_ids=None) -> int:
    """Replace the rollups of [start, end] (of the given use cases, or all) with an exact recomputation.

    One transaction: readers see the old rows or the new ones, never a half-built range. Only days
    with activity get a row. Returns the number of rows written. A system job: no permission check.
    """
    if end < start:
        raise ValueError("end is before start")
    figures = rollup_compute(start=start, end=end, use_case_ids=use_case_ids)
    new_rows = [
        DailyRollup(use_case_id=use_case_id, day=day, **values)
        for (use_case_id, day), values in sorted(figures.items())
    ]
    with transaction.atomic():
        stale = DailyRollup.objects.filter(day__gte=start, day__lte=end)
        if use_case_ids is not None:
            stale = stale.filter(use_case_id__in=list(use_case_ids))
        stale.delete()
        DailyRollup.objects.bulk_create(new_rows, batch_size=500)
    return len(new_rows)
