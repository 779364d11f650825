"""Rollups: the only numbers the ROI view reads, recomputed exactly from the facts.

A rollup row is a pure function of recommendations, review verdicts and lifecycle events (and, for the lift
rows, held-out runs and business outcomes), so recomputing any bucket is idempotent and safe to repeat. Two
ways in: `rollup_rebuild` recomputes a whole day range (the command), `rollup_refresh` recomputes only the
hours, days and subjects touched by facts written since its last run (Celery beat), found through a
primary-key watermark per fact table.
"""

import datetime as dt
from bisect import bisect_left, bisect_right
from collections import defaultdict
from decimal import Decimal
from functools import reduce
from operator import or_

from django.db import transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Max, Min, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, TruncDate, TruncHour
from django.utils import timezone

from apps.core import clock
from apps.reviews.models import ReviewVerdict
from apps.workflows.models import Recommendation, RecommendationEvent, Run

from .lift import DEFAULT_POSITIVE_KINDS
from .models import BusinessOutcome, DailyRollup, HourlyRollup, LiftSubjectDay, RejectionRollup, RollupWatermark

# Lifecycle events counted per bucket, one per recommendation (a recommendation delivered to two
# destinations, or shown twice, counts once in that hour and once on that day).
EVENT_FIELDS = {
    RecommendationEvent.Type.DELIVERED: "delivered",
    RecommendationEvent.Type.SHOWN: "shown",
    RecommendationEvent.Type.ACCEPTED: "accepted",
    RecommendationEvent.Type.ACTED_ON: "acted_on",
}
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
REASON_LENGTH = 80
NO_REASON = "(no reason given)"

# A window: [lower, upper) of time, and the use cases it covers (None: all).
Window = tuple[dt.datetime, dt.datetime, frozenset | None]


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00, end+1 00:00) in the current time zone: the same days TruncDate reports."""
    tz = timezone.get_current_timezone()
    lower = dt.datetime.combine(start, dt.time.min, tzinfo=tz)
    upper = dt.datetime.combine(end + DAY, dt.time.min, tzinfo=tz)
    return lower, upper


def _as_date(value) -> dt.date:
    # TruncDate gives a date on every backend we support; keep strings (old SQLite drivers) safe too.
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _as_hour(value) -> dt.datetime:
    value = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return value if timezone.is_aware(value) else timezone.make_aware(value)


def _seconds(value) -> float:
    if value is None:
        return 0.0
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value) / 1_000_000  # a raw microsecond count


def _within(windows: list[Window], time_path: str, use_case_path: str) -> Q:
    """Facts whose time lies in one of the windows, for that window's use cases."""

    def one(window: Window) -> Q:
        lower, upper, use_case_ids = window
        q = Q(**{f"{time_path}__gte": lower, f"{time_path}__lt": upper})
        if use_case_ids is not None:
            q &= Q(**{f"{use_case_path}__in": sorted(use_case_ids)})
        return q

    return reduce(or_, (one(window) for window in windows))


def _compute(windows: list[Window], hourly: bool) -> dict[tuple, dict]:
    """The figures of every (use case, day or hour) with activity inside the windows, keyed by
    (use_case_id, day) or (use_case_id, hour). Four grouped queries, whatever the windows."""
    trunc, key_of = (TruncHour, _as_hour) if hourly else (TruncDate, _as_date)
    rows: dict[tuple, dict] = defaultdict(dict)
    if not windows:
        return {}

    recommendations = (
        Recommendation.objects.filter(_within(windows, "created_at", "use_case_id"))
        .annotate(bucket=trunc("created_at"))
        .values("use_case_id", "bucket")
        .annotate(
            n=Count("pk"),
            blocked=Count("pk", filter=Q(status=Recommendation.Status.BLOCKED)),
            cost=Sum("cost"),
        )
        .order_by()
    )
    for r in recommendations:
        row = rows[(r["use_case_id"], key_of(r["bucket"]))]
        row.update(recommendations=r["n"], blocked=r["blocked"], model_cost=r["cost"] or Decimal("0"))

    Decision = ReviewVerdict.Decision
    verdicts = (
        ReviewVerdict.objects.filter(_within(windows, "created_at", "task__recommendation__use_case_id"))
        .annotate(bucket=trunc("created_at"), use_case_id=F("task__recommendation__use_case_id"))
        .values("use_case_id", "bucket")
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
        row = rows[(v["use_case_id"], key_of(v["bucket"]))]
        row.update(
            reviewed=v["n"],
            approved=v["approved"],
            edited=v["edited"],
            rejected=v["rejected"],
            review_seconds=float(v["seconds"] or 0),
        )

    events = (
        RecommendationEvent.objects.filter(type__in=list(EVENT_FIELDS))
        .filter(_within(windows, "at", "recommendation__use_case_id"))
        .annotate(bucket=trunc("at"), use_case_id=F("recommendation__use_case_id"))
        .values("use_case_id", "bucket", "type")
        .annotate(n=Count("recommendation_id", distinct=True))
        .order_by()
    )
    for e in events:
        rows[(e["use_case_id"], key_of(e["bucket"]))][EVENT_FIELDS[e["type"]]] = e["n"]

    # Cycle time: created → delivered (all destinations done), counted when it was delivered.
    cycles = (
        Recommendation.objects.filter(_within(windows, "delivered_at", "use_case_id"))
        .annotate(bucket=trunc("delivered_at"))
        .values("use_case_id", "bucket")
        .annotate(
            n=Count("pk"),
            total=Sum(ExpressionWrapper(F("delivered_at") - F("created_at"), output_field=DurationField())),
        )
        .order_by()
    )
    for c in cycles:
        row = rows[(c["use_case_id"], key_of(c["bucket"]))]
        row.update(cycle_count=c["n"], cycle_seconds_total=max(0.0, _seconds(c["total"])))
    return dict(rows)


def _compute_rejections(windows: list[Window]) -> dict[tuple, int]:
    """Rejection counts keyed by (use_case_id, day, source, reason) inside the windows (day windows)."""
    counts: dict[tuple, int] = defaultdict(int)
    if not windows:
        return {}
    verdicts = (
        ReviewVerdict.objects.filter(decision=ReviewVerdict.Decision.REJECT)
        .filter(_within(windows, "created_at", "task__recommendation__use_case_id"))
        .annotate(day=TruncDate("created_at"), use_case_id=F("task__recommendation__use_case_id"))
        .values("use_case_id", "day", "reason_code")
        .annotate(n=Count("pk"))
        .order_by()
    )
    labels = dict(ReviewVerdict.Reason.choices)
    for v in verdicts:
        reason = labels.get(v["reason_code"], v["reason_code"]) or NO_REASON
        counts[(v["use_case_id"], _as_date(v["day"]), RejectionRollup.Source.REVIEW, reason)] += v["n"]
    feedback = (
        RecommendationEvent.objects.filter(type=RecommendationEvent.Type.FEEDBACK_REJECTED)
        .filter(_within(windows, "at", "recommendation__use_case_id"))
        .annotate(
            day=TruncDate("at"),
            use_case_id=F("recommendation__use_case_id"),
            reason=KeyTextTransform("reason", "payload"),
        )
        .values("use_case_id", "day", "reason")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for e in feedback:
        # Free text from the business app: trimmed, so two long reasons that start alike count together.
        reason = " ".join(str(e["reason"] or "").split())[:REASON_LENGTH] or NO_REASON
        counts[(e["use_case_id"], _as_date(e["day"]), RejectionRollup.Source.FEEDBACK, reason)] += e["n"]
    return dict(counts)


def rollup_compute(*, start: dt.date, end: dt.date, use_case_ids=None) -> dict[tuple[int, dt.date], dict]:
    """The daily figures for every (use case, day) in [start, end] that had any activity; days without
    activity are absent. Four grouped queries for the whole range, whatever its length."""
    lower, upper = _bounds(start, end)
    return _compute([(lower, upper, None if use_case_ids is None else frozenset(use_case_ids))], hourly=False)


def _replace(day_windows: list[Window], hour_windows: list[Window]) -> int:
    """Recompute the daily and rejection rows inside day-aligned `day_windows` and the hourly rows inside
    `hour_windows`, and swap them in, in one transaction: readers see the old rows or the new ones, never a
    half-built range."""
    daily = _compute(day_windows, hourly=False)
    hourly = _compute(hour_windows, hourly=True)
    rejections = _compute_rejections(day_windows)
    with transaction.atomic():
        for model, time_path, windows in (
            (DailyRollup, "day", day_windows),
            (HourlyRollup, "hour", hour_windows),
            (RejectionRollup, "day", day_windows),
        ):
            if not windows:
                continue
            stale = Q()
            for lower, upper, use_case_ids in windows:
                if time_path == "day":
                    q = Q(day__gte=timezone.localdate(lower), day__lt=timezone.localdate(upper))
                else:
                    q = Q(hour__gte=lower, hour__lt=upper)
                if use_case_ids is not None:
                    q &= Q(use_case_id__in=sorted(use_case_ids))
                stale |= q
            model.objects.filter(stale).delete()
        DailyRollup.objects.bulk_create(
            [DailyRollup(use_case_id=u, day=day, **values) for (u, day), values in sorted(daily.items())],
            batch_size=500,
        )
        HourlyRollup.objects.bulk_create(
            [HourlyRollup(use_case_id=u, hour=hour, **values) for (u, hour), values in sorted(hourly.items())],
            batch_size=500,
        )
        RejectionRollup.objects.bulk_create(
            [
                RejectionRollup(use_case_id=u, day=day, source=source, reason=reason, count=n)
                for (u, day, source, reason), n in sorted(rejections.items())
            ],
            batch_size=500,
        )
    return len(daily)


def rollup_rebuild(*, start: dt.date, end: dt.date, use_case_ids=None) -> int:
    """Replace the daily and hourly rollups, rejection counts and lift rows of [start, end] (of the given use
    cases, or all) with an exact recomputation; the lift rows of the same subjects on other days get their
    outcomes and day pointers recomputed too. Returns the number of daily rows written. A system job: no
    permission check."""
    if end < start:
        raise ValueError("end is before start")
    lower, upper = _bounds(start, end)
    windows = [(lower, upper, None if use_case_ids is None else frozenset(use_case_ids))]
    written = _replace(windows, windows)
    _lift_rebuild(windows)
    return written


# -- the lift rows -----------------------------------------------------------------------------------

SUBJECT_CHUNK = 2000  # subject keys (or row ids) per IN list
# What a lift row holds besides its key (use case, subject, day, holdout), in the order compared.
LIFT_FIGURES = ("triggered_at", "cycle_hours", "won", "previous_day", "other_before", "other_after")
TREATED_TRIGGER = Coalesce(F("run__created_at"), F("created_at"))  # the run's request, else the output's creation


def _subject_filters(subjects: set[tuple[int, str]]):
    """Conditions for up to SUBJECT_CHUNK (use case, subject) pairs each: index ranges of (use case, subject)."""
    ordered = sorted(subjects)
    for n in range(0, len(ordered), SUBJECT_CHUNK):
        by_use_case: dict[int, list[str]] = defaultdict(list)
        for use_case_id, subject_key in ordered[n : n + SUBJECT_CHUNK]:
            by_use_case[use_case_id].append(subject_key)
        yield reduce(or_, (Q(use_case_id=u, subject_key__in=keys) for u, keys in by_use_case.items()))


def _first_triggers(treated, held_out) -> dict[tuple, dt.datetime]:
    """The first trigger of each (use case, subject, day, holdout) among the recommendations `treated` and the
    runs `held_out` (querysets, narrowed by the caller)."""
    triggers: dict[tuple, dt.datetime] = {}
    for holdout, rows in (
        (False, treated.annotate(triggered=TREATED_TRIGGER)),
        (True, held_out.filter(status=Run.Status.HELD_OUT).annotate(triggered=F("created_at"))),
    ):
        grouped = (
            rows.annotate(day=TruncDate("triggered"))
            .values_list("use_case_id", "subject_key", "day")
            .annotate(first=Min("triggered"))
            .order_by()
        )
        for use_case_id, subject_key, day, first in grouped:
            triggers[(use_case_id, subject_key, _as_date(day), holdout)] = first
    return triggers


def _lift_outcomes(subjects: set[tuple[int, str]]) -> dict[tuple[int, str], tuple[list, dt.datetime | None]]:
    """Per (use case, subject): the times of its outcomes in order, and the time of its latest positive one."""
    times: dict[tuple[int, str], list] = defaultdict(list)
    latest_win: dict[tuple[int, str], dt.datetime] = {}
    positive = set(DEFAULT_POSITIVE_KINDS)
    for condition in _subject_filters(subjects):
        rows = BusinessOutcome.objects.filter(condition).values_list(
            "use_case_id", "subject_key", "occurred_at", "kind"
        )
        for use_case_id, subject_key, occurred_at, kind in rows:
            key = (use_case_id, subject_key)
            times[key].append(occurred_at)
            if kind in positive and (key not in latest_win or occurred_at > latest_win[key]):
                latest_win[key] = occurred_at
    return {key: (sorted(found), latest_win.get(key)) for key, found in times.items()}


def _lift_figures(triggers: dict[tuple, dt.datetime], outcomes: dict):
    """(key, figures in LIFT_FIGURES order) of every row of whole subjects (each of their trigger days in
    `triggers`): what followed the trigger, and the day pointers between the subject's rows."""
    days: dict[tuple[int, str], dict[bool, list]] = defaultdict(lambda: {False: [], True: []})
    for use_case_id, subject_key, day, holdout in triggers:
        days[(use_case_id, subject_key)][holdout].append(day)
    for groups in days.values():
        groups[False].sort()
        groups[True].sort()
    for key, triggered_at in triggers.items():
        use_case_id, subject_key, day, holdout = key
        own, other = days[(use_case_id, subject_key)][holdout], days[(use_case_id, subject_key)][not holdout]
        mine, before, after = bisect_left(own, day), bisect_right(other, day), bisect_left(other, day)
        times, latest_win = outcomes.get((use_case_id, subject_key), ((), None))
        first = bisect_left(times, triggered_at)
        yield (
            key,
            (
                triggered_at,
                (times[first] - triggered_at).total_seconds() / 3600 if first < len(times) else None,
                latest_win is not None and latest_win >= triggered_at,
                own[mine - 1] if mine else None,
                other[before - 1] if before else None,
                other[after] if after < len(other) else None,
            ),
        )


def _days_within(windows: list[Window]) -> Q:
    """Rows whose day lies in one of the day-aligned windows, for that window's use cases."""

    def one(window: Window) -> Q:
        lower, upper, use_case_ids = window
        q = Q(day__gte=timezone.localdate(lower), day__lt=timezone.localdate(upper))
        return q if use_case_ids is None else q & Q(use_case_id__in=sorted(use_case_ids))

    return reduce(or_, (one(window) for window in windows))


def _in_windows(use_case_id: int, day: dt.date, windows: list[Window]) -> bool:
    return any(
        timezone.localdate(lower) <= day < timezone.localdate(upper) and (ids is None or use_case_id in ids)
        for lower, upper, ids in windows
    )


def _lift_update(*, subjects: set[tuple[int, str]], triggers: dict[tuple, dt.datetime], windows: list[Window]) -> int:
    """Recompute every lift row of `subjects` ((use case, subject) pairs): their trigger days are `triggers`
    (first triggers from the facts), the stored rows' inside `windows` replaced by them, elsewhere merged with
    them (the earlier trigger wins: facts are only added). Then what followed each trigger and the day pointers
    from their outcomes and rows. Only rows that differ are written, in one transaction. Returns how many."""
    stored: dict[tuple, tuple] = {}
    for condition in _subject_filters(subjects):
        rows = LiftSubjectDay.objects.filter(condition).values_list(
            "pk", "use_case_id", "subject_key", "day", "holdout", *LIFT_FIGURES
        )
        for pk, use_case_id, subject_key, day, holdout, *figures in rows:
            key = (use_case_id, subject_key, day, holdout)
            stored[key] = (pk, tuple(figures))
            if not _in_windows(use_case_id, day, windows):
                triggers[key] = min(triggers.get(key, figures[0]), figures[0])
    fresh, replaced = [], []
    for key, figures in _lift_figures(triggers, _lift_outcomes(subjects)):
        pk, before = stored.get(key, (None, None))
        if figures != before:
            use_case_id, subject_key, day, holdout = key
            values = dict(zip(LIFT_FIGURES, figures, strict=True))
            fresh.append(
                LiftSubjectDay(use_case_id=use_case_id, subject_key=subject_key, day=day, holdout=holdout, **values)
            )
            if pk is not None:
                replaced.append(pk)
    stale = replaced + [pk for key, (pk, _) in stored.items() if key not in triggers]
    with transaction.atomic():
        for n in range(0, len(stale), SUBJECT_CHUNK):
            LiftSubjectDay.objects.filter(pk__in=stale[n : n + SUBJECT_CHUNK]).delete()
        LiftSubjectDay.objects.bulk_create(fresh, batch_size=1000)
    return len(fresh) + len(stale) - len(replaced)


def _lift_rebuild(windows: list[Window]) -> int:
    """The lift rows inside the day windows recomputed from the facts, and every other row of the subjects
    concerned (triggered there now, or stored there before) brought in line: outcomes and day pointers."""
    lowest = min(lower for lower, _, _ in windows)
    triggers = _first_triggers(
        # A run is requested before its recommendation exists: created_at >= lowest keeps the read an index range.
        Recommendation.objects.annotate(triggered=TREATED_TRIGGER).filter(
            _within(windows, "triggered", "use_case_id"), created_at__gte=lowest
        ),
        Run.objects.filter(_within(windows, "created_at", "use_case_id")),
    )
    stored_there = LiftSubjectDay.objects.filter(_days_within(windows))
    subjects = {(use_case_id, subject_key) for use_case_id, subject_key, _, _ in triggers}
    subjects |= set(stored_there.values_list("use_case_id", "subject_key").distinct().order_by())
    return _lift_update(subjects=subjects, triggers=triggers, windows=windows)


# -- incremental refresh -----------------------------------------------------------------------------

# Each fact table, and the times of a new row that it changes rollups at. An event also stands for the
# update to its recommendation that came with it (delivered_at and status are set with an event).
SOURCES = {
    "recommendation": (Recommendation, "use_case_id", ("created_at",)),
    "verdict": (ReviewVerdict, "task__recommendation__use_case_id", ("created_at",)),
    "event": (
        RecommendationEvent,
        "recommendation__use_case_id",
        ("at", "recommendation__created_at", "recommendation__delivered_at"),
    ),
}


def _touched_hours(model, use_case_path: str, time_paths, *, after: int, through: int) -> set[tuple]:
    """(use case, start of the hour) of every time the rows with after < pk <= through carry: one query."""
    hours = {f"hour_{n}": TruncHour(path) for n, path in enumerate(time_paths)}
    rows = (
        model.objects.filter(pk__gt=after, pk__lte=through)
        .annotate(use_case_id_=F(use_case_path), **hours)
        .values_list("use_case_id_", *hours)
        .distinct()
        .order_by()
    )
    return {(row[0], _as_hour(hour)) for row in rows for hour in row[1:] if hour is not None}


def _merged(buckets: list[Window]) -> list[Window]:
    """Adjacent buckets of the same use cases as one window, so a long run of days is one condition."""
    windows: list[Window] = []
    for lower, upper, ids in sorted(buckets, key=lambda bucket: bucket[0]):
        if windows and windows[-1][1] == lower and windows[-1][2] == ids:
            windows[-1] = (windows[-1][0], upper, ids)
        else:
            windows.append((lower, upper, ids))
    return windows


def _windows(touched: set[tuple]) -> tuple[list[Window], list[Window]]:
    """The day windows and the hour windows that cover the touched (use case, hour) buckets."""
    by_day: dict[dt.date, set[int]] = defaultdict(set)
    by_hour: dict[dt.datetime, set[int]] = defaultdict(set)
    for use_case_id, hour in touched:
        by_day[timezone.localdate(hour)].add(use_case_id)
        by_hour[hour].add(use_case_id)
    days = [(*_bounds(day, day), frozenset(ids)) for day, ids in by_day.items()]
    hours = [(hour, hour + HOUR, frozenset(ids)) for hour, ids in by_hour.items()]
    return _merged(days), _merged(hours)


# The fact tables read by watermark: those above, and those only the lift rows read (a new run of any status
# touches its day, as run_execute may turn a run held out soon after it was requested).
WATERMARKED = {**{source: model for source, (model, _, _) in SOURCES.items()}, "run": Run, "outcome": BusinessOutcome}


def _lift_refresh(new: dict[str, tuple[int, int]]) -> int:
    """Bring the lift rows in line with new recommendations, runs and outcomes: the first triggers among the
    new facts merged into their subjects' rows, and every row of a subject with a new outcome recomputed (an
    outcome, even a late or backdated one, may follow any earlier trigger of its subject)."""

    def new_rows(source: str, model):
        after, through = new.get(source, (0, 0))
        return model.objects.filter(pk__gt=after, pk__lte=through)

    triggers = _first_triggers(new_rows("recommendation", Recommendation), new_rows("run", Run))
    subjects = {(use_case_id, subject_key) for use_case_id, subject_key, _, _ in triggers}
    if "outcome" in new:
        outcomes = new_rows("outcome", BusinessOutcome).values_list("use_case_id", "subject_key")
        subjects |= set(outcomes.distinct().order_by())
    return _lift_update(subjects=subjects, triggers=triggers, windows=[]) if subjects else 0


def rollup_refresh() -> int:
    """Recompute only the rollups that facts written since the last refresh touch (daily rows and rejection
    counts of those days, hourly rows of those hours, lift rows of the subjects triggered on those days or
    with new outcomes), then move the watermarks. Returns the number of (use case, hour) buckets touched.
    Idempotent; concurrent refreshes queue on the watermark rows (on PostgreSQL). A system job: no
    permission check."""
    with transaction.atomic():
        marks = {
            mark.source: mark
            for mark in RollupWatermark.objects.select_for_update()
            .filter(source__in=list(WATERMARKED))
            .order_by("source")
        }
        for source in WATERMARKED:
            if source not in marks:
                marks[source], _ = RollupWatermark.objects.get_or_create(source=source)
        highest = {source: model.objects.aggregate(top=Max("pk"))["top"] or 0 for source, model in WATERMARKED.items()}
        new = {source: (marks[source].safe_id, top) for source, top in highest.items() if top > marks[source].safe_id}
        touched: set[tuple] = set()
        for source, (model, use_case_path, time_paths) in SOURCES.items():
            if source in new:
                after, through = new[source]
                touched |= _touched_hours(model, use_case_path, time_paths, after=after, through=through)
        if touched:
            _replace(*_windows(touched))
        _lift_refresh(new)
        now = clock.now()
        for source, mark in marks.items():
            # Next time, read again from what this run's predecessor saw: a row with a lower id whose
            # transaction was still open then is picked up by this overlap.
            mark.safe_id, mark.seen_id, mark.updated_at = mark.seen_id, highest[source], now
        RollupWatermark.objects.bulk_update(list(marks.values()), ["safe_id", "seen_id", "updated_at"])
    return len(touched)
