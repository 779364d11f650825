"""Retention of raw payloads: after settings.DOORSTEP_RETENTION_DAYS, a finished run's raw model output and the
context values stored with it are deleted. What proves the record stays: the context's content hash, every
recommendation event and its chain, the governed history and the ledger's seals (none of which hold these
payloads), so `audit_verify` still passes after a purge."""

import datetime as dt

from django.conf import settings
from django.db import transaction

from apps.core import clock
from apps.workflows.models import ContextSnapshot, Run

BATCH = 5000


def retention_apply(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Purge payloads older than the retention period, in bounded batches; idempotent. Nothing when the
    period is not set."""
    days = settings.DOORSTEP_RETENTION_DAYS
    if not days:
        return {"runs": 0, "snapshots": 0}
    cutoff = (now or clock.now()) - dt.timedelta(days=days)
    finished = (Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.HELD_OUT)
    purged = {"runs": 0, "snapshots": 0}
    while True:
        with transaction.atomic():
            runs = list(
                Run.objects.filter(created_at__lt=cutoff, status__in=finished, model_output__isnull=False).values_list(
                    "pk", flat=True
                )[:BATCH]
            )
            snapshots = list(
                ContextSnapshot.objects.filter(fetched_at__lt=cutoff, values_hashed=False).values_list("pk", flat=True)[
                    :BATCH
                ]
            )
            if not runs and not snapshots:
                return purged
            purged["runs"] += Run.objects.filter(pk__in=runs).update(model_output=None)
            # The values go; the content hash of what was read stays (values_hashed: only the hash is kept).
            purged["snapshots"] += ContextSnapshot.objects.filter(pk__in=snapshots).update(
                records=[], values_hashed=True
            )
