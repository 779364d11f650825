"""A broker that is down when a write commits loses no work: the caller gets its answer, the sweepers send later."""

import datetime as dt

import pytest
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from apps.core import clock
from apps.delivery.models import Delivery
from apps.delivery.tasks import deliveries_dispatch_task, deliveries_sweep_task
from apps.workflows.models import Recommendation, Run
from apps.workflows.tasks import run_execute_task, runs_sweep_task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker_down(monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    for task in (deliveries_dispatch_task, run_execute_task):
        monkeypatch.setattr(task, "delay", refuse)
    return monkeypatch


def test_broker_down_at_commit_then_swept(world, broker_down):
    client = APIClient()
    client.force_authenticate(world.integrator)
    payload = {
        "use_case": "churn-risk",
        "subject": "ACC-0009",
        "content": {"text": "Check in."},
        "confidence": 0.95,
        "proposed_action": {"discount_pct": 0},
    }
    response = client.post("/api/v1/recommendations", payload, format="json")
    assert response.status_code == 201
    run_response = client.post("/api/v1/runs", {"use_case": "churn-risk", "subject": "ACC-0010"}, format="json")
    assert run_response.status_code == 202
    delivery = Delivery.objects.get(recommendation_id=response.json()["id"])
    assert delivery.status == "pending" and delivery.attempts == 0
    assert Run.objects.get(pk=run_response.json()["id"]).status == "pending"

    broker_down.undo()  # the broker is back
    assert deliveries_sweep_task() == 0 and runs_sweep_task() == 0  # too recent: their tasks may still come
    with clock.simulated(clock.now() + dt.timedelta(minutes=6)):
        assert deliveries_sweep_task() == 1
        assert runs_sweep_task() == 1
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert Recommendation.objects.get(pk=response.json()["id"]).status == "delivered"
    assert Run.objects.get(pk=run_response.json()["id"]).status == "succeeded"
