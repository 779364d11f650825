from celery import shared_task

from apps.connectors.clients.errors import ConnectorError

from . import services


@shared_task(acks_late=True)
def alert_rules_evaluate_task() -> dict:
    """Beat entry: evaluate every enabled alert rule. Idempotent: an open alert only counts one more
    occurrence, and notifications go out on an opening or a recovery only."""
    return services.alert_rules_evaluate()


@shared_task(bind=True, acks_late=True, max_retries=5)
def alert_rule_notify_task(self, rule_id: int, alert_id: int, event: str) -> None:
    """Notify a rule's recipients of an opening or recovery; a failing webhook is retried with backoff (the
    webhook-id stays the same, so the receiver keeps one)."""
    try:
        services.alert_rule_notify(rule_id=rule_id, alert_id=alert_id, event=event)
    except ConnectorError as exc:
        if exc.permanent:
            raise
        raise self.retry(exc=exc, countdown=min(600, 30 * 2**self.request.retries)) from exc
