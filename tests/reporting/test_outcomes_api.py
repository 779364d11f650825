"""Outcome and feedback ingestion: POST /api/v1/outcomes (batch, idempotent, per-item report, holdout flag at
record time), the `opened` feedback type, the batched feedback path's hash chains, and the `ignored` sweep."""

import datetime as dt
from decimal import Decimal
from unittest import mock

from django.db import IntegrityError

from apps.core import clock
from apps.core.actors import Actor
from apps.delivery.services import feedback_record, recommendations_ignored_record
from apps.reporting.holdout import holdout_point
from apps.reporting.models import BusinessOutcome
from apps.workflows.events import chain_verify, event_append
from apps.workflows.models import RecommendationEvent, UseCase
from apps.workflows.services import Draft, recommendation_submit
from tests.factories import key_client

AT = "2026-03-02T10:00:00Z"


def _outcome(event_id, subject="ACC-0001", kind="renewal_won", **extra):
    return {
        "event_id": event_id,
        "use_case": "churn-risk",
        "subject": subject,
        "kind": kind,
        "occurred_at": AT,
        **extra,
    }


def _released(world, *subjects):
    return recommendation_submit(
        actor=Actor(user=world.integrator),
        use_case=world.churn,
        drafts=[
            Draft(
                subject_key=s,
                content={"text": "Call the sponsor."},
                confidence=0.95,
                proposed_action={"type": "crm_task", "discount_pct": 0},
            )
            for s in subjects
        ],
    )


def test_outcomes_are_stored_once_with_the_subjects_group(world):
    UseCase.objects.filter(pk=world.churn.pk).update(holdout_share=Decimal("0.5"))
    subjects = [f"ACC-{n:04d}" for n in range(1, 60)]
    held = next(s for s in subjects if holdout_point("churn-risk", s) < Decimal("0.5"))
    treated = next(s for s in subjects if holdout_point("churn-risk", s) >= Decimal("0.5"))
    client = key_client(world.integrator)
    batch = [_outcome("o-1", treated, value="1200.50"), _outcome("o-2", held, kind="renewal_lost")]

    response = client.post("/api/v1/outcomes", {"outcomes": batch}, format="json")

    assert response.status_code == 200, response.json()
    assert [r["status"] for r in response.json()["results"]] == ["created", "created"]
    assert [r["holdout"] for r in response.json()["results"]] == [False, True]
    stored = BusinessOutcome.objects.get(external_id="o-1")
    assert (stored.subject_key, stored.kind, stored.value, stored.holdout) == (
        treated,
        "renewal_won",
        Decimal("1200.50"),
        False,
    )
    assert stored.created_by == world.integrator and stored.occurred_at == dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)

    again = client.post("/api/v1/outcomes", {"outcomes": batch}, format="json")
    assert again.status_code == 200 and [r["status"] for r in again.json()["results"]] == ["duplicate"] * 2
    assert BusinessOutcome.objects.count() == 2


def test_a_partly_bad_batch_answers_207_naming_each_field(world):
    (recommendation,) = _released(world, "ACC-0003")
    client = key_client(world.integrator)
    batch = [
        _outcome("o-1", "ACC-0003", recommendation_id=recommendation.pk),
        _outcome("o-1", "ACC-0003", kind="renewal_lost"),  # the same id for another outcome
        _outcome("o-3", "ACC-0004", recommendation_id=recommendation.pk),  # another subject's recommendation
        _outcome("o-4", use_case="nope"),
        {**_outcome("o-5"), "occurred_at": "yesterday"},
        _outcome("o-6", kind="Renewal Won!"),
    ]

    response = client.post("/api/v1/outcomes", {"outcomes": batch}, format="json")

    assert response.status_code == 207, response.json()
    results = response.json()["results"]
    assert results[0]["status"] == "created"
    assert [r["errors"][0]["field"] for r in results[1:]] == [
        "outcomes[1].event_id",
        "outcomes[2].recommendation_id",
        "outcomes[3].use_case",
        "outcomes[4].occurred_at",
        "outcomes[5].kind",
    ]
    assert list(BusinessOutcome.objects.values_list("external_id", "recommendation_id")) == [("o-1", recommendation.pk)]


def test_outcomes_need_run_permission_and_a_sane_batch(world, outsider):
    response = key_client(outsider).post("/api/v1/outcomes", {"outcomes": [_outcome("o-1")]}, format="json")
    assert response.status_code == 400
    assert response.json()["results"][0]["errors"][0]["field"] == "outcomes[0].use_case"
    assert not BusinessOutcome.objects.exists()

    client = key_client(world.integrator)
    too_many = {"outcomes": [_outcome(f"o-{n}") for n in range(1001)]}
    for body in ({}, {"outcomes": []}, too_many):
        response = client.post("/api/v1/outcomes", body, format="json")
        assert response.status_code == 400 and response.json()["errors"][0]["field"] == "outcomes"
    read_only = key_client(world.integrator, scopes=["read"])
    assert read_only.post("/api/v1/outcomes", {"outcomes": [_outcome("o-1")]}, format="json").status_code == 403


def test_feedback_batch_takes_opened_keeps_chains_and_reports_each_event(world, outsider):
    first, second = _released(world, "ACC-0001", "ACC-0002")
    client = key_client(world.integrator)
    events = [
        {"event_id": "e-1", "recommendation_id": first.pk, "type": "shown"},
        {"event_id": "e-2", "recommendation_id": first.pk, "type": "opened"},
        {"event_id": "e-3", "recommendation_id": second.pk, "type": "shown"},
        {"event_id": "e-4", "recommendation_id": first.pk, "type": "accepted", "payload": {"by": "kim"}},
        {"event_id": "e-2", "recommendation_id": first.pk, "type": "opened"},  # repeated within the batch
        {"event_id": "e-3", "recommendation_id": first.pk, "type": "shown"},  # the id of another event
        {"event_id": "e-7", "recommendation_id": 999999, "type": "shown"},
        {"event_id": "e-8", "recommendation_id": second.pk, "type": "nope"},
    ]

    response = client.post("/api/v1/feedback", {"events": events}, format="json")

    assert response.status_code == 207, response.json()
    statuses = [r["status"] for r in response.json()["results"]]
    assert statuses == ["created"] * 4 + ["duplicate", "error", "error", "error"]
    fields = [r["errors"][0]["field"] for r in response.json()["results"][5:]]
    assert fields == ["events[5].event_id", "events[6]", "events[7].type"]
    trail = list(first.events.filter(external_id__isnull=False).values_list("type", "external_id"))
    assert trail == [("shown", "e-1"), ("opened", "e-2"), ("accepted", "e-4")]
    assert chain_verify(first) is None and chain_verify(second) is None
    again = client.post("/api/v1/feedback", {"events": events[:4]}, format="json")
    assert again.status_code == 200 and {r["status"] for r in again.json()["results"]} == {"duplicate"}
    assert RecommendationEvent.objects.filter(external_id__isnull=False).count() == 4
    # Someone without run permission on the use case cannot send feedback on its outputs.
    refused = key_client(outsider).post(
        "/api/v1/feedback",
        {"events": [{"event_id": "x-1", "recommendation_id": first.pk, "type": "shown"}]},
        format="json",
    )
    assert refused.status_code == 400 and not RecommendationEvent.objects.filter(external_id="x-1").exists()


def test_outputs_nobody_acted_on_are_marked_ignored_once(world):
    now = clock.now()
    quiet, acted, recent = _released(world, "ACC-0001", "ACC-0002", "ACC-0003")
    system = Actor.for_system("test")
    for recommendation, days_ago in ((quiet, 8), (acted, 8), (recent, 2)):
        event_append(recommendation=recommendation, type="shown", actor=system, at=now - dt.timedelta(days=days_ago))
    event_append(recommendation=acted, type="accepted", actor=system, at=now - dt.timedelta(days=7))

    assert recommendations_ignored_record(now=now, days=7) == 1
    assert recommendations_ignored_record(now=now, days=7) == 0  # idempotent

    ignored = quiet.events.get(type="ignored")
    assert ignored.payload["window_days"] == 7 and ignored.actor_label.startswith("system:")
    assert not acted.events.filter(type="ignored").exists() and not recent.events.filter(type="ignored").exists()
    assert chain_verify(quiet) is None
    assert recommendations_ignored_record(now=now + dt.timedelta(days=6), days=7) == 1  # `recent`, in its turn


def test_a_batch_that_hits_a_concurrent_insert_is_settled_event_by_event(world):
    (recommendation,) = _released(world, "ACC-0001")
    feedback_record(
        actor=Actor(user=world.integrator), event_id="e-0", recommendation_id=recommendation.pk, type="shown"
    )
    events = [
        {"event_id": "e-1", "recommendation_id": recommendation.pk, "type": "shown"},
        {"event_id": "e-0", "recommendation_id": recommendation.pk, "type": "shown"},
        {"event_id": "e-2", "recommendation_id": recommendation.pk, "type": "accepted"},
    ]
    # The one insert fails as it would had another request stored one of these event ids first.
    with mock.patch("apps.delivery.services._events_insert", side_effect=IntegrityError("duplicate key")):
        response = key_client(world.integrator).post("/api/v1/feedback", {"events": events}, format="json")

    assert response.status_code == 200, response.json()
    assert [r["status"] for r in response.json()["results"]] == ["created", "duplicate", "created"]
    stored = recommendation.events.filter(external_id__isnull=False).values_list("external_id", flat=True)
    assert list(stored) == ["e-0", "e-1", "e-2"]
    assert chain_verify(recommendation) is None
