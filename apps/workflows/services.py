"""The path of one AI output: run → context → model → policy → route (deliver / review / block).

Writes take an Actor, run in one transaction with their lifecycle events, and send tasks after commit.
"""

import hashlib
import json
import time
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from apps.connectors.clients.errors import ConnectorError, ModelCallError
from apps.connectors.clients.model_endpoints import ModelResult, call_model
from apps.connectors.clients.sql import SqlClient
from apps.core import clock, metrics
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.policies import evaluation
from apps.policies.models import PolicyDecision, Rule
from apps.policies.selectors import policy_active_version
from apps.reviews.models import ReviewTask

from .events import event_append
from .models import ContextSnapshot, Recommendation, RecommendationEvent, Run, UseCase

EventType = RecommendationEvent.Type


def _require_runnable(actor: Actor, use_case: UseCase) -> None:
    if actor.user is not None and not has_object_permission(actor.user, "run_usecase", use_case):
        raise PermissionDenied("You may not run or submit outputs for this use case.")
    if use_case.status not in UseCase.RUNNABLE_STATUSES:
        raise ServiceError(
            f"Use case {use_case.slug} is {use_case.get_status_display()}; only pilot or production use cases run.",
            field="use_case",
            code="not_runnable",
        )


def run_request(*, actor: Actor, use_case: UseCase, subject_key: str, trigger: str) -> Run:
    """Ask for a run of `use_case` for one subject; the worker executes it after commit. Needs run_usecase."""
    from .tasks import run_execute_task

    _require_runnable(actor, use_case)
    subject_key = (subject_key or "").strip()
    if not subject_key:
        raise ServiceError("The subject key is required.", field="subject")
    with transaction.atomic():
        run = Run.objects.create(use_case=use_case, subject_key=subject_key, trigger=trigger, requested_by=actor.user)
        transaction.on_commit(lambda: run_execute_task.delay(run.pk))
    return run


def _freshness(dataset, records: list[dict], now: datetime) -> tuple[datetime | None, str]:
    """The oldest record's as-of time and whether it meets the dataset's freshness SLA."""
    if not dataset.updated_at_field or not records:
        return None, ContextSnapshot.Freshness.UNKNOWN
    stamps = [
        datetime.fromisoformat(str(r[dataset.updated_at_field])) for r in records if r.get(dataset.updated_at_field)
    ]
    if not stamps:
        return None, ContextSnapshot.Freshness.UNKNOWN
    as_of = min(stamps)
    if dataset.freshness_sla is None:
        return as_of, ContextSnapshot.Freshness.UNKNOWN
    stale = now - as_of > dataset.freshness_sla
    return as_of, ContextSnapshot.Freshness.STALE if stale else ContextSnapshot.Freshness.FRESH


def _call_with_fallback(use_case: UseCase, records: list[dict]) -> tuple[ModelResult, object, bool, int, list[str]]:
    """Primary endpoint with retries and backoff, then the fallback endpoint; a call over the timeout fails."""
    errors: list[str] = []
    attempts = 0
    for endpoint, is_fallback in ((use_case.model_endpoint, False), (use_case.fallback_endpoint, True)):
        if endpoint is None:
            continue
        for attempt in range(use_case.model_max_attempts):
            attempts += 1
            outcome = "error"
            started = time.perf_counter()
            try:
                result = call_model(endpoint, records=records)
                if result.latency_ms > use_case.model_timeout_seconds * 1000:
                    outcome = "timeout"
                    raise ModelCallError(f"{endpoint.name}: no answer within {use_case.model_timeout_seconds}s")
                outcome = "ok"
                return result, endpoint, is_fallback, attempts, errors
            except ModelCallError as exc:
                errors.append(str(exc))
                if attempt + 1 < use_case.model_max_attempts:
                    time.sleep(min(0.05 * 2**attempt, 1.0))
            finally:
                metrics.MODEL_CALL_SECONDS.labels(endpoint.name, outcome).observe(time.perf_counter() - started)
    raise ModelCallError("; ".join(errors) or "The use case has no model endpoint")


def run_execute(*, run_id: int, actor: Actor | None = None) -> Run:
    """Execute a run. Idempotent: a run that already produced its recommendation is left as it is,
    so a redelivered task (worker killed mid-run) repeats only reads and the model call."""
    actor = actor or Actor.for_system("run_execute")
    run = Run.objects.select_related(
        "use_case__source_dataset__connector", "use_case__model_endpoint", "use_case__fallback_endpoint"
    ).get(pk=run_id)
    if run.status in (Run.Status.SUCCEEDED, Run.Status.FAILED):
        return run
    use_case = run.use_case
    timings: dict[str, float] = {}
    started_at = clock.now()
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, started_at=started_at)

    dataset = use_case.source_dataset
    try:
        if dataset is None:
            raise ServiceError("The use case has no source dataset")
        tick = time.perf_counter()
        client = SqlClient(dataset.connector.secrets["url"])
        records = client.fetch_by_key(dataset.table, dataset.key_field, run.subject_key)
        timings["gather_context"] = round((time.perf_counter() - tick) * 1000, 2)
        if not records:
            raise ServiceError(f"No record with {dataset.key_field} = {run.subject_key!r} in {dataset}")
        tick = time.perf_counter()
        result, endpoint, used_fallback, attempts, model_errors = _call_with_fallback(use_case, records)
        timings["call_model"] = round((time.perf_counter() - tick) * 1000, 2)
    except (ConnectorError, ServiceError) as exc:
        Run.objects.filter(pk=run.pk).update(
            status=Run.Status.FAILED, finished_at=clock.now(), error=str(exc), step_timings=timings
        )
        metrics.RUNS_TOTAL.labels(use_case.slug, Run.Status.FAILED).inc()
        run.refresh_from_db()
        return run

    now = clock.now()
    as_of, freshness = _freshness(dataset, records, now)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if Recommendation.objects.filter(run=run).exists():
            return run
        snapshot = ContextSnapshot.objects.create(
            run=run,
            dataset=dataset,
            source=f"{dataset.connector.name} / {dataset.table}",
            record_ids=[str(r.get(dataset.key_field)) for r in records],
            records=json.loads(json.dumps(records, default=str)),
            content_hash=hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest(),
            data_as_of=as_of,
            freshness=freshness,
            fetched_at=now,
        )
        run.model_endpoint = endpoint
        run.used_fallback = used_fallback
        run.model_attempts = attempts
        run.model_latency_ms = round(result.latency_ms, 3)
        run.tokens_in, run.tokens_out, run.cost = result.tokens_in, result.tokens_out, result.cost
        run.error = "; ".join(model_errors)
        tick = time.perf_counter()
        recommendation = _recommendation_create(
            actor=actor,
            use_case=use_case,
            run=run,
            subject_key=run.subject_key,
            producer="doorstep",
            content=result.output,
            confidence=result.confidence,
            proposed_action=result.proposed_action,
            cost=result.cost,
            context=records[0],
            freshness=snapshot.freshness,
            pipeline_events=[
                (
                    EventType.CONTEXT,
                    {
                        "source": snapshot.source,
                        "record_ids": snapshot.record_ids,
                        "data_as_of": as_of,
                        "freshness": freshness,
                        "content_hash": snapshot.content_hash,
                    },
                ),
                (
                    EventType.MODEL_CALLED,
                    {
                        "endpoint": endpoint.name,
                        "fallback": used_fallback,
                        "attempts": attempts,
                        "latency_ms": run.model_latency_ms,
                        "tokens_in": result.tokens_in,
                        "tokens_out": result.tokens_out,
                        "cost": result.cost,
                    },
                ),
            ],
        )
        timings["evaluate_and_route"] = round((time.perf_counter() - tick) * 1000, 2)
        run.step_timings = timings
        run.status = Run.Status.SUCCEEDED
        run.finished_at = clock.now()
        run.save()
    metrics.RUNS_TOTAL.labels(use_case.slug, Run.Status.SUCCEEDED).inc()
    run.recommendation = recommendation
    return run


def recommendation_submit(
    *,
    actor: Actor,
    use_case: UseCase,
    subject_key: str,
    content: dict,
    confidence: float | None = None,
    proposed_action: dict | None = None,
    cost: Decimal = Decimal("0"),
    producer: str = "external",
    context: dict | None = None,
) -> Recommendation:
    """Bring your own model: an output produced elsewhere enters at policy evaluation. Needs run_usecase."""
    _require_runnable(actor, use_case)
    with transaction.atomic():
        return _recommendation_create(
            actor=actor,
            use_case=use_case,
            run=None,
            subject_key=subject_key,
            producer=producer,
            content=content,
            confidence=confidence,
            proposed_action=proposed_action or {},
            cost=cost,
            context=context or {},
            freshness=ContextSnapshot.Freshness.UNKNOWN,
            pipeline_events=[],
        )


def _recommendation_create(
    *,
    actor,
    use_case,
    run,
    subject_key,
    producer,
    content,
    confidence,
    proposed_action,
    cost,
    context,
    freshness,
    pipeline_events,
) -> Recommendation:
    """Create the recommendation, evaluate the active policy, route it. Caller holds the transaction."""
    version = policy_active_version(policy_id=use_case.policy_id) if use_case.policy_id else None
    verdict = evaluation.evaluate(
        version,
        output=content,
        context=context,
        action=proposed_action,
        use_case={"slug": use_case.slug, "risk_tier": use_case.risk_tier, "business_unit": use_case.business_unit},
        subject=subject_key,
        confidence=confidence,
        freshness=freshness,
        cost=float(cost),
    )
    recommendation = Recommendation.objects.create(
        use_case=use_case,
        run=run,
        subject_key=subject_key,
        producer=producer,
        content=content,
        final_content=verdict.output,
        confidence=confidence,
        proposed_action=proposed_action,
        cost=cost,
        policy_version=version,
        created_by=actor.user,
    )
    previous = event_append(
        recommendation=recommendation,
        type=EventType.RECEIVED,
        actor=actor,
        payload={"producer": producer, "run": run.pk if run else None, "subject": subject_key},
        first=True,
    )
    for event_type, payload in pipeline_events:
        previous = event_append(
            recommendation=recommendation, type=event_type, actor=actor, payload=payload, previous=previous
        )
    PolicyDecision.objects.create(
        recommendation=recommendation,
        version=version,
        effect=verdict.effect,
        fired_rules=verdict.fired,
        signals=verdict.signals,
        redactions=verdict.redactions,
        duration_us=verdict.duration_us,
    )
    previous = event_append(
        recommendation=recommendation,
        type=EventType.EVALUATED,
        actor=actor,
        payload={
            "policy_version": str(version) if version else None,
            "effect": verdict.effect,
            "fired": verdict.fired,
            "redactions": verdict.redactions,
        },
        previous=previous,
    )
    metrics.RECOMMENDATIONS_TOTAL.labels(use_case.slug, verdict.effect).inc()
    _route(recommendation, verdict, actor=actor, previous=previous)
    return recommendation


def _route(recommendation: Recommendation, verdict, *, actor: Actor, previous) -> None:
    use_case = recommendation.use_case
    if verdict.effect == Rule.Effect.BLOCK:
        recommendation.status = Recommendation.Status.BLOCKED
        recommendation.decided_at = clock.now()
        recommendation.save(update_fields=["status", "decided_at"])
        event_append(
            recommendation=recommendation,
            type=EventType.BLOCKED,
            actor=actor,
            payload={"rules": [f["name"] for f in verdict.fired if f["effect"] == Rule.Effect.BLOCK]},
            previous=previous,
        )
        return
    if verdict.effect == Rule.Effect.REVIEW:
        queue = use_case.review_queue
        if queue is None:
            # A review is required and nobody can give it: stop rather than deliver unchecked.
            recommendation.status = Recommendation.Status.BLOCKED
            recommendation.save(update_fields=["status"])
            event_append(
                recommendation=recommendation,
                type=EventType.BLOCKED,
                actor=actor,
                payload={"reason": "review required but the use case has no review queue"},
                previous=previous,
            )
            return
        now = clock.now()
        reasons = [f for f in verdict.fired if f["effect"] == Rule.Effect.REVIEW]
        ReviewTask.objects.create(
            queue=queue,
            recommendation=recommendation,
            priority=len(reasons) + (1 if use_case.risk_tier == UseCase.RiskTier.HIGH else 0),
            reasons=reasons,
            created_at=now,
            due_at=now + queue.sla,
        )
        recommendation.status = Recommendation.Status.QUEUED
        recommendation.save(update_fields=["status"])
        event_append(
            recommendation=recommendation,
            type=EventType.QUEUED,
            actor=actor,
            payload={"queue": queue.name, "rules": [f["name"] for f in reasons]},
            previous=previous,
        )
        return
    recommendation_release(
        recommendation=recommendation,
        actor=actor,
        event_type=EventType.APPROVED,
        payload={"automatic": True, "effect": verdict.effect},
        previous=previous,
    )


def recommendation_release(
    *, recommendation: Recommendation, actor: Actor, event_type: str, payload: dict, previous=None
) -> None:
    """An allow verdict or a human approval: record it and hand the output to every destination once.
    The only way to delivery, so nothing reaches a destination without one of the two."""
    from apps.delivery.services import deliveries_schedule

    now = clock.now()
    recommendation.decided_at = now
    recommendation.status = (
        Recommendation.Status.EDITED if event_type == EventType.EDITED else Recommendation.Status.APPROVED
    )
    event_append(recommendation=recommendation, type=event_type, actor=actor, payload=payload, previous=previous)
    if deliveries_schedule(recommendation=recommendation):
        recommendation.status = Recommendation.Status.DELIVERING
    recommendation.save(update_fields=["status", "decided_at", "final_content"])


def recommendation_reject(*, recommendation: Recommendation, actor: Actor, payload: dict) -> None:
    recommendation.status = Recommendation.Status.REJECTED
    recommendation.decided_at = clock.now()
    recommendation.save(update_fields=["status", "decided_at"])
    event_append(recommendation=recommendation, type=EventType.REJECTED, actor=actor, payload=payload)


def recommendation_lock(*, pk: int) -> Recommendation:
    """The recommendation row, locked for the rest of the transaction (events are appended in order)."""
    return Recommendation.objects.select_for_update().select_related("use_case").get(pk=pk)
