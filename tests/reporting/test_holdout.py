"""The control group: deterministic per subject, and a held-out subject never gets a recommendation — not by a
run, not through the API, not in the widget, not written back."""

from decimal import Decimal
from unittest import mock
from urllib.parse import urlsplit

import pytest

from apps.core.actors import Actor
from apps.delivery import services as delivery_services
from apps.delivery.models import Delivery
from apps.reporting.holdout import holdout_point, is_held_out
from apps.widget.services import widget_token_issue
from apps.workflows import services
from apps.workflows.models import Recommendation, Run, UseCase
from tests.delivery.helpers import crm_task_rows
from tests.factories import key_client

SUBJECTS = [f"ACC-{n:04d}" for n in range(1, 400)]


def _split(use_case: UseCase, share="0.5"):
    """(a held-out subject, a treated subject) at `share`."""
    share = Decimal(share)
    held = next(s for s in SUBJECTS if holdout_point(use_case.slug, s) < share)
    treated = next(s for s in SUBJECTS if holdout_point(use_case.slug, s) >= share)
    return held, treated


def _share(use_case: UseCase, share: str) -> None:
    UseCase.objects.filter(pk=use_case.pk).update(holdout_share=Decimal(share))
    use_case.refresh_from_db()


def _draft(subject: str) -> services.Draft:
    return services.Draft(
        subject_key=subject,
        content={"text": "Call the sponsor this week.", "score": 0.81},
        confidence=0.95,
        proposed_action={"type": "crm_task", "discount_pct": 0},
    )


def test_assignment_is_deterministic_stable_and_near_the_share():
    use_case = UseCase(slug="churn-risk", holdout_share=Decimal("0.1"))
    first = [is_held_out(use_case, s) for s in SUBJECTS]
    assert first == [is_held_out(use_case, s) for s in SUBJECTS]  # same answer every time, no state
    assert first == [holdout_point("churn-risk", s) < Decimal("0.1") for s in SUBJECTS]
    assert 0.05 < sum(first) / len(first) < 0.15
    # Raising the share only moves treated subjects into the holdout, never the reverse.
    wider = UseCase(slug="churn-risk", holdout_share=Decimal("0.3"))
    assert all(is_held_out(wider, s) for s, held in zip(SUBJECTS, first, strict=True) if held)
    # Another use case draws its own group; a zero share holds nobody out.
    other = [is_held_out(UseCase(slug="ticket-triage", holdout_share=Decimal("0.1")), s) for s in SUBJECTS]
    assert other != first
    assert not any(is_held_out(UseCase(slug="churn-risk", holdout_share=Decimal("0")), s) for s in SUBJECTS)


def test_a_run_for_a_held_out_subject_is_recorded_and_calls_no_model(world, django_capture_on_commit_callbacks):
    _share(world.churn, "0.5")
    held, _ = _split(world.churn)
    with (
        mock.patch("apps.workflows.services.call_model", side_effect=AssertionError("model called")) as call,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        run = services.run_request(
            actor=Actor(user=world.integrator), use_case=world.churn, subject_key=held, trigger=Run.Trigger.API
        )
        assert services.run_execute(run_id=run.pk).status == Run.Status.HELD_OUT
    assert callbacks == []  # no task sent
    call.assert_not_called()
    run.refresh_from_db()
    assert run.status == "held_out" and run.finished_at is not None
    assert not Recommendation.objects.filter(subject_key=held).exists()


def test_a_run_requested_before_the_share_was_raised_is_held_out_when_it_executes(world):
    held, _ = _split(world.churn)
    run = services.run_request(
        actor=Actor(user=world.integrator), use_case=world.churn, subject_key=held, trigger=Run.Trigger.API
    )
    assert run.status == "pending"
    _share(world.churn, "0.5")
    with mock.patch("apps.workflows.services.call_model", side_effect=AssertionError("model called")) as call:
        run = services.run_execute(run_id=run.pk)
    call.assert_not_called()
    assert run.status == "held_out" and not Recommendation.objects.filter(run=run).exists()


@pytest.mark.django_db(transaction=True)
def test_api_refuses_a_held_out_subject_and_nothing_is_written_back(world):
    _share(world.churn, "0.5")
    held, treated = _split(world.churn)
    client = key_client(world.integrator)
    payload = {
        "use_case": "churn-risk",
        "content": {"text": "Call the sponsor."},
        "confidence": 0.95,
        "proposed_action": {"type": "crm_task", "discount_pct": 0},
    }

    response = client.post("/api/v1/recommendations", {**payload, "subject": held}, format="json")

    assert response.status_code == 409, response.json()
    error = response.json()["errors"][0]
    assert error["field"] == "subject" and "control group" in error["message"]
    assert not Recommendation.objects.filter(subject_key=held).exists()
    assert Run.objects.get(subject_key=held).status == "held_out"  # the trigger is kept for the ROI comparison

    # In a batch only the held-out item is refused; the treated one is delivered and written back.
    response = client.post(
        "/api/v1/recommendations/batch",
        {"items": [{**payload, "subject": treated}, {**payload, "subject": held}]},
        format="json",
    )
    assert response.status_code == 207, response.json()
    first, second = response.json()["results"]
    assert first["status"] == "created"
    assert second["status"] == "error" and second["errors"][0]["field"] == "items[1].subject"
    assert not Recommendation.objects.filter(subject_key=held).exists()
    assert not Delivery.objects.filter(recommendation__subject_key=held).exists()
    assert [row["account_id"] for row in crm_task_rows(world)] == [treated]


def test_a_pending_write_back_is_refused_once_the_subject_is_held_out(world):
    held, _ = _split(world.churn)
    (recommendation,) = services.recommendation_submit(
        actor=Actor(user=world.integrator), use_case=world.churn, drafts=[_draft(held)]
    )
    delivery = Delivery.objects.get(recommendation=recommendation)
    _share(world.churn, "0.5")

    delivery = delivery_services.delivery_send(delivery_id=delivery.pk)

    assert delivery.status == "failed" and "control group" in delivery.last_error
    assert crm_task_rows(world) == []


def test_the_widget_shows_nothing_for_a_held_out_subject(client, world):
    held, treated = _split(world.churn)
    actor = Actor(user=world.integrator)
    services.recommendation_submit(actor=actor, use_case=world.churn, drafts=[_draft(held), _draft(treated)])
    links = {
        subject: urlsplit(widget_token_issue(actor=actor, use_case=world.churn, subject_key=subject).url).path
        for subject in (held, treated)
    }
    _share(world.churn, "0.5")

    held_page = client.get(links[held]).content.decode()
    treated_page = client.get(links[treated]).content.decode()

    assert "data-widget-empty" in held_page and "Call the sponsor this week." not in held_page
    assert "Call the sponsor this week." in treated_page
