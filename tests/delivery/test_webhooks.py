"""Signed webhook delivery to a real local HTTP receiver."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from apps.connectors.models import Connector, Destination
from apps.core.actors import Actor
from apps.delivery import webhooks
from apps.delivery.models import Delivery
from apps.reviews.services import review_task_decide

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "whsec-test-secret"


@pytest.fixture
def receiver():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            received.append((headers, body, webhooks.verify(SECRET, headers, body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def webhook_destination(world, receiver, settings):
    url, _ = receiver
    connector = Connector(name="Account team hook", kind=Connector.Kind.WEBHOOK, config={"url": url})
    connector.set_secrets({"signing_secret": SECRET})
    connector.save()
    destination = Destination.objects.create(name="Account team", kind=Destination.Kind.WEBHOOK, connector=connector)
    world.churn.destinations.add(destination)
    return destination


def test_approved_output_is_posted_once_with_a_valid_signature(
    world, receiver, webhook_destination, settings, queued_recommendation
):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    _, received = receiver
    recommendation = queued_recommendation()
    review_task_decide(actor=Actor(user=world.reviewer), task=recommendation.review_task, decision="approve")
    assert len(received) == 1
    headers, body, valid = received[0]
    assert valid and json.loads(body)["recommendation_id"] == recommendation.pk
    recommendation.refresh_from_db()
    assert recommendation.status == "delivered"
    assert Delivery.objects.get(destination=webhook_destination).external_id == headers["webhook-id"]


def test_private_address_is_refused_unless_allow_listed(world, receiver, webhook_destination, queued_recommendation):
    _, received = receiver
    recommendation = queued_recommendation()
    review_task_decide(actor=Actor(user=world.reviewer), task=recommendation.review_task, decision="approve")
    assert received == []
    delivery = Delivery.objects.get(destination=webhook_destination)
    assert delivery.status == "failed" and "private address" in delivery.last_error
    recommendation.refresh_from_db()
    assert recommendation.status == "delivery_failed"


def test_receiver_helper_rejects_replays_and_forgeries():
    body = b'{"x": 1}'
    signature = webhooks.sign(SECRET, "msg-1", 1_000_000, body)
    headers = {"webhook-id": "msg-1", "webhook-timestamp": "1000000", "webhook-signature": signature}
    assert webhooks.verify(SECRET, headers, body, now=1_000_100)
    assert not webhooks.verify(SECRET, headers, body, now=1_000_000 + 301)
    assert not webhooks.verify("other-secret", headers, body, now=1_000_100)
    assert not webhooks.verify(SECRET, headers, b'{"x": 2}', now=1_000_100)
