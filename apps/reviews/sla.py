"""When a review is due: the queue's SLA from the moment the item arrives, counted in business hours when the
queue says so (settings.REVIEW_BUSINESS_HOURS, in TIME_ZONE)."""

import datetime as dt

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .models import ReviewQueue

# Ten years of days: a guard against an SLA that no business-hours calendar can ever reach.
MAX_DAYS = 3660


def _business_hours() -> tuple[frozenset[int], dt.time, dt.time]:
    config = settings.REVIEW_BUSINESS_HOURS
    try:
        days = frozenset(int(day) for day in config["days"])
        start, end = dt.time.fromisoformat(config["start"]), dt.time.fromisoformat(config["end"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"REVIEW_BUSINESS_HOURS is malformed: {exc}") from exc
    if not days or not days <= set(range(7)) or start >= end:
        raise ImproperlyConfigured("REVIEW_BUSINESS_HOURS needs weekdays 0-6 and a start before its end.")
    return days, start, end


def business_time_add(start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
    """`start` plus `duration` of business time: the clock runs only inside the daily window of the
    business days, in TIME_ZONE (windows are converted to UTC, so a DST change counts real hours)."""
    days, open_at, close_at = _business_hours()
    zone = timezone.get_default_timezone()
    remaining = duration
    cursor = start
    day = timezone.localtime(start, zone).date()
    for _ in range(MAX_DAYS):
        if day.weekday() in days:
            window_open = dt.datetime.combine(day, open_at, tzinfo=zone).astimezone(dt.UTC)
            window_close = dt.datetime.combine(day, close_at, tzinfo=zone).astimezone(dt.UTC)
            begin = max(cursor, window_open)
            if begin < window_close:
                if remaining <= window_close - begin:
                    return begin + remaining
                remaining -= window_close - begin
        day += dt.timedelta(days=1)
    raise ImproperlyConfigured(f"An SLA of {duration} does not fit in {MAX_DAYS} days of business hours.")


def due_at(queue: ReviewQueue, start: dt.datetime) -> dt.datetime:
    """When an item that arrives in `queue` at `start` must be decided."""
    if not queue.business_hours or queue.sla <= dt.timedelta(0):
        return start + queue.sla
    return business_time_add(start, queue.sla)
