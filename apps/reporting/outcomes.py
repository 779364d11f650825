"""Business outcomes: what happened to a subject after the trigger (ticket resolved, renewal won, ...).

Outcomes are immutable appends, idempotent per (use case, caller's event id). Each records, at the time it is
recorded, whether its subject is in the use case's control group (reporting.holdout), so the ROI comparison
never has to guess a subject's group after the share changed.
"""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import ServiceError
from apps.core.permissions import restrict
from apps.workflows.models import Recommendation, UseCase

from .holdout import is_held_out
from .models import BusinessOutcome

REUSED = "This event id was already used for a different outcome."


@dataclass
class OutcomeIn:
    """One validated outcome from a caller (the API serializer checks types and lengths)."""

    event_id: str
    use_case: str  # slug
    subject_key: str
    kind: str
    occurred_at: dt.datetime
    value: Decimal | None = None
    recommendation_id: int | None = None


@dataclass
class OutcomeResult:
    """`status` is created, duplicate or error; `field` and `message` say what was wrong."""

    status: str
    outcome: BusinessOutcome | None = None
    field: str | None = None
    message: str = ""


def _same(stored: BusinessOutcome, item: OutcomeIn) -> bool:
    return (
        stored.subject_key == item.subject_key
        and stored.kind == item.kind
        and stored.occurred_at == item.occurred_at
        and stored.recommendation_id == item.recommendation_id
    )


def outcomes_record(*, actor: Actor, items: list[OutcomeIn]) -> list[OutcomeResult]:
    """Record business outcomes; one result per item, in order. Needs run_usecase on each item's use case
    (an unknown and a forbidden slug answer the same). A repeated event id of the same use case returns
    `duplicate` (a different event under a used id is an error); the linked recommendation, when given, must
    be of the same use case and subject. The new rows go in with one insert."""
    slugs = {item.use_case for item in items}
    use_cases = {u.slug: u for u in restrict(UseCase.objects.filter(slug__in=slugs), actor.user, "run_usecase")}
    existing = {
        (o.use_case_id, o.external_id): o
        for o in BusinessOutcome.objects.filter(
            use_case__in=list(use_cases.values()), external_id__in={item.event_id for item in items}
        )
    }
    recommendations = {
        pk: (use_case_id, subject_key)
        for pk, use_case_id, subject_key in Recommendation.objects.filter(
            pk__in={item.recommendation_id for item in items if item.recommendation_id}
        ).values_list("pk", "use_case_id", "subject_key")
    }
    results: list[OutcomeResult] = []
    fresh: dict[tuple[int, str], BusinessOutcome] = {}
    now = clock.now()
    for item in items:
        use_case = use_cases.get(item.use_case)
        if use_case is None:
            results.append(
                OutcomeResult(
                    "error",
                    field="use_case",
                    message=f"No use case {item.use_case!r} that you may record outcomes for.",
                )
            )
            continue
        key = (use_case.pk, item.event_id)
        stored = existing.get(key) or fresh.get(key)
        if stored is not None:
            if _same(stored, item):
                results.append(OutcomeResult("duplicate", stored))
            else:
                results.append(OutcomeResult("error", field="event_id", message=REUSED))
            continue
        if item.recommendation_id is not None and recommendations.get(item.recommendation_id) != (
            use_case.pk,
            item.subject_key,
        ):
            results.append(
                OutcomeResult(
                    "error",
                    field="recommendation_id",
                    message="No recommendation with this id for this use case and subject.",
                )
            )
            continue
        outcome = BusinessOutcome(
            use_case=use_case,
            subject_key=item.subject_key,
            kind=item.kind,
            value=item.value,
            occurred_at=item.occurred_at,
            recommendation_id=item.recommendation_id,
            holdout=is_held_out(use_case, item.subject_key),
            external_id=item.event_id,
            created_at=now,
            created_by=actor.user,
        )
        fresh[key] = outcome
        results.append(OutcomeResult("created", outcome))
    if fresh:
        try:
            with transaction.atomic():
                BusinessOutcome.objects.bulk_create(list(fresh.values()))
        except IntegrityError:
            # A concurrent request stored some of the same event ids first: settle them one by one.
            return [_settle(result, item) for result, item in zip(results, items, strict=True)]
    return results


def _settle(result: OutcomeResult, item: OutcomeIn) -> OutcomeResult:
    if result.status != "created":
        return result
    outcome = result.outcome
    try:
        with transaction.atomic():
            outcome.pk = None
            outcome.save(force_insert=True)
    except IntegrityError:
        stored = BusinessOutcome.objects.get(use_case_id=outcome.use_case_id, external_id=outcome.external_id)
        if _same(stored, item):
            return OutcomeResult("duplicate", stored)
        return OutcomeResult("error", field="event_id", message=REUSED)
    return result


def outcome_record(*, actor: Actor, item: OutcomeIn) -> tuple[BusinessOutcome, bool]:
    """One outcome (see outcomes_record): the row and whether it was created; a refusal raises ServiceError."""
    (result,) = outcomes_record(actor=actor, items=[item])
    if result.status == "error":
        raise ServiceError(result.message, field=result.field)
    return result.outcome, result.status == "created"
