"""The path of one AI output: run → context → model → policy → route (deliver / review / block).

Writes take an Actor, run in one transaction with their lifecycle events, and send tasks after commit.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils.text import slugify
from guardian.shortcuts import assign_perm

from apps.connectors import datasets
from apps.connectors.clients.errors import ConnectorError, ModelCallError
from apps.connectors.clients.model_endpoints import (
    ModelRateLimited,
    ModelResult,
    ModelTimeout,
    call_model,
    retry_delay,
)
from apps.connectors.models import Destination
from apps.connectors.services import connector_outcome_record
from apps.core import clock, metrics
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, NotFound, PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission, restrict
from apps.core.tasks import send_after_commit
from apps.monitoring.services import budget_plan, model_answer_account
from apps.permissions.services import object_permission_grant
from apps.policies import evaluation
from apps.policies.models import PolicyDecision, Rule
from apps.policies.selectors import policy_active_version
from apps.reporting.holdout import is_held_out
from apps.reviews import sla as review_sla
from apps.reviews.models import ReviewQueue, ReviewTask

from .controls import Control, use_case_controls
from .events import event_append, events_build
from .models import ContextSnapshot, Recommendation, RecommendationEvent, Run, UseCase, UseCaseGroupObjectPermission

EventType = RecommendationEvent.Type
logger = logging.getLogger(__name__)


def _require_runnable(actor: Actor, use_case: UseCase) -> None:
    if actor.user is not None and not has_object_permission(actor.user, "run_usecase", use_case):
        raise PermissionDenied("You may not run or submit outputs for this use case.")
    if use_case.risk_tier == UseCase.RiskTier.PROHIBITED:
        raise ServiceError(
            f"Use case {use_case.slug} is of a prohibited risk tier: it never runs.",
            field="use_case",
            code="prohibited_tier",
        )
    if use_case.status not in UseCase.RUNNABLE_STATUSES:
        raise ServiceError(
            f"Use case {use_case.slug} is {use_case.get_status_display()}; only pilot or production use cases run.",
            field="use_case",
            code="not_runnable",
        )


def run_request(*, actor: Actor, use_case: UseCase, subject_key: str, trigger: str) -> Run:
    """Ask for a run of `use_case` for one subject; the worker executes it after commit. Needs run_usecase.
    A subject of the control group (reporting.holdout) gets a run recorded as held out, and nothing else:
    no model call, no recommendation; the run is its trigger time for the ROI comparison."""
    from .tasks import run_execute_task

    _require_runnable(actor, use_case)
    subject_key = (subject_key or "").strip()
    if not subject_key:
        raise ServiceError("The subject key is required.", field="subject")
    if is_held_out(use_case, subject_key):
        return _run_held_out_record(actor=actor, use_case=use_case, subject_key=subject_key, trigger=trigger)
    with transaction.atomic():
        run = Run.objects.create(use_case=use_case, subject_key=subject_key, trigger=trigger, requested_by=actor.user)
        send_after_commit(run_execute_task, run.pk)
    return run


def _run_held_out_record(*, actor: Actor, use_case: UseCase, subject_key: str, trigger: str) -> Run:
    now = clock.now()
    return Run.objects.create(
        use_case=use_case,
        subject_key=subject_key,
        trigger=trigger,
        requested_by=actor.user,
        status=Run.Status.HELD_OUT,
        created_at=now,
        finished_at=now,
    )


def _call_with_fallback(
    use_case: UseCase, records: list[dict], endpoints: list
) -> tuple[ModelResult, object, bool, int, list[str]]:
    """`endpoints`: those the budgets allow (the primary, then the fallback; monitoring's budget_plan). Each gets up
    to model_max_attempts calls of at most model_timeout_seconds, with capped exponential backoff and jitter
    between them (a 429's short Retry-After is honoured); a permanent error (credentials, a 4xx,
    configuration) or a long rate limit moves on to the fallback at once. Every call's outcome goes to the
    endpoint's health and the call-duration metric."""
    errors: list[str] = []
    attempts = 0
    timeout = use_case.model_timeout_seconds
    max_attempts = max(1, use_case.model_max_attempts)  # 0 would skip a configured endpoint without a word
    for endpoint, is_fallback in endpoints:
        for attempt in range(1, max_attempts + 1):
            attempts += 1
            started = time.perf_counter()
            try:
                result = call_model(endpoint, records=records, timeout=timeout)
                if result.latency_ms > timeout * 1000:  # a local model, or a remote that trickled its answer
                    raise ModelTimeout(f"{endpoint.name}: no answer within {timeout:g}s")
            except ModelCallError as exc:
                outcome = {ModelTimeout: "timeout", ModelRateLimited: "rate_limited"}.get(type(exc), "error")
                metrics.MODEL_CALL_SECONDS.labels(endpoint.name, outcome).observe(time.perf_counter() - started)
                errors.append(str(exc))
                connector_outcome_record(connector=endpoint, ok=False, error=str(exc))
                delay = retry_delay(exc, attempt) if attempt < max_attempts else None
                if delay is None:
                    break
                time.sleep(delay)
                continue
            metrics.MODEL_CALL_SECONDS.labels(endpoint.name, "ok").observe(time.perf_counter() - started)
            connector_outcome_record(connector=endpoint, ok=True)
            return result, endpoint, is_fallback, attempts, errors
    raise ModelCallError("; ".join(errors) or "The use case has no model endpoint")


def run_execute(*, run_id: int, actor: Actor | None = None) -> Run:
    """Execute a run step by step. Idempotent per step: the context snapshot and the model's answer are
    stored as soon as they exist, so a redelivered task (worker killed mid-run) reuses them instead of
    calling the model (and paying for it) again; the recommendation is created once (one per run)."""
    actor = actor or Actor.for_system("run_execute")
    run = Run.objects.select_related(
        "use_case__source_dataset__connector", "use_case__model_endpoint", "use_case__fallback_endpoint"
    ).get(pk=run_id)
    if run.status in (Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.HELD_OUT):
        return run
    use_case = run.use_case
    if is_held_out(use_case, run.subject_key):  # the share was raised after the request
        Run.objects.filter(pk=run.pk).update(status=Run.Status.HELD_OUT, finished_at=clock.now())
        run.refresh_from_db()
        return run
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
            review_required=answer.get("budget_review", False),  # the use case's hard budget action
            cost=run.cost,
            context=snapshot.records[0],
            freshness=snapshot.freshness,
            quality=snapshot.quality,
            data_gate=datasets.context_gate(snapshot),
            run=run,
            pipeline_events=[
                (
                    EventType.CONTEXT,
                    {
                        "source": snapshot.source,
                        "record_ids": snapshot.record_ids,
                        "data_as_of": snapshot.data_as_of,
                        "freshness": snapshot.freshness,
                        "quality": snapshot.quality,
                        "values_hashed": snapshot.values_hashed,
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
    """Step 1: read the subject's records and stamp them (source, ids, as-of, freshness and quality verdicts);
    a snapshot stored by an earlier attempt is reused. When the dataset keeps only the hash of the values,
    the values live in memory for this attempt; a retry reads them again and must find the same hash."""
    dataset = run.use_case.source_dataset
    if dataset is None:
        raise ServiceError("The use case has no source dataset")
    stored = ContextSnapshot.objects.filter(run=run, dataset=dataset).select_related("dataset").first()
    if stored is None:
        tick = time.perf_counter()
        live, now = datasets.reads_live(dataset), clock.now()
        try:
            context = datasets.dataset_context(dataset=dataset, key=run.subject_key, now=now)
        except ConnectorError as exc:
            if live:
                connector_outcome_record(connector=dataset.connector, ok=False, error=str(exc))
            raise
        if live:
            connector_outcome_record(connector=dataset.connector, ok=True)
        run.step_timings["gather_context"] = round((time.perf_counter() - tick) * 1000, 2)
        if not context.records:
            raise ServiceError(f"No record with {dataset.key_field} = {run.subject_key!r} in {dataset}")
        try:
            with transaction.atomic():
                snapshot = ContextSnapshot.objects.create(
                    run=run,
                    dataset=dataset,
                    source=f"{dataset.connector.name} / {dataset.table}",
                    record_ids=context.record_ids,
                    records=context.records if dataset.store_values else [],
                    values_hashed=not dataset.store_values,
                    content_hash=context.content_hash,
                    data_as_of=context.data_as_of,
                    freshness=context.freshness,
                    freshness_sla=dataset.freshness_sla,
                    quality=context.quality,
                    quality_errors=context.quality_errors,
                    fetched_at=now,
                )
        except IntegrityError:  # a concurrent attempt of the same run stored it first
            stored = ContextSnapshot.objects.select_related("dataset").get(run=run, dataset=dataset)
        else:
            # In memory only (never saved): the model and the policy need the values of this attempt.
            snapshot.records = context.records
            return snapshot
    if stored.values_hashed:
        stored.records = datasets.snapshot_values_recover(stored, key=run.subject_key)  # in memory only
    return stored


def _run_call_model(run: Run, snapshot: ContextSnapshot) -> None:
    """Step 2: call the model on the snapshot's records and store its answer on the run, once."""
    if run.model_output is not None:
        return
    tick = time.perf_counter()
    use_case = run.use_case
    plan = budget_plan(use_case=use_case)  # past a hard limit: fewer endpoints, review, or no call at all
    result, endpoint, used_fallback, attempts, errors = _call_with_fallback(use_case, snapshot.records, plan.endpoints)
    run.step_timings["call_model"] = round((time.perf_counter() - tick) * 1000, 2)
    stored = Run.objects.filter(pk=run.pk, model_output__isnull=True).update(
        model_output={
            "output": result.output,
            "confidence": result.confidence,
            "proposed_action": result.proposed_action,
            "budget_review": plan.review_required,
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
        return
    model_answer_account(run=run, use_case=use_case, endpoint=endpoint)


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
    quality: str = ContextSnapshot.Quality.UNCHECKED
    data_gate: list = field(default_factory=list)  # findings of datasets.context_gate on the run's snapshot
    run: Run | None = None
    pipeline_events: list = field(default_factory=list)
    review_required: bool = False  # a blocking approval for an agent: a person decides even what the policy allows


def recommendation_submit(*, actor: Actor, use_case: UseCase, drafts: list[Draft]) -> list[Recommendation]:
    """Bring your own model: outputs produced elsewhere enter at policy evaluation, one or a batch.
    Needs run_usecase. All or nothing: the caller validates items first. A draft for a subject of the
    control group is refused (409, field "subject"); its held-out run is still recorded, as run_request does,
    so the ROI comparison knows the subject was triggered. Batch callers screen with holdout_subjects_record."""
    _require_runnable(actor, use_case)
    held = _held_out_record(actor=actor, use_case=use_case, subject_keys=[d.subject_key for d in drafts])
    if held:
        raise Conflict(
            f"Subject {sorted(held)[0]!r} is in the control group of {use_case.slug} (holdout): it never gets a "
            "recommendation.",
            field="subject",
            code="held_out",
        )
    with transaction.atomic():
        return _recommendations_create(actor=actor, use_case=use_case, drafts=drafts)


def holdout_subjects_record(*, actor: Actor, use_case: UseCase, subject_keys: list[str]) -> set[str]:
    """The subjects among `subject_keys` that are in the use case's control group, each recorded as a
    held-out run (trigger: API). Needs run_usecase."""
    _require_runnable(actor, use_case)
    return _held_out_record(actor=actor, use_case=use_case, subject_keys=subject_keys)


def _held_out_record(*, actor: Actor, use_case: UseCase, subject_keys: list[str]) -> set[str]:
    held = {key for key in subject_keys if is_held_out(use_case, key)}
    for key in sorted(held):
        _run_held_out_record(actor=actor, use_case=use_case, subject_key=key, trigger=Run.Trigger.API)
    return held


def _recommendations_create(*, actor: Actor, use_case: UseCase, drafts: list[Draft]) -> list[Recommendation]:
    """Evaluate the active policy on each draft, store the recommendations with their verdicts and first
    events, and route them: review task, block, or deliveries (sent after commit). An allowed output still
    goes to review when the use case's sampling picks it (a task marked as a sample); a prohibited use case
    delivers nothing. Bulk inserts, so a batch costs a handful of queries. The caller holds the transaction."""
    from apps.delivery.services import deliveries_schedule

    version = policy_active_version(policy_id=use_case.policy_id) if use_case.policy_id else None
    queue = use_case.review_queue
    destinations = _per_output_destinations(use_case)
    released = Recommendation.Status.DELIVERING if destinations else Recommendation.Status.APPROVED
    use_case_vars = {"slug": use_case.slug, "risk_tier": use_case.risk_tier, "business_unit": use_case.business_unit}
    sample_rate = use_case.effective_review_sample_rate
    rule_queues = {}  # a review rule may name its own queue: read once per batch
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
            quality=draft.quality,
            data_gate=draft.data_gate,
        )
        effect = verdict.effect
        sampled = False
        if use_case.risk_tier == UseCase.RiskTier.PROHIBITED:
            effect = Rule.Effect.BLOCK  # the tier forbids the use: nothing it produces leaves
        elif effect not in (Rule.Effect.BLOCK, Rule.Effect.REVIEW) and draft.review_required:
            effect = Rule.Effect.REVIEW
        elif effect not in (Rule.Effect.BLOCK, Rule.Effect.REVIEW) and review_sampled(
            use_case=use_case, draft=draft, rate=sample_rate
        ):
            effect, sampled = Rule.Effect.REVIEW, True
        task_queue = queue
        if effect == Rule.Effect.REVIEW and not sampled and verdict.review_queue_id:
            if verdict.review_queue_id not in rule_queues:
                rule_queues[verdict.review_queue_id] = ReviewQueue.objects.filter(pk=verdict.review_queue_id).first()
            task_queue = rule_queues[verdict.review_queue_id] or queue
        if effect == Rule.Effect.REVIEW and task_queue is None:
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
        planned.append((draft, verdict, effect, sampled, task_queue, recommendation))
    Recommendation.objects.bulk_create([recommendation for *_, recommendation in planned])

    events, decisions, tasks, approved = [], [], [], []
    for draft, verdict, effect, sampled, task_queue, recommendation in planned:
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
            reason = ""
            if use_case.risk_tier == UseCase.RiskTier.PROHIBITED:
                reason = "the use case's risk tier is prohibited"
            elif sampled:
                reason = "sampled for review but the use case has no review queue"
            elif verdict.effect != effect:
                reason = "review required but the use case has no review queue"
            specs.append((EventType.BLOCKED, {"rules": fired_names, "reason": reason}))
        elif effect == Rule.Effect.REVIEW:
            queued = {"queue": task_queue.name, "rules": fired_names}
            if sampled:
                queued.update(sample=True, sample_rate=str(sample_rate), effect=verdict.effect)
            elif verdict.reviewers > 1:
                queued["reviewers"] = verdict.reviewers
            specs.append((EventType.QUEUED, queued))
            reasons = [f for f in verdict.fired if f["effect"] == Rule.Effect.REVIEW]
            tasks.append(
                ReviewTask(
                    queue=task_queue,
                    recommendation=recommendation,
                    priority=len(reasons) + (1 if use_case.risk_tier == UseCase.RiskTier.HIGH else 0),
                    reasons=reasons,
                    is_sample=sampled,
                    required_reviews=queued.get("reviewers", 1),
                    created_at=now,
                    due_at=review_sla.due_at(task_queue, now),
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


def review_sampled(*, use_case: UseCase, draft: Draft, rate: Decimal) -> bool:
    """Whether an allowed output is sampled for review. Deterministic (a hash of the use case, subject, run
    and content, no randomness), so replaying or re-testing the same outputs picks the same samples."""
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    content = json.dumps(draft.content, sort_keys=True, default=str)
    key = f"{use_case.pk}|{draft.subject_key}|{draft.run.pk if draft.run else ''}|{content}"
    point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return point < rate


def recommendation_release(*, recommendation: Recommendation, actor: Actor, event_type: str, payload: dict) -> None:
    """A human approval (after review): record it and hand the output to every destination once.
    With the automatic allow in _recommendations_create, the only ways to delivery."""
    from apps.delivery.services import deliveries_schedule

    recommendation.decided_at = clock.now()
    recommendation.status = (
        Recommendation.Status.EDITED if event_type == EventType.EDITED else Recommendation.Status.APPROVED
    )
    event_append(recommendation=recommendation, type=event_type, actor=actor, payload=payload)
    destinations = _per_output_destinations(recommendation.use_case)
    if deliveries_schedule(recommendations=[recommendation], destinations=destinations):
        recommendation.status = Recommendation.Status.DELIVERING
    recommendation.save(update_fields=["status", "decided_at", "final_content"])


def _per_output_destinations(use_case: UseCase) -> list[Destination]:
    """Destinations that take each output as it is approved (a BI table is refreshed in bulk by beat)."""
    return list(use_case.destinations.filter(kind__in=Destination.PER_OUTPUT_KINDS))


def recommendation_reject(*, recommendation: Recommendation, actor: Actor, payload: dict) -> None:
    recommendation.status = Recommendation.Status.REJECTED
    recommendation.decided_at = clock.now()
    recommendation.save(update_fields=["status", "decided_at"])
    event_append(recommendation=recommendation, type=EventType.REJECTED, actor=actor, payload=payload)


def recommendation_lock(*, pk: int) -> Recommendation:
    """The recommendation row, locked for the rest of the transaction (events are appended in order)."""
    return Recommendation.objects.select_for_update(of=("self",)).select_related("use_case").get(pk=pk)


S = UseCase.Status
# The lifecycle: where a use case may go from each status (retired is final).
USE_CASE_TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.PROPOSED: (S.IN_REVIEW,),
    S.IN_REVIEW: (S.PILOT, S.PROPOSED),
    S.PILOT: (S.PRODUCTION, S.PAUSED, S.RETIRED),
    S.PRODUCTION: (S.PAUSED, S.RETIRED),
    S.PAUSED: (S.PILOT, S.PRODUCTION, S.RETIRED),
    S.RETIRED: (),
}
REASON_MAX_CHARS = 100  # simple-history's change reason column


class ControlsFailing(Conflict):
    """Production refused: `controls` are the failing controls of the scorecard."""

    def __init__(self, controls: list[Control]):
        listed = "; ".join(f"{control.name}: {control.reason}" for control in controls)
        super().__init__(
            f"Production needs all seven controls in place; failing: {listed}", field="to", code="controls_failing"
        )
        self.controls = controls


def use_case_allowed_transitions(use_case: UseCase) -> tuple[str, ...]:
    return USE_CASE_TRANSITIONS.get(use_case.status, ())


def _require_change(actor: Actor, use_case: UseCase) -> None:
    """404 for a use case the actor may not see (its existence is not revealed), 403 when only seen."""
    if not has_object_permission(actor.user, "view_usecase", use_case):
        raise NotFound("No such use case, or you may not see it.")
    if not has_object_permission(actor.user, "change_usecase", use_case):
        raise PermissionDenied("You may not change this use case.")


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Say why: a reason is required.", field="reason", code="required")
    if len(reason) > REASON_MAX_CHARS:
        raise ServiceError(f"Keep the reason within {REASON_MAX_CHARS} characters.", field="reason")
    return reason


def use_case_transition(*, actor: Actor, use_case: UseCase, to: str, reason: str) -> UseCase:
    """Move a use case along its lifecycle (USE_CASE_TRANSITIONS). Needs change_usecase and a reason, which
    history keeps with the user. Production needs every control of the scorecard passing, and a prohibited
    risk tier never runs (pilot or production)."""
    _require_change(actor, use_case)
    if to not in UseCase.Status.values:
        raise ServiceError(f"Unknown status {to!r}.", field="to")
    reason = _reason(reason)
    with transaction.atomic():
        use_case = UseCase.objects.select_for_update().get(pk=use_case.pk)
        if to not in use_case_allowed_transitions(use_case):
            allowed = ", ".join(UseCase.Status(s).label for s in use_case_allowed_transitions(use_case)) or "none"
            raise Conflict(
                f"A use case cannot go from {use_case.get_status_display()} to {UseCase.Status(to).label} "
                f"(allowed: {allowed}).",
                field="to",
                code="invalid_transition",
            )
        if to in UseCase.RUNNABLE_STATUSES and use_case.risk_tier == UseCase.RiskTier.PROHIBITED:
            raise Conflict(
                "The risk tier is prohibited: this use case may not run.", field="to", code="prohibited_tier"
            )
        if to == UseCase.Status.PRODUCTION:
            failing = [control for control in use_case_controls(use_case) if not control.passed]
            if failing:
                raise ControlsFailing(failing)
        use_case.status = to
        use_case._history_user = actor.history_user
        use_case._change_reason = reason
        use_case.save(update_fields=["status", "updated_at"])
    return use_case


def use_case_sample_rate_set(*, actor: Actor, use_case: UseCase, rate: Decimal | None, reason: str) -> UseCase:
    """Override the share of allowed outputs sent to review (None: the risk tier's default). Needs
    change_usecase and a reason, kept in history."""
    _require_change(actor, use_case)
    if rate is not None and not Decimal("0") <= rate <= Decimal("1"):
        raise ServiceError("The review sample rate is a share between 0 and 1 (0 % to 100 %).", field="rate")
    reason = _reason(reason)
    with transaction.atomic():
        use_case = UseCase.objects.select_for_update().get(pk=use_case.pk)
        use_case.review_sample_rate = rate
        use_case._history_user = actor.history_user
        use_case._change_reason = reason
        use_case.save(update_fields=["review_sample_rate", "updated_at"])
    return use_case


SETTINGS_FIELDS = (
    "name",
    "purpose",
    "owner",
    "risk_tier",
    "risk_reason",
    "source_dataset",
    "model_endpoint",
    "fallback_endpoint",
    "policy",
    "review_queue",
    "sla_breach_action",
    "model_timeout_seconds",
    "model_max_attempts",
    "manual_minutes_per_item",
    "hourly_cost",
    "value_per_accepted",
    "holdout_share",
    "monthly_budget",
    "budget_soft_share",
    "budget_hard_action",
)
MAX_MODEL_TIMEOUT_SECONDS = 120
MAX_MODEL_ATTEMPTS = 10


def _settings_errors(actor: Actor, use_case: UseCase, destinations) -> list[tuple[str, str]]:
    """(field, message) for each setting that is out of range, not the actor's to use, or contradicts another."""
    errors = []
    user = actor.user
    for name in ("model_endpoint", "fallback_endpoint"):
        endpoint = getattr(use_case, name)
        if endpoint is not None and not endpoint.is_model_endpoint:
            errors.append((name, f"{endpoint} is not a model endpoint."))
    if use_case.model_endpoint_id and use_case.model_endpoint_id == use_case.fallback_endpoint_id:
        errors.append(("fallback_endpoint", "The fallback must be another endpoint than the model endpoint."))
    connectors = [
        (field, connector)
        for field, connector in (
            ("model_endpoint", use_case.model_endpoint),
            ("fallback_endpoint", use_case.fallback_endpoint),
            ("source_dataset", use_case.source_dataset.connector if use_case.source_dataset else None),
            *(("destinations", destination.connector) for destination in destinations),
        )
        if connector is not None
    ]
    for name, connector in connectors:
        if not has_object_permission(user, "use_connector", connector):
            errors.append((name, f"You may not use the connector {connector.name} in use cases."))
    if use_case.policy is not None and not has_object_permission(user, "view_policy", use_case.policy):
        errors.append(("policy", "No such policy, or you may not see it."))
    # The queue's reviewers read every output sent to review: only a queue the officer may see is theirs to choose.
    if use_case.review_queue is not None and not has_object_permission(user, "view_reviewqueue", use_case.review_queue):
        errors.append(("review_queue", "No such review queue, or you may not see it."))
    if use_case.risk_tier in (UseCase.RiskTier.HIGH, UseCase.RiskTier.PROHIBITED) and not use_case.risk_reason.strip():
        errors.append(("risk_reason", "Say why the use case is in this risk tier."))
    if use_case.risk_tier == UseCase.RiskTier.PROHIBITED and use_case.status in UseCase.RUNNABLE_STATUSES:
        errors.append(("risk_tier", "A prohibited use case may not run: pause or retire it first."))
    if not 0 < use_case.model_timeout_seconds <= MAX_MODEL_TIMEOUT_SECONDS:
        errors.append(
            ("model_timeout_seconds", f"The timeout is more than 0 and at most {MAX_MODEL_TIMEOUT_SECONDS} s.")
        )
    if not 1 <= use_case.model_max_attempts <= MAX_MODEL_ATTEMPTS:
        errors.append(("model_max_attempts", f"Attempts are 1 to {MAX_MODEL_ATTEMPTS}."))
    for name in ("manual_minutes_per_item", "hourly_cost", "value_per_accepted", "monthly_budget"):
        if (getattr(use_case, name) or 0) < 0:
            errors.append((name, "This figure cannot be negative."))
    if not 0 <= use_case.holdout_share <= Decimal("0.5"):
        errors.append(("holdout_share", "The holdout share is between 0 and 0.5 (half of the subjects)."))
    if not 0 <= use_case.budget_soft_share <= 1:
        errors.append(("budget_soft_share", "The alert share of the budget is between 0 and 1."))
    return errors


def use_case_settings_update(
    *, actor: Actor, use_case: UseCase, values: dict, destinations=None, reason: str
) -> UseCase:
    """Change a use case's settings (SETTINGS_FIELDS, and its destinations when given). Needs change_usecase
    and a reason, kept in history. Each connector it names must be one the actor may use, the policy and the
    review queue ones they can see. A use case in production keeps all seven controls: a change that would
    fail one is refused (pause it first). All or nothing."""
    _require_change(actor, use_case)
    unknown = set(values) - set(SETTINGS_FIELDS)
    if unknown:
        raise ServiceError(f"Unknown setting(s): {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
    reason = _reason(reason)
    with transaction.atomic():
        use_case = UseCase.objects.select_for_update().get(pk=use_case.pk)
        for name, value in values.items():
            setattr(use_case, name, value)
        destinations = list(use_case.destinations.all()) if destinations is None else list(destinations)
        errors = _settings_errors(actor, use_case, destinations)
        if errors:
            raise ServiceError(errors[0][1], field=errors[0][0])
        use_case._history_user = actor.history_user
        use_case._change_reason = reason
        use_case.save()
        use_case.destinations.set(destinations)
        if use_case.status == UseCase.Status.PRODUCTION:
            failing = [control for control in use_case_controls(use_case) if not control.passed]
            if failing:  # raising rolls the save back
                listed = "; ".join(f"{control.name}: {control.reason}" for control in failing)
                raise Conflict(
                    f"In production every control must stay in place; this change fails: {listed}. "
                    "Pause the use case first.",
                    code="controls_failing",
                )
    return use_case


def business_units_led(user) -> list[str]:
    """The business units whose use cases `user` may change (a superuser: every unit in use)."""
    use_cases = UseCase.objects.all() if user.is_superuser else restrict(UseCase.objects.all(), user, "change_usecase")
    return sorted(set(use_cases.values_list("business_unit", flat=True)))


def use_case_propose(
    *, actor: Actor, name: str, business_unit: str, purpose: str = "", risk_tier: str, risk_reason: str = ""
) -> UseCase:
    """Register a new use case as proposed, owned by the actor, in a business unit whose use cases the actor
    already governs. The unit's officers (groups that may change its use cases) and the actor get view and
    change on it; connectors, policy and queue are set afterwards (use_case_settings_update)."""
    user = actor.user
    name, business_unit = (name or "").strip(), (business_unit or "").strip()
    if not name:
        raise ServiceError("A name is required.", field="name")
    if business_unit not in business_units_led(user):
        raise PermissionDenied("You may only propose use cases in a business unit you govern.")
    if risk_tier not in UseCase.RiskTier.values:
        raise ServiceError(f"Unknown risk tier {risk_tier!r}.", field="risk_tier")
    if risk_tier in (UseCase.RiskTier.HIGH, UseCase.RiskTier.PROHIBITED) and not risk_reason.strip():
        raise ServiceError("Say why the use case is in this risk tier.", field="risk_reason")
    base = slugify(name)[:50] or "use-case"
    with transaction.atomic():
        slug, n = base, 1
        while UseCase.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{base}-{n}"
        use_case = UseCase(
            slug=slug,
            name=name,
            business_unit=business_unit,
            purpose=purpose,
            owner=user,
            risk_tier=risk_tier,
            risk_reason=risk_reason,
            status=UseCase.Status.PROPOSED,
        )
        use_case._history_user = actor.history_user
        use_case._change_reason = "Proposed"
        use_case.save()
        unit_officers = Group.objects.filter(
            pk__in=UseCaseGroupObjectPermission.objects.filter(
                permission__codename="change_usecase", content_object__business_unit=business_unit
            ).values("group_id")
        )
        for codename in ("view_usecase", "change_usecase"):
            for group in unit_officers:
                object_permission_grant(group=group, codename=codename, obj=use_case)
            assign_perm(codename, user, use_case)
    return use_case
