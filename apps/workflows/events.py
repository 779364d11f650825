"""Appending lifecycle events: immutable rows, hash-chained per recommendation.

Callers hold a lock on the recommendation row (select_for_update) so sequences never race.
"""

import hashlib
import json

from apps.core import clock
from apps.core.actors import Actor

from .models import Recommendation, RecommendationEvent

GENESIS_HASH = "0" * 64


def event_hash(
    *,
    prev_hash: str,
    recommendation_id: int,
    sequence: int,
    type: str,
    at,
    actor_label: str,
    payload: dict,
    external_id: str | None,
) -> str:
    body = json.dumps(
        [prev_hash, recommendation_id, sequence, type, at.isoformat(), actor_label, payload, external_id],
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


def event_append(
    *,
    recommendation: Recommendation,
    type: str,
    actor: Actor,
    payload: dict | None = None,
    external_id: str | None = None,
    at=None,
    previous: RecommendationEvent | None = None,
    first: bool = False,
) -> RecommendationEvent:
    """Append one event. A caller that just wrote the previous event passes it, or `first` for a new
    recommendation, which saves the look-up of the chain's last link."""
    if previous is None and not first:
        previous = recommendation.events.order_by("-sequence").first()
    sequence = previous.sequence + 1 if previous else 1
    prev_hash = previous.hash if previous else GENESIS_HASH
    at = at or clock.now()
    payload = json.loads(json.dumps(payload or {}, default=str))
    event = RecommendationEvent(
        recommendation=recommendation,
        sequence=sequence,
        type=type,
        at=at,
        actor_user=actor.user,
        actor_api_key=actor.api_key,
        actor_label=actor.label,
        payload=payload,
        external_id=external_id,
        prev_hash=prev_hash,
    )
    event.hash = event_hash(
        prev_hash=prev_hash,
        recommendation_id=recommendation.pk,
        sequence=sequence,
        type=type,
        at=at,
        actor_label=event.actor_label,
        payload=payload,
        external_id=external_id,
    )
    event.save(force_insert=True)
    return event


def chain_verify(recommendation: Recommendation) -> int | None:
    """The sequence of the first event whose hash does not match, or None when the chain holds."""
    prev_hash = GENESIS_HASH
    for event in recommendation.events.order_by("sequence"):
        expected = event_hash(
            prev_hash=prev_hash,
            recommendation_id=recommendation.pk,
            sequence=event.sequence,
            type=event.type,
            at=event.at,
            actor_label=event.actor_label,
            payload=event.payload,
            external_id=event.external_id,
        )
        if event.prev_hash != prev_hash or event.hash != expected:
            return event.sequence
        prev_hash = event.hash
    return None
