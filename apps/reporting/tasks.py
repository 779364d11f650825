from celery import shared_task

from . import services


@shared_task(acks_late=True, max_retries=3)
def rollup_refresh_task() -> int:
    """Beat entry: recompute the rollups of the buckets touched by facts written since the last run.
    Idempotent (a repeated run finds nothing new), so a redelivered task is harmless."""
    return services.rollup_refresh()
