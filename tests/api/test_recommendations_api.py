import json

import pytest
from rest_framework.test import APIClient

from apps.workflows.models import Recommendation
from tests.factories import key_client

pytestmark = pytest.mark.django_db(transaction=True)


def _payload(**overrides):
    return {
        "use_case": "churn-risk",
        "subject": "ACC-0005",
        "content": {"text": "Schedule a check-in with the sponsor."},
        "confidence": 0.93,
        "proposed_action": {"type": "crm_task", "discount_pct": 0},
        "cost": "0.0100",
        **overrides,
    }


def test_bring_your_own_model_round_trip_with_feedback(world):
    client = key_client(world.integrator)
    response = client.post("/api/v1/recommendations", _payload(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["verdict"] == "allow" and body["status"] == "delivering"
    assert Recommendation.objects.get(pk=body["id"]).status == "delivered"  # the worker ran after commit
    events = [
        {"event_id": "crm-1", "recommendation_id": body["id"], "type": "shown"},
        {"event_id": "crm-2", "recommendation_id": body["id"], "type": "accepted"},
        {"event_id": "crm-3", "recommendation_id": body["id"], "type": "acted_on", "payload": {"task": "done"}},
    ]
    response = client.post("/api/v1/feedback", {"events": events}, format="json")
    assert response.status_code == 200 and response.json()["accepted"] == 3
    again = client.post("/api/v1/feedback", {"events": events[:1]}, format="json")
    assert again.json()["results"][0]["status"] == "duplicate"
    recommendation = Recommendation.objects.get(pk=body["id"])
    assert list(
        recommendation.events.filter(type__in=["shown", "accepted", "acted_on"]).values_list("type", flat=True)
    ) == [
        "shown",
        "accepted",
        "acted_on",
    ]


def test_idempotency_key_replays_and_conflicts(world):
    client = key_client(world.integrator)
    first = client.post("/api/v1/recommendations", _payload(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    repeat = client.post("/api/v1/recommendations", _payload(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == repeat.status_code == 201
    assert repeat.json() == first.json() and repeat["Idempotent-Replayed"] == "true"
    assert Recommendation.objects.count() == 1
    different = client.post(
        "/api/v1/recommendations", _payload(subject="ACC-0006"), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert different.status_code == 409 and different.json()["errors"][0]["field"] == "Idempotency-Key"
    assert Recommendation.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"confidence": 1.5}, "confidence"),
        ({"content": "just a string"}, "content"),
        ({"content": {"text": ""}}, "content"),
        ({"subject": ""}, "subject"),
        ({"use_case": "no-such-use-case"}, "use_case"),
        ({"cost": "-1"}, "cost"),
        ({"proposed_action": [1, 2]}, "proposed_action"),
    ],
)
def test_bad_input_names_the_field(world, overrides, field):
    response = key_client(world.integrator).post("/api/v1/recommendations", _payload(**overrides), format="json")
    assert 400 <= response.status_code < 500
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["errors"][0]["field"] == field
    assert not Recommendation.objects.exists()


def test_malformed_and_oversized_json_get_a_json_4xx(world, settings):
    client = key_client(world.integrator)
    response = client.generic("POST", "/api/v1/recommendations", "{not json", content_type="application/json")
    assert response.status_code == 400 and "error" in response.json()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = client.post("/api/v1/recommendations", _payload(content={"text": "x" * 5000}), format="json")
    assert response.status_code == 413 and response.json()["error"] == "too_large"


def test_batch_reports_each_item(world):
    items = [_payload(subject=f"ACC-{i:04d}") for i in range(1, 4)] + [_payload(confidence=7)]
    response = key_client(world.integrator).post("/api/v1/recommendations/batch", {"items": items}, format="json")
    assert response.status_code == 207
    body = response.json()
    assert body["created"] == 3 and body["failed"] == 1
    assert body["results"][3]["errors"][0]["field"] == "items[3].confidence"
    too_many = key_client(world.admin).post(
        "/api/v1/recommendations/batch", {"items": [_payload()] * 1001}, format="json"
    )
    assert too_many.status_code == 400 and too_many.json()["errors"][0]["field"] == "items"


def test_reviewer_cannot_reach_another_queue_by_api(world, queued_recommendation):
    other = queued_recommendation(world.replies, text="We will refund you.")
    mine = queued_recommendation(world.churn)
    client = key_client(world.reviewer)
    listed = [task["id"] for task in client.get("/api/v1/review-tasks").json()["results"]]
    assert listed == [mine.review_task.pk]
    assert client.get(f"/api/v1/review-tasks/{other.review_task.pk}").status_code == 404
    decision = client.post(
        f"/api/v1/review-tasks/{other.review_task.pk}/decision", {"decision": "approve"}, format="json"
    )
    assert decision.status_code == 404
    other.review_task.refresh_from_db()
    assert other.review_task.status == "open"
    assert client.get(f"/api/v1/recommendations/{other.pk}").status_code == 404
    assert client.post("/api/v1/recommendations", _payload(), format="json").status_code == 403


def test_api_key_scopes_and_revocation(world):
    client = key_client(world.integrator, scopes=["read"])
    response = client.post("/api/v1/recommendations", _payload(), format="json")
    assert response.status_code == 403 and response.json()["error"] == "permission_denied"
    anonymous = APIClient().get("/api/v1/use-cases")
    assert anonymous.status_code in (401, 403) and "error" in json.loads(anonymous.content)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer dsk_not-a-key")
    assert bad.get("/api/v1/use-cases").status_code == 401


def test_review_decision_through_the_api(world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)
    client = key_client(world.reviewer)
    response = client.post(
        f"/api/v1/review-tasks/{recommendation.review_task.pk}/decision", {"decision": "reject"}, format="json"
    )
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "reason_code"
    response = client.post(
        f"/api/v1/review-tasks/{recommendation.review_task.pk}/decision",
        {"decision": "reject", "reason_code": "inaccurate", "comment": "Wrong account"},
        format="json",
    )
    assert response.status_code == 200 and response.json()["status"] == "decided"
    recommendation.refresh_from_db()
    assert recommendation.status == "rejected"
    assert recommendation.events.get(type="rejected").actor_user == world.reviewer


def test_list_is_filtered_permission_checked_and_paginated(world, queued_recommendation):
    churn = queued_recommendation(world.churn, subject_key="ACC-0001")
    queued_recommendation(world.replies, text="We will refund you.")
    reviewer = key_client(world.reviewer)  # may view the churn use case only
    body = reviewer.get("/api/v1/recommendations").json()
    assert [item["id"] for item in body["results"]] == [churn.pk] and "next" in body
    integrator = key_client(world.integrator)
    assert len(integrator.get("/api/v1/recommendations").json()["results"]) == 2
    filtered = integrator.get("/api/v1/recommendations", {"use_case": "churn-risk", "status": "queued_for_review"})
    assert [item["id"] for item in filtered.json()["results"]] == [churn.pk]
    bad = integrator.get("/api/v1/recommendations", {"status": "nonsense"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "status"


def test_time_filters_take_any_iso_offset(world):
    """ISO 8601 allows offsets PostgreSQL refuses (beyond ±15:59): compared in UTC, never a 500."""
    client = key_client(world.admin)
    query = {"created_after": "0769-10-18T10:01:20+15:38", "created_before": "1184-03-16T19:54:27-16:55"}
    response = client.get("/api/v1/recommendations", query)
    assert response.status_code == 200 and response.json()["results"] == []
    assert client.get("/api/v1/recommendations", {"created_after": "0001-01-01T00:00:00+10:00"}).status_code == 200
