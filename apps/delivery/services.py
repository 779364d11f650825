"""Delivery of approved outputs to their destinations, and feedback from the place of decision.

Only what passed is delivered: an output the policy allowed, or that a reviewer approved or edited
(apps.workflows.services schedules deliveries at exactly those two points, and `delivery_send` checks
again before sending). Per output, each destination gets one Delivery row, sent by the worker:

- write-back through the connector's client (SQL table, Salesforce Task, HubSpot note, Zendesk internal
  comment, REST call), keyed by "dlv-<delivery id>" so a retried write never writes twice;
- a signed webhook (apps.delivery.webhooks), whose webhook-id is that same key;
- a notification: e-mail or a Slack-style incoming webhook (apps.delivery.notifications).

BI tables get no Delivery rows: beat refreshes them in bulk (apps.delivery.bi).

Retries: every attempt is counted and logged on the row (the last 20). A failed attempt is tried again
after 30 s, doubling up to one hour between attempts; after MAX_ATTEMPTS attempts (about five hours)
the delivery fails and shows on the failed-deliveries page, where a user may retry it. A rate-limited
attempt (429) is tried again after the Retry-After the remote asked for; a permanent error (refused
credentials, a refused address, a rejected payload) fails at once.
"""

import datetime as dt
import json
import logging
from typing import NamedTuple

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, Min, OuterRef, Subquery
from django.db.models.expressions import RawSQL

from apps.connectors.clients.base import WriteRequest
from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.http import RateLimited
from apps.connectors.clients.registry import client_for
from apps.connectors.models import Connector, Destination
from apps.connectors.services import connector_outcome_record
from apps.core import clock, metrics
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission, restrict
from apps.core.tasks import send_after_commit
from apps.reporting.holdout import is_held_out
from apps.workflows.events import GENESIS_HASH, event_append, event_hash
from apps.workflows.models import FEEDBACK_EVENT_TYPES, Recommendation, RecommendationEvent, UseCase

from . import notifications, webhooks
from .models import Delivery

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600  # below the broker's visibility timeout (4 h), so a waiting retry is not redelivered
ATTEMPT_LOG_SIZE = 20
EXCERPT = 500

# An output in one of these states passed the policy or a reviewer; DELIVERING and later keep that.
PASSED_STATUSES = (
    Recommendation.Status.APPROVED,
    Recommendation.Status.EDITED,
    Recommendation.Status.DELIVERING,
    Recommendation.Status.DELIVERED,
    Recommendation.Status.DELIVERY_FAILED,
)
APPROVAL_EVENTS = (RecommendationEvent.Type.APPROVED, RecommendationEvent.Type.EDITED)


class Outcome(NamedTuple):
    external_id: str
    status: int | None  # the HTTP status, for destinations that speak HTTP
    response: str


def retry_delay(attempts: int, error: ConnectorError | None = None) -> float:
    """Seconds before the next attempt, after `attempts` attempts: 30 s, 1, 2, 4, 8, 16, 32 min, then
    hourly, so MAX_ATTEMPTS attempts span about five hours. A 429 waits what the remote asked for."""
    if isinstance(error, RateLimited):
        return min(max(error.retry_after, 1.0), MAX_RETRY_SECONDS)
    return float(min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS))


def deliveries_schedule(
    *, recommendations: list[Recommendation], destinations: list[Destination], new: bool = False
) -> list[Delivery]:
    """One Delivery per recommendation and destination (of their one use case), sent by the worker after
    commit; never twice (unique per recommendation and destination, existing rows are skipped). `new`: the
    recommendations were created in this transaction, so none can have a delivery yet. Callers pass only
    outputs that passed, and only per-output destinations (workflows.services._per_output_destinations:
    BI tables are exported by beat)."""
    from .tasks import deliveries_dispatch_task

    if not destinations or not recommendations:
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
        send_after_commit(deliveries_dispatch_task, [delivery.pk for delivery in deliveries])
    return deliveries


# --- sending ---------------------------------------------------------------------------------------------


def _content(recommendation: Recommendation):
    return recommendation.final_content if recommendation.final_content is not None else recommendation.content


def _writeback(delivery: Delivery, destination: Destination) -> Outcome:
    recommendation = delivery.recommendation
    use_case = recommendation.use_case
    request = WriteRequest(
        idempotency_key=f"dlv-{delivery.pk}",
        subject_key=recommendation.subject_key,
        title=f"{use_case.name}: {recommendation.subject_key}",
        text=recommendation.text,
        target={"table": destination.table, **(destination.config or {})},
        payload={
            "recommendation_id": recommendation.pk,
            "use_case": use_case.slug,
            "content": _content(recommendation),
            "proposed_action": recommendation.proposed_action,
            "policy_version": str(recommendation.policy_version) if recommendation.policy_version_id else None,
        },
    )
    client = client_for(destination.connector)
    external_id = str(client.write(request))
    return Outcome(external_id, None, f"{client.system} created {external_id}")


def webhook_body(delivery: Delivery) -> bytes:
    """The event a webhook receiver gets (Standard Webhooks envelope: type, timestamp, data)."""
    recommendation = delivery.recommendation
    body = {
        "type": "recommendation.approved",
        "timestamp": recommendation.decided_at,
        "data": {
            "delivery_id": delivery.pk,
            "recommendation_id": recommendation.pk,
            "use_case": recommendation.use_case.slug,
            "subject": recommendation.subject_key,
            "status": recommendation.status,
            "text": recommendation.text,
            "content": _content(recommendation),
            "proposed_action": recommendation.proposed_action,
            "policy_version": str(recommendation.policy_version) if recommendation.policy_version_id else None,
            "trace_url": notifications.trace_url(recommendation),
        },
    }
    return json.dumps(body, cls=DjangoJSONEncoder).encode()


def _webhook(delivery: Delivery, destination: Destination) -> Outcome:
    connector = destination.connector
    url, secret = (connector.config or {}).get("url", ""), connector.secrets.get("signing_secret", "")
    if not url or not secret:
        raise ConnectorError("The webhook connector needs a receiver URL and a signing secret", permanent=True)
    msg_id = f"dlv-{delivery.pk}"
    response = webhooks.send(url=url, secret=secret, msg_id=msg_id, body=webhook_body(delivery))
    return Outcome(msg_id, response.status_code, response.text[:EXCERPT])


def _notify(delivery: Delivery, destination: Destination) -> Outcome:
    connector = destination.connector
    message = notifications.message_for(delivery.recommendation)
    if connector.kind == Connector.Kind.EMAIL:
        msg_id = f"dlv-{delivery.pk}"
        answer = notifications.email_send(connector=connector, message=message, message_id=msg_id)
        return Outcome(msg_id, None, answer)
    if connector.kind == Connector.Kind.SLACK:
        response = notifications.slack_send(connector=connector, message=message)
        return Outcome(f"dlv-{delivery.pk}", response.status_code, response.text[:EXCERPT])
    raise ConnectorError(f"A {connector.get_kind_display()} connector cannot send notifications", permanent=True)


def _send(delivery: Delivery) -> Outcome:
    destination = delivery.destination
    match destination.kind:
        case Destination.Kind.WRITEBACK:
            return _writeback(delivery, destination)
        case Destination.Kind.WEBHOOK:
            return _webhook(delivery, destination)
        case Destination.Kind.NOTIFY:
            return _notify(delivery, destination)
    raise ConnectorError(
        f"{destination.get_kind_display()} destinations are not sent one output at a time", permanent=True
    )


def _refusal(recommendation: Recommendation) -> str:
    """Why this output must not leave, or "" when it passed (its state and its trail both say so)."""
    if recommendation.status not in PASSED_STATUSES:
        return (
            f"Not sent: the output is {recommendation.get_status_display().lower()}; only outputs the policy "
            "allowed or a reviewer approved are delivered."
        )
    if not recommendation.events.filter(type__in=APPROVAL_EVENTS).exists():
        return "Not sent: the output's trail records no approval (by the policy or a reviewer)."
    if is_held_out(recommendation.use_case, recommendation.subject_key):
        # The holdout share was raised after this output was made: the control group stays untouched.
        return "Not sent: the subject is now in the use case's control group (holdout)."
    return ""


def _entry(*, ok: bool, status: int | None = None, response: str = "", error: str = "") -> dict:
    entry = {"at": clock.now().isoformat(), "ok": ok, "status": status}
    if ok:
        entry["response"] = response[:EXCERPT]
    else:
        entry["error"] = error[:EXCERPT]
    return entry


def _log(delivery: Delivery, entry: dict) -> None:
    delivery.attempt_log = [*(delivery.attempt_log or []), entry][-ATTEMPT_LOG_SIZE:]


def delivery_send(*, delivery_id: int) -> Delivery:
    """Make one attempt to hand an approved output to its destination, and record it on the row.

    Returns the delivery: SUCCEEDED; PENDING with `next_attempt_at` when another attempt is due (the
    task retries then); or FAILED (a permanent error, attempts exhausted, or an output that did not pass
    — never sent). Idempotent: a finished delivery is not sent again, and the remote write is keyed by
    the delivery id. A system action: permissions were checked when the output was approved."""
    delivery = Delivery.objects.select_related(
        "destination__connector", "recommendation__use_case", "recommendation__policy_version__policy"
    ).get(pk=delivery_id)
    if delivery.status != Delivery.Status.PENDING:
        return delivery
    refusal = _refusal(delivery.recommendation)
    if refusal:
        logger.warning("delivery %s refused: %s", delivery.pk, refusal)
        return _finish_failed(delivery.pk, error=refusal, log=_entry(ok=False, error=refusal), event=False)
    # Counted before the call: an attempt that dies with its worker still used one.
    Delivery.objects.filter(pk=delivery.pk).update(attempts=F("attempts") + 1, next_attempt_at=clock.now())
    destination = delivery.destination
    try:
        outcome = _send(delivery)
    except ConnectorError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - a bug in a sender must not leave the delivery pending for ever
        logger.exception("delivery %s: unexpected error", delivery.pk)
        error = ConnectorError(f"Unexpected error: {type(exc).__name__}: {exc}")
    else:
        connector_outcome_record(connector=destination.connector, ok=True)
        metrics.DELIVERIES_TOTAL.labels(destination.kind, "ok").inc()
        return _succeeded(delivery.pk, outcome)
    connector_outcome_record(connector=destination.connector, ok=False, error=str(error))
    metrics.DELIVERIES_TOTAL.labels(destination.kind, "error").inc()
    return _attempt_failed(delivery.pk, error)


def _succeeded(delivery_id: int, outcome: Outcome) -> Delivery:
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().select_related("destination").get(pk=delivery_id)
        if delivery.status == Delivery.Status.SUCCEEDED:
            return delivery
        delivery.status = Delivery.Status.SUCCEEDED
        delivery.external_id = outcome.external_id[:120]
        delivery.last_response = outcome.response
        delivery.last_error = ""
        delivery.delivered_at = clock.now()
        delivery.next_attempt_at = None
        _log(delivery, _entry(ok=True, status=outcome.status, response=outcome.response))
        delivery.save()
        recommendation = Recommendation.objects.select_for_update().get(pk=delivery.recommendation_id)
        event_append(
            recommendation=recommendation,
            type=RecommendationEvent.Type.DELIVERED,
            actor=Actor.for_system("delivery_send"),
            payload={
                "destination": delivery.destination.name,
                "external_id": delivery.external_id,
                "attempts": delivery.attempts,
            },
        )
        if not recommendation.deliveries.exclude(status=Delivery.Status.SUCCEEDED).exists():
            recommendation.status = Recommendation.Status.DELIVERED
            recommendation.delivered_at = delivery.delivered_at
            recommendation.save(update_fields=["status", "delivered_at"])
    return delivery


def _attempt_failed(delivery_id: int, error: ConnectorError) -> Delivery:
    entry = _entry(ok=False, status=429 if isinstance(error, RateLimited) else None, error=str(error))
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status != Delivery.Status.PENDING:
            return delivery  # finished by another attempt meanwhile
        if error.permanent or delivery.attempts >= MAX_ATTEMPTS:
            return _finish_failed(delivery.pk, error=str(error), log=entry)
        _log(delivery, entry)
        delivery.last_error = str(error)
        delivery.next_attempt_at = clock.now() + dt.timedelta(seconds=retry_delay(delivery.attempts, error))
        delivery.save(update_fields=["attempt_log", "last_error", "next_attempt_at"])
    return delivery


@transaction.atomic
def _finish_failed(delivery_id: int, *, error: str, log: dict | None = None, event: bool = True) -> Delivery:
    """The delivery failed for good: it shows on the failed-deliveries page. `event`: the failure goes on
    the output's trail too (not for an output that never passed: its trail already says why)."""
    delivery = Delivery.objects.select_for_update().select_related("destination").get(pk=delivery_id)
    if delivery.status != Delivery.Status.PENDING:
        return delivery
    delivery.status = Delivery.Status.FAILED
    delivery.last_error = error
    delivery.next_attempt_at = None
    if log is not None:
        _log(delivery, log)
    delivery.save()
    if event:
        recommendation = Recommendation.objects.select_for_update().get(pk=delivery.recommendation_id)
        recommendation.status = Recommendation.Status.DELIVERY_FAILED
        recommendation.save(update_fields=["status"])
        event_append(
            recommendation=recommendation,
            type=RecommendationEvent.Type.DELIVERY_FAILED,
            actor=Actor.for_system("delivery_send"),
            payload={"destination": delivery.destination.name, "error": error, "attempts": delivery.attempts},
        )
    return delivery


def delivery_give_up(*, delivery_id: int, error: str) -> None:
    """Retries exhausted outside delivery_send's own count (the task's cap): record the failure."""
    _finish_failed(delivery_id, error=error)


def delivery_retry(*, actor: Actor, delivery: Delivery) -> Delivery:
    """Send a failed delivery again: back to pending with a fresh round of MAX_ATTEMPTS attempts, a
    `delivery_retried` event by the acting user on the output's trail, the task sent after commit.
    Needs run_usecase on the output's use case: the same power as submitting outputs for delivery."""
    from .tasks import delivery_send_task

    use_case = UseCase.objects.get(pk=delivery.recommendation.use_case_id)
    if not has_object_permission(actor.user, "run_usecase", use_case):
        raise PermissionDenied("You may not retry deliveries of this use case (it needs run permission).")
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().select_related("destination").get(pk=delivery.pk)
        if delivery.status != Delivery.Status.FAILED:
            raise Conflict(
                f"Only a failed delivery can be retried; this one is {delivery.get_status_display().lower()}.",
                code="not_failed",
            )
        previous_attempts, previous_error = delivery.attempts, delivery.last_error
        delivery.status = Delivery.Status.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = clock.now()
        delivery.save(update_fields=["status", "attempts", "next_attempt_at"])
        recommendation = Recommendation.objects.select_for_update().get(pk=delivery.recommendation_id)
        if (
            recommendation.status == Recommendation.Status.DELIVERY_FAILED
            and not recommendation.deliveries.filter(status=Delivery.Status.FAILED).exists()
        ):
            recommendation.status = Recommendation.Status.DELIVERING
            recommendation.save(update_fields=["status"])
        event_append(
            recommendation=recommendation,
            type=RecommendationEvent.Type.DELIVERY_RETRIED,
            actor=actor,
            payload={
                "destination": delivery.destination.name,
                "delivery": delivery.pk,
                "previous_attempts": previous_attempts,
                "previous_error": previous_error,
            },
        )
        send_after_commit(delivery_send_task, delivery.pk)
    return delivery


# --- feedback --------------------------------------------------------------------------------------------

FEEDBACK_TYPES = {t.value: t for t in FEEDBACK_EVENT_TYPES} | {
    "opened": RecommendationEvent.Type.OPENED,
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


class FeedbackIn(NamedTuple):
    event_id: str
    recommendation_id: int
    type: str
    at: dt.datetime | None = None
    payload: dict | None = None


FEEDBACK_STATUSES = (
    Recommendation.Status.DELIVERED,
    Recommendation.Status.DELIVERING,
    Recommendation.Status.APPROVED,
    Recommendation.Status.EDITED,
)


def feedback_record_batch(*, actor: Actor, items: list[FeedbackIn]) -> list[tuple[str, object]]:
    """feedback_record for a batch, with the same rules, in a handful of queries: one result per item,
    ("created" | "duplicate", event id) or ("error", ServiceError). The outputs are locked in id order, each
    chain is extended from its last link in memory and every new event goes in with one insert. Should a
    concurrent request store one of the same event ids first, the batch is settled item by item instead."""
    ids = {item.event_id for item in items}
    stored = {
        event.external_id: event
        for event in RecommendationEvent.objects.filter(external_id__in=_any_of(ids, "text")).only(
            "external_id", "recommendation_id", "type"
        )
    }
    results: list = [None] * len(items)
    pending: dict[str, tuple[int, FeedbackIn]] = {}
    for index, item in enumerate(items):
        if item.type not in FEEDBACK_TYPES:
            results[index] = ("error", ServiceError(f"Unknown feedback type {item.type!r}.", field="type"))
        elif item.event_id in stored or item.event_id in pending:
            first = stored.get(item.event_id) or pending[item.event_id][1]
            first_type = FEEDBACK_TYPES[first.type] if isinstance(first, FeedbackIn) else first.type
            if first.recommendation_id != item.recommendation_id or first_type != FEEDBACK_TYPES[item.type]:
                results[index] = ("error", _EVENT_ID_REUSED)
            else:
                results[index] = ("duplicate", item.event_id)
        else:
            pending[item.event_id] = (index, item)
    if not pending:
        return results
    allowed = restrict(UseCase.objects.all(), actor.user, "run_usecase")
    try:
        with transaction.atomic():
            statuses = dict(
                Recommendation.objects.select_for_update()
                .filter(
                    use_case__in=allowed,
                    pk__in=_any_of({item.recommendation_id for _, item in pending.values()}, "bigint"),
                )
                .order_by("pk")
                .values_list("pk", "status")
            )
            previous = _chain_ends(list(statuses))
            now, rows = clock.now(), []
            for index, item in pending.values():
                status = statuses.get(item.recommendation_id)
                if status is None:
                    results[index] = ("error", _NOT_YOURS)
                elif status not in FEEDBACK_STATUSES:
                    results[index] = ("error", _NOT_DELIVERED)
                else:
                    row = _event_row(item, actor, item.at or now, previous.get(item.recommendation_id))
                    previous[item.recommendation_id] = (row[1], row[-1])
                    rows.append(row)
                    results[index] = ("created", item.event_id)
            _events_insert(rows)
    except IntegrityError:
        return [_feedback_one(actor, item) for item in items]
    for index, result in enumerate(results):
        if result[0] == "duplicate" and result[1] in pending and pending[result[1]][0] != index:
            first = results[pending[result[1]][0]]  # a repeat within this batch answers as its first did
            results[index] = ("duplicate", result[1]) if first[0] == "created" else first
    return results


def _any_of(values, sql_type: str):
    """`values` for an __in lookup. On PostgreSQL one array parameter: with a thousand values, preparing a
    placeholder per value costs more than the query itself."""
    if connection.vendor == "postgresql":
        return RawSQL(f"SELECT unnest(%s::{sql_type}[])", [list(values)])
    return list(values)


def _chain_ends(recommendation_ids: list[int]) -> dict[int, tuple[int, str]]:
    """{recommendation id: (sequence, hash) of its last event}, in one query."""
    if connection.vendor == "postgresql":
        # One backward step on the (recommendation, sequence) index per output, however long the chains grow.
        table = RecommendationEvent._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""SELECT r.id, e.sequence, e.hash FROM unnest(%s::bigint[]) AS r(id) CROSS JOIN LATERAL
                (SELECT sequence, hash FROM {table} WHERE recommendation_id = r.id ORDER BY sequence DESC LIMIT 1) e""",
                [list(recommendation_ids)],
            )
            return {pk: (sequence, hash) for pk, sequence, hash in cursor.fetchall()}
    events = RecommendationEvent.objects.filter(
        recommendation_id__in=recommendation_ids,
        sequence=Subquery(
            RecommendationEvent.objects.filter(recommendation_id=OuterRef("recommendation_id"))
            .order_by("-sequence")
            .values("sequence")[:1]
        ),
    ).order_by()
    return {pk: (sequence, hash) for pk, sequence, hash in events.values_list("recommendation_id", "sequence", "hash")}


_EVENT_ID_REUSED = ServiceError(
    "This event id was already used for a different event.", field="event_id", code="conflict"
)
_NOT_YOURS = PermissionDenied("No such recommendation, or you may not send feedback on it.")
_NOT_DELIVERED = ServiceError(
    "Feedback is only taken on outputs that were approved for delivery.",
    field="recommendation_id",
    code="not_delivered",
)


EVENT_COLUMNS = (
    "recommendation_id",
    "sequence",
    "type",
    "at",
    "actor_user_id",
    "actor_api_key_id",
    "actor_label",
    "payload",
    "external_id",
    "prev_hash",
    "hash",
)


def _event_row(item: FeedbackIn, actor: Actor, at, previous: tuple[int, str] | None) -> tuple:
    """The next link of the output's chain (as event_append builds it), as values of EVENT_COLUMNS."""
    sequence, prev_hash = (previous[0] + 1, previous[1]) if previous else (1, GENESIS_HASH)
    type = str(FEEDBACK_TYPES[item.type])
    payload = json.loads(json.dumps(item.payload or {}, default=str))
    label = actor.label
    digest = event_hash(
        prev_hash=prev_hash,
        recommendation_id=item.recommendation_id,
        sequence=sequence,
        type=type,
        at=at,
        actor_label=label,
        payload=payload,
        external_id=item.event_id,
    )
    user_id, key_id = (actor.user.pk if actor.user else None), (actor.api_key.pk if actor.api_key else None)
    return (
        item.recommendation_id,
        sequence,
        type,
        at,
        user_id,
        key_id,
        label,
        payload,
        item.event_id,
        prev_hash,
        digest,
    )


def _events_insert(rows: list[tuple]) -> None:
    """Insert events given as EVENT_COLUMNS values in one statement. On PostgreSQL a COPY: for a thousand
    events the ORM's per-value preparation costs more than the database's own work. Constraint violations
    raise IntegrityError either way."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        RecommendationEvent.objects.bulk_create(
            [RecommendationEvent(**dict(zip(EVENT_COLUMNS, row, strict=True))) for row in rows]
        )
        return
    from psycopg.types.json import Jsonb

    table = RecommendationEvent._meta.db_table
    payload = EVENT_COLUMNS.index("payload")
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row[:payload], Jsonb(row[payload]), *row[payload + 1 :]))


def _feedback_one(actor: Actor, item: FeedbackIn) -> tuple[str, object]:
    try:
        event, created = feedback_record(actor=actor, **item._asdict())
    except ServiceError as exc:
        return ("error", exc)
    return ("created" if created else "duplicate", event.external_id)


IGNORED_BATCH = 500
# What counts as the user doing something with a delivered output; `opened` alone does not.
FEEDBACK_ACTIONS = (
    RecommendationEvent.Type.ACCEPTED,
    RecommendationEvent.Type.FEEDBACK_EDITED,
    RecommendationEvent.Type.FEEDBACK_REJECTED,
    RecommendationEvent.Type.ACTED_ON,
)


def recommendations_ignored_record(*, now: dt.datetime | None = None, days: int | None = None) -> int:
    """Append `ignored` to every output delivered or shown at least `days` ago (settings
    DOORSTEP_IGNORED_AFTER_DAYS) on which nobody acted (accepted, edited, rejected, acted on) in
    that window. Idempotent: an output is marked once (an action arriving later is still recorded, after it).
    A system job (the beat task): no permission check. Returns how many were marked."""
    now = now or clock.now()
    days = days if days is not None else settings.DOORSTEP_IGNORED_AFTER_DAYS
    cutoff = now - dt.timedelta(days=days)
    events = RecommendationEvent.objects.filter(recommendation_id=OuterRef("pk"))
    candidates = (
        Recommendation.objects.filter(
            Exists(
                events.filter(
                    type__in=(RecommendationEvent.Type.DELIVERED, RecommendationEvent.Type.SHOWN), at__lte=cutoff
                )
            ),
        )
        .exclude(Exists(events.filter(type__in=(*FEEDBACK_ACTIONS, RecommendationEvent.Type.IGNORED))))
        .values_list("pk", flat=True)
        .order_by("pk")
    )
    actor = Actor.for_system("recommendations_ignored_record")
    marked = 0
    while True:
        ids = list(candidates[:IGNORED_BATCH])
        if not ids:
            return marked
        with transaction.atomic():
            for recommendation in Recommendation.objects.select_for_update().filter(pk__in=ids).order_by("pk"):
                # Read again under the lock: an action (or another sweep) may have come in meanwhile.
                if recommendation.events.filter(
                    type__in=(*FEEDBACK_ACTIONS, RecommendationEvent.Type.IGNORED)
                ).exists():
                    continue
                since = recommendation.events.filter(
                    type__in=(RecommendationEvent.Type.DELIVERED, RecommendationEvent.Type.SHOWN)
                ).aggregate(at=Min("at"))["at"]
                event_append(
                    recommendation=recommendation,
                    type=RecommendationEvent.Type.IGNORED,
                    actor=actor,
                    payload={"window_days": days, "since": since.isoformat()},
                    at=now,
                )
                marked += 1
