"""Signed webhook delivery to real local receivers: signatures verify, a receiver that is down and then up
gets every delivery once, nothing is sent again after success, and a replayed request is refused."""

import base64
import datetime as dt
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from celery.exceptions import Retry

from apps.connectors.models import Connector, Destination
from apps.core import clock
from apps.core.actors import Actor
from apps.delivery import selectors, services, webhooks
from apps.delivery.models import Delivery
from apps.delivery.tasks import deliveries_sweep_task, delivery_send_task
from apps.reviews.services import review_task_decide
from standins.server import Response, StandIn
from tests.delivery.helpers import free_port, make_connector

SECRET = "whsec-test-secret"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture
def receiver():
    """A plain http.server receiver that verifies every request with the documented helper."""
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
    server.server_close()


@pytest.fixture
def webhook_destination(world, receiver):
    url, _ = receiver
    connector = make_connector(
        Connector.Kind.WEBHOOK, "Account team hook", config={"url": url}, secrets={"signing_secret": SECRET}
    )
    destination = Destination.objects.create(name="Account team", kind=Destination.Kind.WEBHOOK, connector=connector)
    world.churn.destinations.add(destination)
    return destination


@pytest.mark.django_db(transaction=True)
def test_approved_output_is_posted_once_with_a_valid_signature(
    world, receiver, webhook_destination, settings, queued_recommendation
):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    _, received = receiver
    recommendation = queued_recommendation()
    review_task_decide(actor=Actor(user=world.reviewer), task=recommendation.review_task, decision="approve")
    assert len(received) == 1
    headers, body, valid = received[0]
    event = json.loads(body)
    assert valid
    assert event["type"] == "recommendation.approved"
    recommendation.refresh_from_db()
    assert abs(dt.datetime.fromisoformat(event["timestamp"]) - recommendation.decided_at) < dt.timedelta(milliseconds=1)
    assert event["data"]["recommendation_id"] == recommendation.pk
    assert event["data"]["text"] == recommendation.text
    assert event["data"]["trace_url"].endswith(f"/audit/recommendations/{recommendation.pk}/")
    recommendation.refresh_from_db()
    assert recommendation.status == "delivered"
    delivery = Delivery.objects.get(destination=webhook_destination)
    assert delivery.external_id == headers["webhook-id"] == f"dlv-{delivery.pk}"
    assert delivery.attempts == 1 and delivery.attempt_log[-1]["ok"] and delivery.attempt_log[-1]["status"] == 204


@pytest.mark.django_db(transaction=True)
def test_private_address_is_refused_unless_allow_listed(world, receiver, webhook_destination, queued_recommendation):
    _, received = receiver
    recommendation = queued_recommendation()
    review_task_decide(actor=Actor(user=world.reviewer), task=recommendation.review_task, decision="approve")
    assert received == []
    delivery = Delivery.objects.get(destination=webhook_destination)
    # A refused address is permanent: one attempt, no retries.
    assert delivery.status == "failed" and delivery.attempts == 1 and "private address" in delivery.last_error
    recommendation.refresh_from_db()
    assert recommendation.status == "delivery_failed"
    assert recommendation.events.filter(type="delivery_failed").count() == 1


def _verifying_receiver(secret: str):
    """Routes of a receiver that does its job: verify, then handle each webhook-id once."""

    def hook(standin, request):
        if not webhooks.verify(secret, request.headers, request.body):
            return Response(401, {"error": "bad signature"})
        msg_id = request.headers["webhook-id"]
        standin.state.setdefault("verified", Counter())[msg_id] += 1
        standin.state.setdefault("events", {}).setdefault(msg_id, json.loads(request.body))
        return Response(200, {"received": msg_id})

    return [("POST", "/hook", hook)]


def test_receiver_down_then_up_gets_every_delivery_once(world, allowed, settings):
    """Driven through the service step by step (no waiting for the backoff): down (nothing listens), then
    up but answering 503, then up. Outputs committed without running on_commit, so no task interferes."""
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    port = free_port()
    connector = make_connector(
        Connector.Kind.WEBHOOK,
        "Partner portal hook",
        config={"url": f"http://127.0.0.1:{port}/hook"},
        secrets={"signing_secret": STANDARD_SECRET},
    )
    destination = Destination.objects.create(name="Partner portal", kind=Destination.Kind.WEBHOOK, connector=connector)
    world.churn.destinations.set([destination])
    recommendations = allowed(3)
    deliveries = list(Delivery.objects.filter(destination=destination).order_by("pk"))
    assert len(deliveries) == 3 and {d.recommendation_id for d in deliveries} == {r.pk for r in recommendations}

    # Down: nothing listens on the port.
    for delivery in deliveries:
        after = services.delivery_send(delivery_id=delivery.pk)
        assert after.status == "pending" and after.attempts == 1
        assert "connection failed" in after.last_error
        assert after.next_attempt_at > clock.now() + dt.timedelta(seconds=25)  # the first retry is 30 s away
    with StandIn(_verifying_receiver(STANDARD_SECRET), port=port) as portal:
        # Up, but overloaded for the next three requests.
        portal.fail_next("unavailable", times=3)
        for delivery in deliveries:
            after = services.delivery_send(delivery_id=delivery.pk)
            assert after.status == "pending" and after.attempts == 2 and "503" in after.last_error
        # Up.
        for delivery in deliveries:
            after = services.delivery_send(delivery_id=delivery.pk)
            assert after.status == "succeeded" and after.attempts == 3 and after.next_attempt_at is None
            assert [entry["ok"] for entry in after.attempt_log] == [False, False, True]
            assert after.attempt_log[-1]["status"] == 200 and f"dlv-{delivery.pk}" in after.last_response

        expected_ids = {f"dlv-{d.pk}" for d in deliveries}
        assert portal.state["verified"] == Counter(dict.fromkeys(expected_ids, 1))  # each once, each verified
        # Every attempt of one delivery carried the same webhook-id: the receiver can dedupe on it.
        sent_ids = Counter(request.headers["webhook-id"] for request in portal.requests)
        assert set(sent_ids) == expected_ids
        for delivery in deliveries:
            assert portal.state["events"][f"dlv-{delivery.pk}"]["data"]["delivery_id"] == delivery.pk
        for recommendation in recommendations:
            recommendation.refresh_from_db()
            assert recommendation.status == "delivered"
        requests_so_far = len(portal.requests)

        # Nothing is sent again: not by the sweeper a day later, not by a duplicate task.
        with clock.simulated(clock.now() + dt.timedelta(days=1)):
            assert selectors.deliveries_unsent() == []
            assert deliveries_sweep_task() == 0
        delivery_send_task.apply(args=[deliveries[0].pk])
        assert len(portal.requests) == requests_so_far

        # A captured request replayed later than five minutes is refused by the receiver helper.
        captured = portal.requests[-1]
        signed_at = int(captured.headers["webhook-timestamp"])
        assert webhooks.verify(STANDARD_SECRET, captured.headers, captured.body, now=signed_at + 60)
        assert not webhooks.verify(STANDARD_SECRET, captured.headers, captured.body, now=signed_at + 301)


def test_a_receiver_down_for_good_exhausts_the_retries_and_fails_visibly(world, allowed, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    connector = make_connector(
        Connector.Kind.WEBHOOK,
        "Gone hook",
        config={"url": f"http://127.0.0.1:{free_port()}/hook"},
        secrets={"signing_secret": SECRET},
    )
    destination = Destination.objects.create(name="Gone", kind=Destination.Kind.WEBHOOK, connector=connector)
    world.churn.destinations.set([destination])
    (recommendation,) = allowed()
    delivery = Delivery.objects.get(recommendation=recommendation)

    # The task makes one attempt and asks to come back when the row says the next one is due.
    with pytest.raises(Retry) as retry:
        delivery_send_task.apply(args=[delivery.pk])
    assert 25 < retry.value.when <= 30
    for _ in range(services.MAX_ATTEMPTS - 2):
        assert services.delivery_send(delivery_id=delivery.pk).status == "pending"
    delivery = services.delivery_send(delivery_id=delivery.pk)
    assert delivery.status == "failed" and delivery.attempts == services.MAX_ATTEMPTS
    assert len(delivery.attempt_log) == services.MAX_ATTEMPTS and not any(e["ok"] for e in delivery.attempt_log)
    recommendation.refresh_from_db()
    assert recommendation.status == "delivery_failed"
    assert recommendation.events.filter(type="delivery_failed").count() == 1
    assert selectors.deliveries_unsent() == []  # failed deliveries wait for a person, not the sweeper
    assert delivery_send_task.apply(args=[delivery.pk]).state == "SUCCESS"  # a late duplicate task: no-op
    delivery.refresh_from_db()
    assert delivery.attempts == services.MAX_ATTEMPTS


def test_the_task_gives_up_at_its_own_retry_cap(world, allowed, settings):
    """Belt and braces: a task past max_retries records the failure instead of retrying for ever."""
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    connector = make_connector(
        Connector.Kind.WEBHOOK,
        "Flaky hook",
        config={"url": f"http://127.0.0.1:{free_port()}/hook"},
        secrets={"signing_secret": SECRET},
    )
    destination = Destination.objects.create(name="Flaky", kind=Destination.Kind.WEBHOOK, connector=connector)
    world.churn.destinations.set([destination])
    (recommendation,) = allowed()
    delivery = Delivery.objects.get(recommendation=recommendation)
    delivery_send_task.apply(args=[delivery.pk], retries=services.MAX_ATTEMPTS)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 1 and "connection failed" in delivery.last_error


def test_rate_limited_receiver_is_retried_after_its_retry_after(world, allowed, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    with StandIn(_verifying_receiver(SECRET)) as portal:
        connector = make_connector(
            Connector.Kind.WEBHOOK,
            "Busy hook",
            config={"url": f"{portal.url}/hook"},
            secrets={"signing_secret": SECRET},
        )
        destination = Destination.objects.create(name="Busy", kind=Destination.Kind.WEBHOOK, connector=connector)
        world.churn.destinations.set([destination])
        (recommendation,) = allowed()
        delivery = Delivery.objects.get(recommendation=recommendation)
        portal.fail_next("ratelimit", retry_after=600)
        before = clock.now()
        delivery = services.delivery_send(delivery_id=delivery.pk)
        assert delivery.status == "pending" and delivery.attempt_log[-1]["status"] == 429
        # Ten minutes, as asked, not the 30 s of the regular first retry.
        assert before + dt.timedelta(seconds=595) <= delivery.next_attempt_at <= clock.now() + dt.timedelta(seconds=605)
        delivery = services.delivery_send(delivery_id=delivery.pk)
        assert delivery.status == "succeeded" and delivery.attempts == 2


def test_refused_credentials_fail_at_once(world, allowed, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    with StandIn(_verifying_receiver(SECRET)) as portal:
        connector = make_connector(
            Connector.Kind.WEBHOOK,
            "Locked hook",
            config={"url": f"{portal.url}/hook"},
            secrets={"signing_secret": SECRET},
        )
        destination = Destination.objects.create(name="Locked", kind=Destination.Kind.WEBHOOK, connector=connector)
        world.churn.destinations.set([destination])
        (recommendation,) = allowed()
        portal.fail_next("auth")
        delivery = services.delivery_send(delivery_id=Delivery.objects.get(recommendation=recommendation).pk)
        assert delivery.status == "failed" and delivery.attempts == 1 and "401" in delivery.last_error
        assert len(portal.requests) == 1


def test_backoff_spans_hours_and_is_capped():
    delays = [services.retry_delay(attempt) for attempt in range(1, services.MAX_ATTEMPTS)]
    assert delays[:4] == [30, 60, 120, 240]
    assert max(delays) == 3600 == delays[-1]
    assert 4 * 3600 < sum(delays) < 6 * 3600  # about five hours between the first and the last attempt


def test_receiver_helper_rejects_replays_and_forgeries():
    body = b'{"x": 1}'
    signature = webhooks.sign(SECRET, "msg-1", 1_000_000, body)
    headers = {"webhook-id": "msg-1", "webhook-timestamp": "1000000", "webhook-signature": signature}
    assert webhooks.verify(SECRET, headers, body, now=1_000_100)
    assert not webhooks.verify(SECRET, headers, body, now=1_000_000 + 301)
    assert not webhooks.verify(SECRET, headers, body, now=1_000_000 - 301)  # from the future
    assert not webhooks.verify("other-secret", headers, body, now=1_000_100)
    assert not webhooks.verify(SECRET, headers, b'{"x": 2}', now=1_000_100)
    assert not webhooks.verify(SECRET, {**headers, "webhook-id": "msg-2"}, body, now=1_000_100)
    assert not webhooks.verify(SECRET, {"webhook-id": "msg-1", "webhook-signature": signature}, body)


def test_signatures_match_the_standard_webhooks_reference_vector():
    """The example of the Standard Webhooks libraries: a whsec_ secret signs with its decoded bytes."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = webhooks.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": signature,
    }
    assert webhooks.verify(secret, headers, body, now=1614265330 + 10)


def test_receiver_helper_takes_several_signatures_and_any_header_case():
    body = b'{"type": "recommendation.approved"}'
    now = int(time.time())
    old = webhooks.sign("whsec_" + base64.b64encode(b"old key").decode(), "msg-9", now, body)
    new = webhooks.sign(STANDARD_SECRET, "msg-9", now, body)
    headers = {"Webhook-Id": "msg-9", "Webhook-Timestamp": str(now), "Webhook-Signature": f"{old} {new}"}
    assert webhooks.verify(STANDARD_SECRET, headers, body)  # during a rotation, one match is enough
    assert not webhooks.verify(STANDARD_SECRET, {**headers, "Webhook-Signature": old}, body)
    assert not webhooks.verify(STANDARD_SECRET, {**headers, "Webhook-Signature": new.replace("v1,", "v2,")}, body)


def test_sweeper_resends_only_overdue_retries_and_the_log_keeps_the_last_twenty(world, allowed, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    connector = make_connector(
        Connector.Kind.WEBHOOK,
        "Sleepy hook",
        config={"url": f"http://127.0.0.1:{free_port()}/hook"},
        secrets={"signing_secret": SECRET},
    )
    destination = Destination.objects.create(name="Sleepy", kind=Destination.Kind.WEBHOOK, connector=connector)
    world.churn.destinations.set([destination])
    (recommendation,) = allowed()
    delivery = services.delivery_send(delivery_id=Delivery.objects.get(recommendation=recommendation).pk)
    assert delivery.status == "pending"
    with clock.simulated(clock.now() + dt.timedelta(minutes=1)):
        assert selectors.deliveries_unsent() == []  # its retry task is due in 30 s: on time, not lost
    with clock.simulated(clock.now() + dt.timedelta(minutes=10)):
        assert selectors.deliveries_unsent() == [delivery.pk]  # overdue: the retry task was lost

    for _ in range(services.MAX_ATTEMPTS - 1):
        delivery = services.delivery_send(delivery_id=delivery.pk)
    assert delivery.status == "failed"
    services.delivery_retry(actor=Actor(user=world.integrator), delivery=delivery)
    for _ in range(10):
        delivery = services.delivery_send(delivery_id=delivery.pk)
    assert delivery.status == "pending" and delivery.attempts == 10
    assert len(delivery.attempt_log) == services.ATTEMPT_LOG_SIZE == 20  # 12 + 10 attempts, the oldest dropped
