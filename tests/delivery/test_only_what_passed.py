"""Only outputs the policy allowed, or a reviewer approved or edited, reach a destination: blocked,
rejected and queued-for-review ones get no Delivery and no write, and delivery_send itself refuses an
output that did not pass. Written back into the demo CRM (a real SQLite database) through SqlClient."""

from apps.core.actors import Actor
from apps.delivery import services
from apps.delivery.models import Delivery
from apps.reviews.services import review_task_decide
from apps.workflows.models import Recommendation
from apps.workflows.services import Draft, recommendation_submit
from tests.delivery.helpers import crm_task_rows


def _decide(world, recommendation, decision, **extra):
    review_task_decide(actor=Actor(user=world.reviewer), task=recommendation.review_task, decision=decision, **extra)
    recommendation.refresh_from_db()
    return recommendation


def test_allowed_output_is_written_back_once(world, allowed, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        (recommendation,) = allowed(text="Call the sponsor before the renewal.")
    delivery = Delivery.objects.get(recommendation=recommendation)
    rows = crm_task_rows(world)
    assert len(rows) == 1
    row = rows[0]
    assert (row["account_id"], row["body"]) == (recommendation.subject_key, "Call the sponsor before the renewal.")
    assert row["subject"] == f"Churn risk on CRM accounts: {recommendation.subject_key}"
    assert row["doorstep_delivery_id"] == f"dlv-{delivery.pk}"
    assert delivery.status == "succeeded" and delivery.external_id == str(row["task_id"])
    assert delivery.attempt_log[-1]["ok"] and str(row["task_id"]) in delivery.last_response
    recommendation.refresh_from_db()
    assert recommendation.status == "delivered" and recommendation.delivered_at is not None
    delivered = recommendation.events.get(type="delivered")
    assert delivered.payload["external_id"] == delivery.external_id

    # A duplicate attempt (a redelivered task after the write, before the row was marked) writes nothing new.
    Delivery.objects.filter(pk=delivery.pk).update(status="pending")
    assert services.delivery_send(delivery_id=delivery.pk).external_id == delivery.external_id
    assert len(crm_task_rows(world)) == 1


def test_approved_and_edited_outputs_are_delivered_with_the_final_text(
    world, queued_recommendation, django_capture_on_commit_callbacks
):
    approved = queued_recommendation(subject_key="ACC-0002", text="Offer a 20% discount to the sponsor.")
    edited = queued_recommendation(subject_key="ACC-0003", text="Offer a 25% discount now.")
    with django_capture_on_commit_callbacks(execute=True):
        _decide(world, approved, "approve")
        _decide(world, edited, "edit", edited_text="Offer a 10% discount and a training session.")
    bodies = {row["account_id"]: row["body"] for row in crm_task_rows(world)}
    assert bodies == {
        "ACC-0002": "Offer a 20% discount to the sponsor.",
        "ACC-0003": "Offer a 10% discount and a training session.",
    }
    for recommendation in (approved, edited):
        recommendation.refresh_from_db()
        assert recommendation.status == "delivered"


def test_queued_rejected_and_blocked_outputs_never_leave(
    world, queued_recommendation, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        queued = queued_recommendation(subject_key="ACC-0004")
        rejected = _decide(world, queued_recommendation(subject_key="ACC-0005"), "reject", reason_code="inaccurate")
        (blocked,) = recommendation_submit(
            actor=Actor(user=world.integrator),
            use_case=world.replies,
            drafts=[
                Draft(
                    subject_key="TCK-0001",
                    content={"text": "Here is how to export your data."},
                    confidence=0.9,
                    context={"subject": "GDPR: delete my data"},
                )
            ],
        )
    assert (queued.status, rejected.status, blocked.status) == ("queued_for_review", "rejected", "blocked")
    assert not Delivery.objects.filter(recommendation__in=[queued, rejected, blocked]).exists()
    assert crm_task_rows(world) == []


def test_delivery_send_refuses_an_output_that_did_not_pass(world, queued_recommendation, allowed):
    """A Delivery row for an output under review (as a bug elsewhere could create) is never sent."""
    queued = queued_recommendation()
    stray = Delivery.objects.create(recommendation=queued, destination=world.crm_tasks)
    after = services.delivery_send(delivery_id=stray.pk)
    assert after.status == "failed" and after.attempts == 0
    assert after.last_error.startswith("Not sent: the output is queued for review")
    assert after.attempt_log[-1]["ok"] is False and "Not sent" in after.attempt_log[-1]["error"]
    queued.refresh_from_db()
    assert queued.status == "queued_for_review"  # the output's own state is untouched
    assert crm_task_rows(world) == []

    # A state that says "approved" is not enough: the trail must record the approval.
    (other,) = allowed(start=7)
    Recommendation.objects.filter(pk=queued.pk).update(status="approved")
    forged = Delivery.objects.create(recommendation_id=queued.pk, destination=world.ticket_notes)
    after = services.delivery_send(delivery_id=forged.pk)
    assert after.status == "failed" and "records no approval" in after.last_error
    assert crm_task_rows(world) == []
    assert Delivery.objects.get(recommendation=other).status == "pending"  # the allowed one is untouched


def test_bi_tables_get_no_per_output_delivery(world, allowed, add_destination):
    from apps.connectors.models import Destination

    add_destination(Destination.Kind.BI_TABLE, world.crm_connector, table="doorstep_outputs", keep_crm=True)
    (recommendation,) = allowed()
    assert [d.destination for d in Delivery.objects.filter(recommendation=recommendation)] == [world.crm_tasks]
