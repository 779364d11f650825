from celery import shared_task
from django.db import transaction

from apps.core.actors import Actor

from . import selectors, services
from .models import Run, UseCase


@shared_task(acks_late=True, max_retries=3)
def run_execute_task(run_id: int):
    services.run_execute(run_id=run_id)


@shared_task(acks_late=True)
def use_case_schedule_task(use_case_id: int, subject_keys: list[str]):
    """Beat entry: a run per subject, skipping subjects that already have an unfinished run."""
    use_case = UseCase.objects.get(pk=use_case_id)
    busy = set(
        Run.objects.filter(use_case=use_case, status__in=[Run.Status.PENDING, Run.Status.RUNNING]).values_list(
            "subject_key", flat=True
        )
    )
    actor = Actor.for_system("schedule")
    with transaction.atomic():
        for key in subject_keys:
            if key not in busy:
                services.run_request(actor=actor, use_case=use_case, subject_key=key, trigger=Run.Trigger.SCHEDULE)


@shared_task(acks_late=True)
def runs_sweep_task():
    """Beat: start runs whose task was lost; run_execute is idempotent, so a duplicate does no harm."""
    unstarted = selectors.runs_unstarted()
    for run_id in unstarted:
        run_execute_task.delay(run_id)
    return len(unstarted)
