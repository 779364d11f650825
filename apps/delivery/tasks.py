import logging

from celery import shared_task

from apps.connectors.clients.errors import ConnectorError
from apps.core import clock

from . import bi, selectors, services
from .models import Delivery

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, max_retries=services.MAX_ATTEMPTS)
def delivery_send_task(self, delivery_id: int):
    """One attempt; when another is due, the task comes back at `next_attempt_at` (services.retry_delay:
    30 s doubling to hourly, about five hours in all; a 429 after its Retry-After). The attempt count on
    the row decides when to give up, so a task resent by the sweeper does not get a fresh budget."""
    delivery = services.delivery_send(delivery_id=delivery_id)
    if delivery.status == Delivery.Status.PENDING and delivery.next_attempt_at is not None:
        if self.request.retries >= self.max_retries:
            services.delivery_give_up(delivery_id=delivery_id, error=delivery.last_error)
            return
        countdown = max((delivery.next_attempt_at - clock.now()).total_seconds(), 0.0)
        raise self.retry(countdown=countdown)


@shared_task(acks_late=True)
def deliveries_dispatch_task(delivery_ids: list[int]):
    """One message per request, fanned out here: a batch of 500 does not pay 500 broker round trips."""
    for delivery_id in delivery_ids:
        delivery_send_task.delay(delivery_id)


@shared_task(acks_late=True)
def deliveries_sweep_task():
    """Beat: send again what a lost task never sent (see selectors.deliveries_unsent)."""
    unsent = selectors.deliveries_unsent()
    for delivery_id in unsent:
        delivery_send_task.delay(delivery_id)
    return len(unsent)


@shared_task(acks_late=True)
def bi_tables_refresh_task():
    """Beat (every 5 minutes): export newly approved outputs into every BI table. One failing table does
    not stop the others; it keeps its cursor and redoes the same rows next time."""
    exported = 0
    for destination in selectors.bi_destinations():
        try:
            exported += bi.bi_table_refresh(destination=destination)
        except ConnectorError as exc:
            logger.warning("BI table %s not refreshed: %s", destination.name, exc)
    return exported


@shared_task(acks_late=True)
def recommendations_ignored_task():
    """Beat: mark outputs nobody acted on within the window as ignored (idempotent)."""
    return services.recommendations_ignored_record()
