"""The path of one AI output: run → context → model → policy → route (deliver / review / block).

Writes take an Actor, run in one transaction with their lifecycle events, and send tasks after commit.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from apps.connectors.clients.errors import ConnectorError, ModelCallError
from apps.connectors.clients.model_endpoints import ModelResult, call_model
from apps.connectors.clients.sql import SqlClient
from apps.connectors.services import connector_outcome_record
from apps.core import clock, metrics
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.core.tasks import send_after_commit
from apps.policies import evaluation
from apps.policies.models import PolicyDecision, Rule
from apps.policies.selectors import policy_active_version
from apps.reviews.models import ReviewTask

from .events import event_append, events_build
from .models import ContextSnapshot, Recommendation, RecommendationEvent, Run, UseCase

EventType = RecommendationEvent.Type
logger = logging.getLogger(__name__)


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
        send_after_commit(run_execute_task, run.pk)
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
                result = call_model(endpoint, records=records, timeout=use_case.model_timeout_seconds)
                if result.latency_ms > use_case.model_timeout_seconds * 1000:
                    outcome = "timeout"
                    raise ModelCallError(f"{endpoint.name}: no answer within {use_case.model_timeout_seconds}s")
                outcome = "ok"
                connector_outcome_record(connector=endpoint, ok=True)
                return result, endpoint, is_fallback, attempts, errors
            except ModelCallError as exc:
                errors.append(str(exc))
                connector_outcome_record(connector=endpoint, ok=False, error=str(exc))
                if attempt + 1 < use_case.model_max_attempts:
                    time.sleep(min(0.05 * 2**attempt, 1.0))
            finally:
                metrics.MODEL_CALL_SECONDS.labels(endpoint.name, outcome).observe(time.perf_counter() - started)
    raise ModelCallError("; ".join(errors) or "The use case has no model endpoint")


def run_execute(*, run_id: int, actor: Actor | None = None) -> Run:
    """Execute a run step by step. Idempotent per step: the context snapshot and the model's answer are
    stored as soon as they exist, so a redelivered task (worker killed mid-run) reuses them instead of
    calling the model (and paying for it) again; the recommendation is created once (one per run)."""
    actor = actor or Actor.for_system("run_execute")
    run = Run.objects.select_related(
        "use_case__source_dataset__connector", "use_case__model_endpoint", "use_case__fallback_endpoint"
    ).get(pk=run_id)
    if run.status in (Run.Status.SUCCEEDED, Run.Status.FAILED):
        return run
    use_case = run.use_case
    Run.objects.filter(pk=run.pk, started_at__isnull=True).update(started_at=clock.now())
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    try:
        snapshot = _run_gather_context(run)
        _run_call_model(run, snapshot)
    except (ConnectorError, ServiceError) as exc:
        Run.objects.filter(pk=run.pk).update(
            status=Run.Status.FAILED, finished_at=clock.now(), error=str(exc), step_timings=run.step_timings
        )
        metrics.RUNS_TOTAL.labels(use_case.slug, Run.Status.FAILED).inc()
        run.refresh_from_db()
        return run

    with transaction.atomic():
        run = Run.objects.select_for_update(of=("self",)).select_related("model_endpoint").get(pk=run.pk)
        if Recommendation.objects.filter(run=run).exists():
            return run
        answer = run.model_output
        tick = time.perf_counter()
        draft = Draft(
            subject_key=run.subject_key,
            producer="doorstep",
            content=answer["output"],
            confidence=answer["confidence"],
            proposed_action=answer["proposed_action"],
            cost=run.cost,
            context=snapshot.records[0],
            freshness=snapshot.freshness,
            run=run,
            pipeline_events=[
                (
                    EventType.CONTEXT,
                    {
                        "source": snapshot.source,
                        "record_ids": snapshot.record_ids,
                        "data_as_of": snapshot.data_as_of,
                        "freshness": snapshot.freshness,
                        "content_hash": snapshot.content_hash,
                    },
                ),
                (
                    EventType.MODEL_CALLED,
                    {
                        "endpoint": run.model_endpoint.name,
                        "fallback": run.used_fallback,
                        "attempts": run.model_attempts,
                        "latency_ms": run.model_latency_ms,
                        "tokens_in": run.tokens_in,
                        "tokens_out": run.tokens_out,
                        "cost": run.cost,
                    },
                ),
            ],
        )
        (recommendation,) = _recommendations_create(actor=actor, use_case=use_case, drafts=[draft])
        run.step_timings["evaluate_and_route"] = round((time.perf_counter() - tick) * 1000, 2)
        run.status = Run.Status.SUCCEEDED
        run.finished_at = clock.now()
        run.save()
    metrics.RUNS_TOTAL.labels(use_case.slug, Run.Status.SUCCEEDED).inc()
    run.recommendation = recommendation
    return run


def _run_gather_context(run: Run) -> ContextSnapshot:
    """Step 1: read the subject's records and stamp them; a snapshot stored by an earlier attempt is reused."""
    dataset = run.use_case.source_dataset
    if dataset is None:
        raise ServiceError("The use case has no source dataset")
    stored = ContextSnapshot.objects.filter(run=run, dataset=dataset).first()
    if stored is not None:
        return stored
    tick = time.perf_counter()
    client = SqlClient(dataset.connector.secrets["url"])
    try:
        records = client.fetch_by_key(dataset.table, dataset.key_field, run.subject_key)
    except ConnectorError as exc:
        connector_outcome_record(connector=dataset.connector, ok=False, error=str(exc))
        raise
    connector_outcome_record(connector=dataset.connector, ok=True)
    run.step_timings["gather_context"] = round((time.perf_counter() - tick) * 1000, 2)
    if not records:
        raise ServiceError(f"No record with {dataset.key_field} = {run.subject_key!r} in {dataset}")
    now = clock.now()
    as_of, freshness = _freshness(dataset, records, now)
    try:
        with transaction.atomic():
            return ContextSnapshot.objects.create(
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
    except IntegrityError:  # a concurrent attempt of the same run stored it first
        return ContextSnapshot.objects.get(run=run, dataset=dataset)


def _run_call_model(run: Run, snapshot: ContextSnapshot) -> None:
    """Step 2: call the model on the snapshot's records and store its answer on the run, once."""
    if run.model_output is not None:
        return
    tick = time.perf_counter()
    result, endpoint, used_fallback, attempts, errors = _call_with_fallback(run.use_case, snapshot.records)
    run.step_timings["call_model"] = round((time.perf_counter() - tick) * 1000, 2)
    stored = Run.objects.filter(pk=run.pk, model_output__isnull=True).update(
        model_output={
            "output": result.output,
            "confidence": result.confidence,
            "proposed_action": result.proposed_action,
        },
        model_endpoint=endpoint,
        used_fallback=used_fallback,
        model_attempts=attempts,
        model_latency_ms=round(result.latency_ms, 3),
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        cost=result.cost,
        error="; ".join(errors),
        step_timings=run.step_timings,
    )
    run.refresh_from_db()
    if not stored:
        logger.info("run %s: the model's answer was stored by another attempt", run.pk)


@dataclass
class Draft:
    """One output about to enter policy evaluation, from a run or from a model elsewhere."""

    subject_key: str
    content: dict
    confidence: float | None = None
    proposed_action: dict = field(default_factory=dict)
    cost: Decimal = Decimal("0")
    producer: str = "external"
    context: dict = field(default_factory=dict)
    freshness: str = ContextSnapshot.Freshness.UNKNOWN
    run: Run | None = None
    pipeline_events: list = field(default_factory=list)


def recommendation_submit(*, actor: Actor, use_case: UseCase, drafts: list[Draft]) -> list[Recommendation]:
    """Bring your own model: outputs produced elsewhere enter at policy evaluation, one or a batch.
    Needs run_usecase. All or nothing: the caller validates items first."""
    _require_runnable(actor, use_case)
    with transaction.atomic():
        return _recommendations_create(actor=actor, use_case=use_case, drafts=drafts)


def _recommendations_create(*, actor: Actor, use_case: UseCase, drafts: list[Draft]) -> list[Recommendation]:
    """Evaluate the active policy on each draft, store the recommendations with their verdicts and first
    events, and route them: review task, block, or deliveries (sent after commit). Bulk inserts, so a
    batch costs a handful of queries. The caller holds the transaction."""
    from apps.delivery.services import deliveries_schedule

    version = policy_active_version(policy_id=use_case.policy_id) if use_case.policy_id else None
    queue = use_case.review_queue
    destinations = list(use_case.destinations.all())
    released = Recommendation.Status.DELIVERING if destinations else Recommendation.Status.APPROVED
    use_case_vars = {"slug": use_case.slug, "risk_tier": use_case.risk_tier, "business_unit": use_case.business_unit}
    now = clock.now()
    planned = []
    for draft in drafts:
        verdict = evaluation.evaluate(
            version,
            output=draft.content,
            context=draft.context,
            action=draft.proposed_action,
            use_case=use_case_vars,
            subject=draft.subject_key,
            confidence=draft.confidence,
            freshness=draft.freshness,
            cost=float(draft.cost),
        )
        effect = verdict.effect
        if effect == Rule.Effect.REVIEW and queue is None:
            # A review is required and nobody can give it: stop rather than deliver unchecked.
            effect = Rule.Effect.BLOCK
        status = {
            Rule.Effect.BLOCK: Recommendation.Status.BLOCKED,
            Rule.Effect.REVIEW: Recommendation.Status.QUEUED,
        }.get(effect, released)
        recommendation = Recommendation(
            use_case=use_case,
            run=draft.run,
            subject_key=draft.subject_key,
            producer=draft.producer,
            content=draft.content,
            final_content=verdict.output,
            confidence=draft.confidence,
            proposed_action=draft.proposed_action,
            cost=draft.cost,
            status=status,
            policy_version=version,
            created_at=now,
            decided_at=None if status == Recommendation.Status.QUEUED else now,
            created_by=actor.user,
        )
        planned.append((draft, verdict, effect, recommendation))
    Recommendation.objects.bulk_create([recommendation for *_, recommendation in planned])

    events, decisions, tasks, approved = [], [], [], []
    for draft, verdict, effect, recommendation in planned:
        fired_names = [f["name"] for f in verdict.fired if f["effect"] == effect]
        specs = [
            (
                EventType.RECEIVED,
                {"producer": draft.producer, "run": draft.run.pk if draft.run else None, "subject": draft.subject_key},
            ),
            *draft.pipeline_events,
            (
                EventType.EVALUATED,
                {
                    "policy_version": str(version) if version else None,
                    "effect": verdict.effect,
                    "fired": verdict.fired,
                    "redactions": verdict.redactions,
                },
            ),
        ]
        if effect == Rule.Effect.BLOCK:
            reason = "review required but the use case has no review queue" if verdict.effect != effect else ""
            specs.append((EventType.BLOCKED, {"rules": fired_names, "reason": reason}))
        elif effect == Rule.Effect.REVIEW:
            specs.append((EventType.QUEUED, {"queue": queue.name, "rules": fired_names}))
            reasons = [f for f in verdict.fired if f["effect"] == Rule.Effect.REVIEW]
            tasks.append(
                ReviewTask(
                    queue=queue,
                    recommendation=recommendation,
                    priority=len(reasons) + (1 if use_case.risk_tier == UseCase.RiskTier.HIGH else 0),
                    reasons=reasons,
                    created_at=now,
                    due_at=now + queue.sla,
                )
            )
        else:
            specs.append((EventType.APPROVED, {"automatic": True, "effect": verdict.effect}))
            approved.append(recommendation)
        events += events_build(recommendation=recommendation, specs=specs, actor=actor, at=now)
        decisions.append(
            PolicyDecision(
                recommendation=recommendation,
                version=version,
                effect=verdict.effect,
                fired_rules=verdict.fired,
                signals=verdict.signals,
                redactions=verdict.redactions,
                evaluated_at=now,
                duration_us=verdict.duration_us,
            )
        )
        metrics.RECOMMENDATIONS_TOTAL.labels(use_case.slug, verdict.effect).inc()
    RecommendationEvent.objects.bulk_create(events)
    PolicyDecision.objects.bulk_create(decisions)
    ReviewTask.objects.bulk_create(tasks)
    deliveries_schedule(recommendations=approved, destinations=destinations, new=True)
    return [recommendation for *_, recommendation in planned]


def recommendation_release(*, recommendation: Recommendation, actor: Actor, event_type: str, payload: dict) -> None:
    """A human approval (after review): record it and hand the output to every destination once.
    With the automatic allow in _recommendations_create, the only ways to delivery."""
    from apps.delivery.services import deliveries_schedule

    recommendation.decided_at = clock.now()
    recommendation.status = (
        Recommendation.Status.EDITED if event_type == EventType.EDITED else Recommendation.Status.APPROVED
    )
    event_append(recommendation=recommendation, type=event_type, actor=actor, payload=payload)
    destinations = list(recommendation.use_case.destinations.all())
    if deliveries_schedule(recommendations=[recommendation], destinations=destinations):
        recommendation.status = Recommendation.Status.DELIVERING
    recommendation.save(update_fields=["status", "decided_at", "final_content"])


def recommendation_reject(*, recommendation: Recommendation, actor: Actor, payload: dict) -> None:
    recommendation.status = Recommendation.Status.REJECTED
    recommendation.decided_at = clock.now()
    recommendation.save(update_fields=["status", "decided_at"])
    event_append(recommendation=recommendation, type=EventType.REJECTED, actor=actor, payload=payload)


def recommendation_lock(*, pk: int) -> Recommendation:
    """The recommendation row, locked for the rest of the transaction (events are appended in order)."""
    return Recommendation.objects.select_for_update(of=("self",)).select_related("use_case").get(pk=pk)
