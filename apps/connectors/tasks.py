from celery import shared_task

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import Conflict

from . import datasets
from .models import SourceDataset


@shared_task(acks_late=True)
def dataset_sync_task(dataset_id: int):
    """One refresh of a cached dataset. A redelivered task is harmless: a sync still running makes it a
    no-op (Conflict), and a finished one made the next read start from the advanced cursor."""
    dataset = SourceDataset.objects.select_related("connector").filter(pk=dataset_id).first()
    if dataset is None:
        return None
    try:
        sync = datasets.dataset_sync(actor=Actor.for_system("dataset_sync"), dataset=dataset, trigger="schedule")
    except Conflict:
        return None
    return sync.status


@shared_task(acks_late=True)
def datasets_sync_due_task():
    """Beat: a sync task for each cached dataset whose copy is older than its sync interval."""
    due = datasets.datasets_due_for_sync(clock.now())
    for dataset_id in due:
        dataset_sync_task.delay(dataset_id)
    return len(due)
