from celery import shared_task

from apps.connectors.clients.errors import ConnectorError

from . import selectors, services


@shared_task(bind=True, acks_late=True, max_retries=services.MAX_ATTEMPTS)
def delivery_send_task(self, delivery_id: int):
    """Retries with exponential backoff for hours (capped), then records the failure."""
    try:
        services.delivery_send(delivery_id=delivery_id)
    except ConnectorError as exc:
        if exc.permanent or self.request.retries >= self.max_retries:
            services.delivery_give_up(delivery_id=delivery_id, error=str(exc))
            return
        raise self.retry(exc=exc, countdown=min(30 * 2**self.request.retries, 3600)) from exc


@shared_task(acks_late=True)
def deliveries_dispatch_task(delivery_ids: list[int]):
    """One message per request, fanned out here: a batch of 500 does not pay 500 broker round trips."""
    for delivery_id in delivery_ids:
        delivery_send_task.delay(delivery_id)


@shared_task(acks_late=True)
def deliveries_sweep_task():
    """Beat: send again what a lost task never sent (sending twice is harmless: delivery_send is idempotent)."""
    unsent = selectors.deliveries_unsent()
    for delivery_id in unsent:
        delivery_send_task.delay(delivery_id)
    return len(unsent)
