"""Sending Celery tasks from services."""

import logging

from django.db import transaction
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)


def send_after_commit(task, *args) -> None:
    """Send `task` once the surrounding transaction commits (never before the rows exist, PITFALLS #5).
    A broker that is down or full must not turn a committed write into an error for the caller: the
    failure is logged and the beat sweepers (deliveries_sweep_task, runs_sweep_task) send it later."""

    def send():
        try:
            task.delay(*args)
        except OperationalError:
            logger.warning("broker unavailable; %s%r left for the sweeper", task.name, args, exc_info=True)

    transaction.on_commit(send)
