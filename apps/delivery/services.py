"""Delivery of approved outputs to their destinations, and feedback from the place of decision."""

import json

from django.db import IntegrityError, transaction

from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.sql import SqlClient
from apps.connectors.models import Destination
from apps.connectors.services import connector_outcome_record
from apps.core import clock, metrics
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import restrict
from apps.core.tasks import send_after_commit
from apps.workflows.events import event_append
from apps.workflows.models import FEEDBACK_EVENT_TYPES, Recommendation, RecommendationEvent, UseCase

from . import webhooks
from .models import Delivery

MAX_ATTEMPTS = 8


def deliveries_schedule(
    *, recommendations: list[Recommendation], destinations: list[Destination], new: bool = False
) -> list[Delivery]:
    """One Delivery per recommendation and destination (of their one use case), sent by the worker after
    commit; never twice (unique per recommendation and destination, existing rows are skipped). `new`:
    the recommendations were created in this transaction, so none can have a delivery yet."""
    from .tasks import deliveries_dispatch_task

    if not destinations:
        return []
    existing = set()
    if not new:
        existing = set(
            Delivery.objects.filter(recommendation__in=recommendations).values_list(
                "recommendation_id", "destination_id"
            )
        )
    deliveries = [
        Delivery(recommendation=recommendation, destination=destination)
        for recommendation in recommendations
        for destination in destinations
        if (recommendation.pk, destination.pk) not in existing
    ]
    Delivery.objects.bulk_create(deliveries)
    if deliveries:
        ids = [delivery.pk for delivery in deliveries]
        send_after_commit(deliveries_dispatch_task, ids)
    return deliveries


def _writeback(delivery: Delivery, destination: Destination) -> str:
    recommendation = delivery.recommendation
    columns = destination.config
    row = {
        columns.get("subject_column", "subject_key"): recommendation.subject_key,
        columns.get("text_column", "body"): recommendation.text,
        "created_by": f"doorstep:{recommendation.use_case.slug}",
        "doorstep_delivery_id": f"dlv-{delivery.pk}",
        "created_at": clock.now().isoformat(),
    }
    if columns.get("title_column"):
        row[columns["title_column"]] = f"{recommendation.use_case.name}: {recommendation.subject_key}"
    client = SqlClient(destination.connector.secrets["url"])
    return client.insert_once(destination.table, row, unique_column="doorstep_delivery_id")


def _webhook(delivery: Delivery, destination: Destination) -> str:
    recommendation = delivery.recommendation
    msg_id = f"dlv-{delivery.pk}"
    body = json.dumps(
        {
            "type": "recommendation.approved",
            "recommendation_id": recommendation.pk,
            "use_case": recommendation.use_case.slug,
            "subject": recommendation.subject_key,
            "content": recommendation.final_content or recommendation.content,
            "proposed_action": recommendation.proposed_action,
        },
        default=str,
    ).encode()
    secrets = destination.connector.secrets
    webhooks.send(url=destination.connector.config["url"], secret=secrets["signing_secret"], msg_id=msg_id, body=body)
    return msg_id


def delivery_send(*, delivery_id: int) -> Delivery:
    """Hand one approved output to its destination. Idempotent: a delivered row is not sent again and
    the external write is keyed by the delivery id. Raises ConnectorError for the task to retry."""
    delivery = Delivery.objects.select_related("destination__connector", "recommendation__use_case").get(pk=delivery_id)
    if delivery.status == Delivery.Status.SUCCEEDED:
        return delivery
    destination = delivery.destination
    Delivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts + 1)
    try:
        if destination.kind == Destination.Kind.WRITEBACK:
            external_id = _writeback(delivery, destination)
        else:
            external_id = _webhook(delivery, destination)
    except ConnectorError as exc:
        Delivery.objects.filter(pk=delivery.pk).update(last_error=str(exc))
        connector_outcome_record(connector=destination.connector, ok=False, error=str(exc))
        metrics.DELIVERIES_TOTAL.labels(destination.kind, "error").inc()
        raise
    connector_outcome_record(connector=destination.connector, ok=True)
    actor = Actor.for_system("delivery_send")
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.status == Delivery.Status.SUCCEEDED:
            return delivery
        delivery.status = Delivery.Status.SUCCEEDED
        delivery.external_id = external_id
        delivery.delivered_at = clock.now()
        delivery.last_error = ""
        delivery.save()
        recommendation = Recommendation.objects.select_for_update().get(pk=delivery.recommendation_id)
        event_append(
            recommendation=recommendation,
            type=RecommendationEvent.Type.DELIVERED,
            actor=actor,
            payload={"destination": destination.name, "external_id": external_id, "attempts": delivery.attempts},
        )
        if not recommendation.deliveries.exclude(status=Delivery.Status.SUCCEEDED).exists():
            recommendation.status = Recommendation.Status.DELIVERED
            recommendation.delivered_at = delivery.delivered_at
            recommendation.save(update_fields=["status", "delivered_at"])
    metrics.DELIVERIES_TOTAL.labels(destination.kind, "ok").inc()
    return delivery


@transaction.atomic
def delivery_give_up(*, delivery_id: int, error: str) -> None:
    """Retries exhausted: the failure is recorded on the output's trail."""
    delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
    if delivery.status == Delivery.Status.SUCCEEDED:
        return
    delivery.status = Delivery.Status.FAILED
    delivery.last_error = error
    delivery.save()
    recommendation = Recommendation.objects.select_for_update().get(pk=delivery.recommendation_id)
    recommendation.status = Recommendation.Status.DELIVERY_FAILED
    recommendation.save(update_fields=["status"])
    event_append(
        recommendation=recommendation,
        type=RecommendationEvent.Type.DELIVERY_FAILED,
        actor=Actor.for_system("delivery_send"),
        payload={"destination": delivery.destination.name, "error": error, "attempts": delivery.attempts},
    )


FEEDBACK_TYPES = {t.value: t for t in FEEDBACK_EVENT_TYPES} | {
    "edited": RecommendationEvent.Type.FEEDBACK_EDITED,
    "rejected": RecommendationEvent.Type.FEEDBACK_REJECTED,
}


def feedback_record(
    *, actor: Actor, event_id: str, recommendation_id: int, type: str, at=None, payload: dict | None = None
) -> tuple[RecommendationEvent, bool]:
    """Record what the business user did with a delivered output. Idempotent per caller event id:
    a repeat returns the first event and `created=False`. Needs run_usecase on the use case."""
    if type not in FEEDBACK_TYPES:
        raise ServiceError(
            f"Unknown feedback type {type!r}; use one of {', '.join(sorted(FEEDBACK_TYPES))}.", field="type"
        )
    existing = RecommendationEvent.objects.filter(external_id=event_id).first()
    if existing is not None:
        if existing.recommendation_id != recommendation_id or existing.type != FEEDBACK_TYPES[type]:
            raise ServiceError(
                "This event id was already used for a different event.", field="event_id", code="conflict"
            )
        return existing, False
    allowed = restrict(UseCase.objects.all(), actor.user, "run_usecase")
    try:
        with transaction.atomic():
            recommendation = (
                Recommendation.objects.select_for_update().filter(use_case__in=allowed).get(pk=recommendation_id)
            )
            if recommendation.status not in (
                Recommendation.Status.DELIVERED,
                Recommendation.Status.DELIVERING,
                Recommendation.Status.APPROVED,
                Recommendation.Status.EDITED,
            ):
                raise ServiceError(
                    "Feedback is only taken on outputs that were approved for delivery.",
                    field="recommendation_id",
                    code="not_delivered",
                )
            event = event_append(
                recommendation=recommendation,
                type=FEEDBACK_TYPES[type],
                actor=actor,
                payload=payload or {},
                external_id=event_id,
                at=at,
            )
    except Recommendation.DoesNotExist:
        raise PermissionDenied("No such recommendation, or you may not send feedback on it.") from None
    except IntegrityError:
        # The same event id arrived twice at once: the other request stored it.
        return RecommendationEvent.objects.get(external_id=event_id), False
    return event, True
