import sqlite3

import pytest

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.reviews.services import review_task_decide
from apps.workflows.events import chain_verify
from apps.workflows.models import Recommendation, Run
from apps.workflows.services import Draft, recommendation_submit, run_request

pytestmark = pytest.mark.django_db(transaction=True)


def _writebacks(world, table):
    with sqlite3.connect(world.source_db) as conn:
        return conn.execute(f"SELECT * FROM {table}").fetchall()


def test_a_run_reads_the_source_calls_the_model_and_routes(world):
    run = run_request(
        actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-0007", trigger=Run.Trigger.API
    )
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    recommendation = run.recommendation
    snapshot = run.context_snapshots.get()
    assert snapshot.record_ids == ["ACC-0007"] and snapshot.data_as_of is not None
    assert run.model_endpoint == world.churn_model and run.cost > 0
    assert recommendation.status in {"queued_for_review", "delivered"}
    types = list(recommendation.events.values_list("type", flat=True))
    assert types[:4] == ["received", "context_gathered", "model_called", "evaluated"]
    assert chain_verify(recommendation) is None


def test_reviewed_output_is_written_back_once(world, queued_recommendation):
    recommendation = queued_recommendation(text="Call the sponsor; customer wrote from jane@acme.example.")
    assert "[email redacted]" in recommendation.final_content["text"]
    review_task_decide(
        actor=Actor(user=world.reviewer),
        task=recommendation.review_task,
        decision="edit",
        edited_text="Call the sponsor this week.",
    )
    recommendation.refresh_from_db()
    assert recommendation.status == Recommendation.Status.DELIVERED
    rows = _writebacks(world, "crm_tasks")
    assert len(rows) == 1 and "Call the sponsor this week." in rows[0]
    delivered = recommendation.events.get(type="delivered")
    assert delivered.payload["external_id"] and recommendation.events.get(type="edited").actor_user == world.reviewer


def test_fallback_endpoint_answers_when_the_primary_fails(world):
    world.churn_model.config = {"artifact": "/nonexistent/model.joblib"}
    world.churn_model.save()
    run = run_request(
        actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-0002", trigger=Run.Trigger.API
    )
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert run.used_fallback and run.model_endpoint == world.churn_fallback
    assert run.model_attempts == world.churn.model_max_attempts + 1
    # What the run saw of each connector is on the integrator's list, and health changes are in the history.
    for connector in (world.churn_model, world.churn_fallback, world.crm_connector):
        connector.refresh_from_db()
    assert world.churn_model.health == "failing" and "nonexistent" in world.churn_model.last_error
    assert world.churn_model.history.first().history_change_reason == "Health as seen by a run or delivery"
    assert world.churn_fallback.health == "ok" and world.churn_fallback.last_success_at is not None
    assert world.crm_connector.last_success_at is not None


def test_unknown_subject_fails_the_run_with_a_reason(world):
    run = run_request(
        actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-9999", trigger=Run.Trigger.API
    )
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and "ACC-9999" in run.error


def test_privacy_requests_are_blocked(world):
    (recommendation,) = recommendation_submit(
        actor=Actor(user=world.integrator),
        use_case=world.replies,
        drafts=[
            Draft(
                subject_key="TCK-0003",
                content={"text": "Sure, done."},
                confidence=0.9,
                context={"subject": "GDPR: delete my data"},
            )
        ],
    )
    assert recommendation.status == Recommendation.Status.BLOCKED
    assert recommendation.policy_decision.fired_rules[0]["name"] == "Privacy request"
    assert not recommendation.deliveries.exists()
    assert chain_verify(recommendation) is None


def test_a_batch_is_evaluated_item_by_item(world):
    drafts = [
        Draft(subject_key="ACC-0001", content={"text": "Keep the cadence."}, confidence=0.95),
        Draft(
            subject_key="ACC-0002",
            content={"text": "Offer 20% off."},
            confidence=0.95,
            proposed_action={"discount_pct": 20},
        ),
        Draft(subject_key="ACC-0003", content={"text": "Unsure."}, confidence=0.2),
    ]
    allowed, large_discount, unsure = recommendation_submit(
        actor=Actor(user=world.integrator), use_case=world.churn, drafts=drafts
    )
    allowed.refresh_from_db()
    assert allowed.status == Recommendation.Status.DELIVERED
    assert large_discount.review_task.reasons[0]["name"] == "Large discount"
    assert unsure.review_task.reasons[0]["name"] == "Low confidence"
    for recommendation in (allowed, large_discount, unsure):
        assert chain_verify(recommendation) is None


def test_who_may_submit(world):
    draft = Draft(subject_key="ACC-0001", content={"text": "x"})
    with pytest.raises(PermissionDenied):
        recommendation_submit(actor=Actor(user=world.reviewer), use_case=world.churn, drafts=[draft])
    world.churn.status = "paused"
    world.churn.save()
    with pytest.raises(ServiceError):
        recommendation_submit(actor=Actor(user=world.integrator), use_case=world.churn, drafts=[draft])


def test_the_beat_schedule_starts_runs_for_its_subjects(world):
    from apps.workflows.tasks import use_case_schedule_task

    use_case_schedule_task(world.replies.pk, ["TCK-0001", "TCK-0002"])
    runs = Run.objects.filter(use_case=world.replies, trigger=Run.Trigger.SCHEDULE)
    assert sorted(runs.values_list("subject_key", flat=True)) == ["TCK-0001", "TCK-0002"]
    assert all(run.status == Run.Status.SUCCEEDED for run in runs)


def test_a_retried_run_reuses_its_context_and_model_answer(world, monkeypatch):
    """The worker dies after the model answered: the redelivered task does not pay for a second call."""
    from apps.workflows import services

    calls = []
    real_call = services.call_model
    monkeypatch.setattr(services, "call_model", lambda *a, **kw: calls.append(1) or real_call(*a, **kw))
    real_create = services._recommendations_create

    def crash_once(**kwargs):
        monkeypatch.setattr(services, "_recommendations_create", real_create)
        raise SystemExit("worker killed")

    monkeypatch.setattr(services, "_recommendations_create", crash_once)
    run = Run.objects.create(use_case=world.churn, subject_key="ACC-0008", trigger=Run.Trigger.API)
    with pytest.raises(SystemExit):
        services.run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING and run.model_output is not None and len(calls) == 1

    services.run_execute(run_id=run.pk)  # the redelivered task
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and len(calls) == 1
    assert run.context_snapshots.count() == 1 and Recommendation.objects.filter(run=run).count() == 1
    assert set(run.step_timings) == {"gather_context", "call_model", "evaluate_and_route"}
