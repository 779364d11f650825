import datetime as dt

from celery import shared_task
from django.utils import timezone

from apps.core import clock

from . import services


@shared_task(acks_late=True, max_retries=3)
def rollup_refresh_task() -> int:
    """Beat entry: rebuild today and yesterday. Idempotent, so a repeated or overlapping run is harmless;
    yesterday is included so facts recorded late in the day (or just after midnight) are never missed."""
    today = timezone.localdate(clock.now())
    return services.rollup_rebuild(start=today - dt.timedelta(days=1), end=today)
