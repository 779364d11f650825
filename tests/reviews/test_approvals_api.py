"""Blocking approvals for agents: create, poll, decide in the desk, signed callback to a real local receiver,
timeout, idempotency, bad input and permissions."""

import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core import clock
from apps.core.actors import Actor
from apps.delivery import webhooks
from apps.reviews import approvals
from apps.reviews.models import ApprovalRequest, ReviewTask
from apps.reviews.services import review_task_decide
from apps.reviews.tasks import approvals_timeout_task
from apps.workflows.models import Recommendation
from tests.factories import key_client

pytestmark = pytest.mark.django_db(transaction=True)


def _payload(**overrides):
    return {
        "use_case": "churn-risk",
        "subject": "ACC-0007",
        "action": {"type": "crm_task", "discount_pct": 5},
        "summary": "Give ACC-0007 a 5% renewal discount.",
        "confidence": 0.95,
        "timeout_seconds": 600,
        **overrides,
    }


@pytest.fixture
def receiver():
    """A real HTTP server that keeps what it receives; `statuses` are answered in turn (then 204)."""
    received, statuses = [], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(statuses.pop(0) if statuses else 204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/approvals", received, statuses
    server.shutdown()
    server.server_close()


@pytest.fixture
def callbacks_held(monkeypatch):
    """The eager worker would retry at once (and raise Retry into the caller): these tests drive the attempts."""
    monkeypatch.setattr("apps.reviews.tasks.approval_callback_send_task.delay", lambda *args: None)


def _task(approval_id) -> ReviewTask:
    return ReviewTask.objects.get(recommendation__approval_request__public_id=approval_id)


def test_create_poll_approve_in_the_desk_and_signed_callback(world, receiver, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    url, received, _ = receiver
    agent = key_client(world.integrator, scopes=["approvals:write"])
    before = clock.now()
    response = agent.post("/api/v1/approvals", _payload(callback_url=url), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["decision"] is None
    assert body["callback_secret"].startswith("whsec_")
    timeout_at = dt.datetime.fromisoformat(body["timeout_at"])
    assert dt.timedelta(seconds=599) < timeout_at - before < dt.timedelta(seconds=601)
    assert body["poll_url"].endswith(f"/api/v1/approvals/{body['id']}")
    # The policy allows this output (confident, small discount), yet a person decides: it waits in the desk,
    # due no later than the timeout, and the secret is stored encrypted only.
    task = _task(body["id"])
    assert task.status == "open" and task.queue == world.churn_queue and task.due_at <= timeout_at
    assert task.reasons[-1]["name"] == "Blocking approval"
    approval = ApprovalRequest.objects.get(public_id=body["id"])
    assert body["callback_secret"] not in approval.callback_secret_ciphertext
    assert approval.recommendation.producer.startswith("agent:key ")
    assert approval.recommendation.status == "queued_for_review"

    poll = agent.get(f"/api/v1/approvals/{body['id']}")
    assert poll.status_code == 200 and poll.json()["status"] == "pending" and "callback_secret" not in poll.json()
    desk = Client()
    desk.force_login(world.reviewer)
    page = desk.get(reverse("reviews:task-detail", args=[task.pk]))
    assert page.status_code == 200 and "Blocking approval" in page.content.decode()

    review_task_decide(
        actor=Actor(user=world.reviewer),
        task=task,
        decision="edit",
        edited_text="Give ACC-0007 a 4% renewal discount.",
        comment="4% is our ceiling this quarter.",
    )
    poll = agent.get(f"/api/v1/approvals/{body['id']}").json()
    assert poll["status"] == "approved" and poll["decision"] == "approve"
    assert poll["decided_by"] == "reviewer" and poll["comment"] == "4% is our ceiling this quarter."
    assert poll["edited"] is True and poll["text"] == "Give ACC-0007 a 4% renewal discount."
    assert poll["decided_at"] is not None

    # The callback ran after commit: one signed request that the documented verify() accepts.
    assert len(received) == 1
    headers, raw = received[0]
    assert webhooks.verify(body["callback_secret"], headers, raw)
    assert not webhooks.verify("whsec_" + "A" * 44, headers, raw)
    assert headers["webhook-id"] == f"apr-{body['id']}"
    event = json.loads(raw)
    assert event["type"] == "approval.resolved"
    assert event["data"]["id"] == body["id"] and event["data"]["status"] == "approved"
    assert event["data"]["text"] == "Give ACC-0007 a 4% renewal discount."
    approval.refresh_from_db()
    assert approval.callback_attempts == 1 and approval.callback_delivered_at is not None
    # Audited: the approval's history names who asked and who decided.
    assert [h.history_user.username for h in approval.history.order_by("history_date")] == ["integrator", "reviewer"]


def test_reject_in_the_desk_resolves_rejected(world):
    agent = key_client(world.integrator)
    body = agent.post("/api/v1/approvals", _payload(), format="json").json()
    review_task_decide(
        actor=Actor(user=world.reviewer),
        task=_task(body["id"]),
        decision="reject",
        reason_code="policy",
        comment="No discounts for this segment.",
    )
    poll = agent.get(f"/api/v1/approvals/{body['id']}").json()
    assert (poll["status"], poll["decision"], poll["comment"]) == (
        "rejected",
        "reject",
        "No discounts for this segment.",
    )
    assert poll["edited"] is False and poll["text"] == _payload()["summary"]


def test_policy_block_rejects_at_once(world):
    agent = key_client(world.integrator)
    response = agent.post(
        "/api/v1/approvals",
        _payload(
            use_case="support-replies",
            subject="TCK-0042",
            summary="Reply: we have deleted your data.",
            context={"subject": "GDPR: delete my data"},
        ),
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "rejected" and body["decision"] == "reject"
    assert "Privacy request" in body["comment"]
    assert body["callback_secret"] is None
    assert not ReviewTask.objects.filter(recommendation_id=body["recommendation_id"]).exists()


def test_timeout_resolves_to_on_timeout_closes_the_task_and_calls_back(world, receiver, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    url, received, _ = receiver
    agent = key_client(world.integrator)
    rejecting = agent.post("/api/v1/approvals", _payload(timeout_seconds=10, callback_url=url), format="json").json()
    approving = agent.post(
        "/api/v1/approvals", _payload(subject="ACC-0008", timeout_seconds=60, on_timeout="approve"), format="json"
    ).json()

    assert approvals_timeout_task() == 0  # nothing is due yet
    with clock.simulated(clock.now() + dt.timedelta(seconds=11)):
        assert approvals_timeout_task() == 1
    poll = agent.get(f"/api/v1/approvals/{rejecting['id']}").json()
    assert (poll["status"], poll["decision"], poll["decided_by"]) == ("timed_out", "reject", None)
    task = _task(rejecting["id"])
    assert task.status == "decided"
    recommendation = Recommendation.objects.get(pk=rejecting["recommendation_id"])
    assert recommendation.status == "rejected"
    last = recommendation.events.order_by("-sequence").first()
    assert last.type == "rejected" and last.actor_label == "system:approval_timeout"
    assert last.payload["timed_out"] is True
    assert len(received) == 1 and webhooks.verify(rejecting["callback_secret"], *received[0])
    assert json.loads(received[0][1])["data"]["status"] == "timed_out"
    # A reviewer arriving late finds the item decided.
    with pytest.raises(Exception, match="already been decided"):
        review_task_decide(actor=Actor(user=world.reviewer), task=task, decision="approve")
    assert agent.get(f"/api/v1/approvals/{approving['id']}").json()["status"] == "pending"

    with clock.simulated(clock.now() + dt.timedelta(seconds=61)):
        assert approvals_timeout_task() == 1
        assert approvals_timeout_task() == 0  # idempotent: resolved approvals are left alone
    poll = agent.get(f"/api/v1/approvals/{approving['id']}").json()
    assert (poll["status"], poll["decision"]) == ("timed_out", "approve")
    assert Recommendation.objects.get(pk=approving["recommendation_id"]).status in (
        "approved",
        "delivering",
        "delivered",
    )
    assert len(received) == 1  # that one had no callback


def test_callback_retries_with_backoff_and_records_attempts(world, receiver, settings, callbacks_held):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    url, received, statuses = receiver
    statuses += [503, 503]
    agent = key_client(world.integrator)
    body = agent.post("/api/v1/approvals", _payload(callback_url=url), format="json").json()
    approval = ApprovalRequest.objects.get(public_id=body["id"])
    review_task_decide(actor=Actor(user=world.reviewer), task=_task(body["id"]), decision="approve")
    assert approvals.approval_callbacks_lost() == []  # decided just now: the task is on its way
    with clock.simulated(clock.now() + dt.timedelta(minutes=3)):
        assert approvals.approval_callbacks_lost() == [approval.pk]  # never tried: the sweep resends it
    assert approvals.approval_callback_send(approval_id=approval.pk) == 30.0
    assert approvals.approval_callback_send(approval_id=approval.pk) == 60.0
    approval.refresh_from_db()
    assert approval.callback_attempts == 2 and "503" in approval.callback_error
    assert approval.callback_delivered_at is None
    statuses.clear()
    assert approvals.approval_callback_send(approval_id=approval.pk) is None
    approval.refresh_from_db()
    assert approval.callback_attempts == 3 and approval.callback_delivered_at and approval.callback_error == ""
    assert approvals.approval_callback_send(approval_id=approval.pk) is None  # delivered: never sent again
    assert len(received) == 3 and approvals.approval_callbacks_lost() == []
    assert len({headers["webhook-id"] for headers, _ in received}) == 1  # receivers dedupe on it


def test_callback_gives_up_after_the_bounded_attempts(world, receiver, settings, callbacks_held):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    url, received, statuses = receiver
    statuses += [500] * 20
    agent = key_client(world.integrator)
    body = agent.post("/api/v1/approvals", _payload(callback_url=url), format="json").json()
    review_task_decide(actor=Actor(user=world.reviewer), task=_task(body["id"]), decision="approve")
    approval = ApprovalRequest.objects.get(public_id=body["id"])
    while approvals.approval_callback_send(approval_id=approval.pk) is not None:
        pass
    approval.refresh_from_db()
    assert approval.callback_attempts == approvals.CALLBACK_MAX_ATTEMPTS
    assert approval.callback_delivered_at is None and "500" in approval.callback_error
    assert len(received) == approvals.CALLBACK_MAX_ATTEMPTS


def test_idempotency_key_returns_the_same_approval_and_conflicts_on_a_different_body(world):
    agent = key_client(world.integrator)
    first = agent.post("/api/v1/approvals", _payload(idempotency_key="agent-run-1"), format="json")
    again = agent.post("/api/v1/approvals", _payload(idempotency_key="agent-run-1"), format="json")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    by_header = agent.post("/api/v1/approvals", _payload(), format="json", HTTP_IDEMPOTENCY_KEY="agent-run-1")
    assert by_header.status_code == 200 and by_header.json()["id"] == first.json()["id"]
    different = agent.post(
        "/api/v1/approvals", _payload(summary="Give a 50% discount.", idempotency_key="agent-run-1"), format="json"
    )
    assert different.status_code == 409 and different.json()["errors"][0]["field"] == "idempotency_key"
    different = agent.post(
        "/api/v1/approvals", _payload(timeout_seconds=700), format="json", HTTP_IDEMPOTENCY_KEY="agent-run-1"
    )
    assert different.status_code == 409 and different.json()["errors"][0]["field"] == "Idempotency-Key"
    assert ApprovalRequest.objects.count() == 1 and Recommendation.objects.count() == 1
    # Keys belong to their caller: another user's same key is another approval.
    other = key_client(world.admin).post("/api/v1/approvals", _payload(idempotency_key="agent-run-1"), format="json")
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"use_case": "no-such-use-case"}, "use_case"),
        ({"subject": ""}, "subject"),
        ({"action": "call them"}, "action"),
        ({"action": {}}, "action"),
        ({"summary": "   "}, "summary"),
        ({"timeout_seconds": 5}, "timeout_seconds"),
        ({"timeout_seconds": 8 * 24 * 3600}, "timeout_seconds"),
        ({"on_timeout": "maybe"}, "on_timeout"),
        ({"callback_url": "ftp://example.com/x"}, "callback_url"),
        ({"callback_url": "http://127.0.0.1:9/hook"}, "callback_url"),  # private address, not allow-listed
        ({"callback_url": "http://169.254.169.254/latest"}, "callback_url"),
        ({"confidence": 2}, "confidence"),
        ({"context": [1]}, "context"),
        ({"idempotency_key": "k" * 101}, "idempotency_key"),
    ],
)
def test_bad_input_names_the_field_and_saves_nothing(world, overrides, field):
    response = key_client(world.integrator).post("/api/v1/approvals", _payload(**overrides), format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["errors"][0]["field"] == field
    assert not ApprovalRequest.objects.exists() and not Recommendation.objects.exists()


def test_permissions(world, outsider):
    integrator = key_client(world.integrator)
    body = integrator.post("/api/v1/approvals", _payload(), format="json").json()
    # A key without the approvals scope may not ask; a read key may poll.
    response = key_client(world.integrator, scopes=["recommendations:write"]).post(
        "/api/v1/approvals", _payload(), format="json"
    )
    assert response.status_code == 403
    assert key_client(world.integrator, scopes=["read"]).get(f"/api/v1/approvals/{body['id']}").status_code == 200
    assert (
        key_client(world.integrator, scopes=["feedback:write"]).get(f"/api/v1/approvals/{body['id']}").status_code
        == 403
    )
    # A reviewer sees the use case but may not submit for it.
    response = key_client(world.reviewer).post("/api/v1/approvals", _payload(), format="json")
    assert response.status_code == 403
    assert key_client(world.reviewer).get(f"/api/v1/approvals/{body['id']}").status_code == 200
    # Another use case's people and outsiders get 404, as does a guessed id.
    assert key_client(world.support_lead).get(f"/api/v1/approvals/{body['id']}").status_code == 404
    assert key_client(outsider).get(f"/api/v1/approvals/{body['id']}").status_code == 404
    assert integrator.get(f"/api/v1/approvals/{uuid.uuid4()}").status_code == 404
    response = key_client(outsider).post("/api/v1/approvals", _payload(), format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "use_case"
    assert APIClient().get(f"/api/v1/approvals/{body['id']}").status_code in (401, 403)
    assert ApprovalRequest.objects.count() == 1


def test_item_closed_by_the_sla_fallback_resolves_the_approval_on_the_next_sweep(world):
    from apps.reviews.escalation import review_tasks_escalate_breached

    world.churn.sla_breach_action = "reject"
    world.churn.save()
    agent = key_client(world.integrator)
    body = agent.post("/api/v1/approvals", _payload(timeout_seconds=3600), format="json").json()
    ReviewTask.objects.filter(pk=_task(body["id"]).pk).update(due_at=clock.now() - dt.timedelta(minutes=1))
    assert review_tasks_escalate_breached() == 1
    assert agent.get(f"/api/v1/approvals/{body['id']}").json()["status"] == "pending"
    assert approvals_timeout_task() == 1  # well before the timeout
    poll = agent.get(f"/api/v1/approvals/{body['id']}").json()
    assert (poll["status"], poll["decision"]) == ("rejected", "reject")
    assert "rejected" in poll["comment"]
