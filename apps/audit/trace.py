"""The trace of one AI output as a plain document (the API's JSON): every stage in order with its times and
actors, from trigger to business outcome, and whether the output's event chain holds."""

from apps.reporting.models import BusinessOutcome
from apps.workflows.events import chain_verify
from apps.workflows.models import Recommendation


def _at(value) -> str | None:
    return value.isoformat() if value else None


def trace_document(recommendation: Recommendation) -> dict:
    """`recommendation` as read by workflows.selectors.recommendation_trace (its relations prefetched)."""
    run = recommendation.run
    decision = getattr(recommendation, "policy_decision", None)
    task = getattr(recommendation, "review_task", None)
    events = sorted(recommendation.events.all(), key=lambda e: e.sequence)
    return {
        "id": recommendation.pk,
        "use_case": recommendation.use_case.slug,
        "subject": recommendation.subject_key,
        "status": recommendation.status,
        "producer": recommendation.producer,
        "trigger": {
            "kind": run.trigger if run else "api",
            "at": _at(run.created_at if run else recommendation.created_at),
            "run": run.pk if run else None,
        },
        "context": [
            {
                "source": snapshot.source,
                "record_ids": snapshot.record_ids,
                "data_as_of": _at(snapshot.data_as_of),
                "freshness": snapshot.freshness,
                "quality": snapshot.quality,
                "content_hash": snapshot.content_hash,
                "values_stored": not snapshot.values_hashed,
                "fetched_at": _at(snapshot.fetched_at),
            }
            for snapshot in (run.context_snapshots.all() if run else ())
        ],
        "model": {
            "endpoint": str(run.model_endpoint) if run.model_endpoint else None,
            "used_fallback": run.used_fallback,
            "attempts": run.model_attempts,
            "latency_ms": run.model_latency_ms,
            "tokens_in": run.tokens_in,
            "tokens_out": run.tokens_out,
            "cost": str(run.cost),
            "error": run.error,
        }
        if run
        else None,
        "policy": {
            "version": str(recommendation.policy_version) if recommendation.policy_version else None,
            "effect": decision.effect,
            "rules_fired": decision.fired_rules,
            "signals": decision.signals,
            "redactions": decision.redactions,
            "evaluated_at": _at(decision.evaluated_at),
        }
        if decision
        else None,
        "review": {
            "queue": task.queue.name,
            "status": task.status,
            "sample": task.is_sample,
            "required_reviews": task.required_reviews,
            "claims": [
                {"by": e.actor_label, "at": _at(e.at), "type": e.type}
                for e in events
                if e.type in ("claimed", "claim_taken_over")
            ],
            "verdicts": [
                {
                    "reviewer": verdict.reviewer.get_username(),
                    "decision": verdict.decision,
                    "reason": verdict.reason_code,
                    "comment": verdict.comment,
                    "diff": verdict.diff,
                    "edit_distance": verdict.edit_distance,
                    "seconds_spent": verdict.seconds_spent,
                    "at": _at(verdict.created_at),
                }
                for verdict in sorted(task.verdicts.all(), key=lambda v: (v.created_at, v.pk))
            ],
        }
        if task
        else None,
        "deliveries": [
            {
                "destination": delivery.destination.name,
                "status": delivery.status,
                "external_id": delivery.external_id,
                "attempts": delivery.attempts,
                "delivered_at": _at(delivery.delivered_at),
                "last_error": delivery.last_error,
            }
            for delivery in recommendation.deliveries.all()
        ],
        "events": [
            {"sequence": e.sequence, "type": e.type, "at": _at(e.at), "actor": e.actor_label, "hash": e.hash}
            for e in events
        ],
        "outcomes": [
            {
                "kind": outcome.kind,
                "value": str(outcome.value) if outcome.value is not None else None,
                "occurred_at": _at(outcome.occurred_at),
            }
            for outcome in BusinessOutcome.objects.filter(
                use_case_id=recommendation.use_case_id, subject_key=recommendation.subject_key
            ).order_by("occurred_at")[:50]
        ],
        "chain_intact": chain_verify(recommendation) is None,
    }
