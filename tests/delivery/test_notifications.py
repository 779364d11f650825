"""Notifications of approved outputs: e-mail to a real local SMTP server (aiosmtpd) and Slack-style
incoming webhooks to a stand-in that checks the payload's shape and answers plain "ok" like Slack."""

import email
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller

from apps.connectors.models import Connector, Destination
from apps.core.actors import Actor
from apps.delivery import notifications, services
from apps.delivery.models import Delivery
from apps.reviews.services import review_task_decide
from standins.server import Response, StandIn
from tests.delivery.helpers import free_port, make_connector


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


def _email_destination(world, port: int) -> Destination:
    connector = make_connector(
        Connector.Kind.EMAIL,
        "Account team mail",
        config={
            "host": "127.0.0.1",
            "port": port,
            "from_address": "doorstep@northwind.example",
            "to": ["owner@northwind.example", "lead@northwind.example"],
        },
    )
    destination = Destination.objects.create(name="Mail the owner", kind=Destination.Kind.NOTIFY, connector=connector)
    world.churn.destinations.set([destination])
    return destination


def test_email_says_what_was_approved_for_whom_with_a_link_to_the_trace(
    world, queued_recommendation, smtp_server, settings, django_capture_on_commit_callbacks
):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.DOORSTEP_BASE_URL = "https://doorstep.northwind.example"
    controller, mailbox = smtp_server
    _email_destination(world, controller.port)
    recommendation = queued_recommendation(subject_key="ACC-0042", text="Offer a 20% renewal discount.")
    with django_capture_on_commit_callbacks(execute=True):
        review_task_decide(actor=Actor(user=world.reviewer), task=recommendation.review_task, decision="approve")
    assert len(mailbox.messages) == 1
    sender, recipients, message = mailbox.messages[0]
    assert sender == "doorstep@northwind.example"
    assert recipients == ["owner@northwind.example", "lead@northwind.example"]
    assert message["Subject"] == "Approved: Churn risk on CRM accounts for ACC-0042"
    delivery = Delivery.objects.get(recommendation=recommendation)
    assert message["Message-ID"] == f"<dlv-{delivery.pk}@doorstep.northwind.example>"
    body = message.get_content()
    assert "Approved by reviewer: Churn risk on CRM accounts for ACC-0042." in body
    assert "Offer a 20% renewal discount." in body
    assert f"https://doorstep.northwind.example/audit/recommendations/{recommendation.pk}/" in body
    assert delivery.status == "succeeded" and "owner@northwind.example" in delivery.last_response
    recommendation.refresh_from_db()
    assert recommendation.status == "delivered"


def test_email_to_a_private_address_is_refused_unless_allow_listed(world, allowed, smtp_server):
    controller, mailbox = smtp_server
    _email_destination(world, controller.port)
    (recommendation,) = allowed()
    delivery = services.delivery_send(delivery_id=Delivery.objects.get(recommendation=recommendation).pk)
    assert delivery.status == "failed" and "private address" in delivery.last_error
    assert mailbox.messages == []


def test_smtp_server_down_is_retried(world, allowed, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    _email_destination(world, free_port())
    (recommendation,) = allowed()
    delivery = services.delivery_send(delivery_id=Delivery.objects.get(recommendation=recommendation).pk)
    assert delivery.status == "pending" and delivery.attempts == 1
    assert "The SMTP server 127.0.0.1" in delivery.last_error


def _slack(standin, request):
    """Slack's incoming webhook: JSON with `text` and valid blocks, or 400 invalid_payload (plain text)."""
    payload = request.json
    blocks = payload.get("blocks") if isinstance(payload, dict) else None
    if not isinstance(payload.get("text"), str) or not isinstance(blocks, list):
        return Response(400, "invalid_payload", {"Content-Type": "text/plain"})
    for block in blocks:
        if block.get("type") not in ("header", "section", "context"):
            return Response(400, "invalid_blocks", {"Content-Type": "text/plain"})
        if block["type"] == "header" and len(block["text"]["text"]) > 150:
            return Response(400, "invalid_blocks", {"Content-Type": "text/plain"})
    standin.state.setdefault("posted", []).append(payload)
    return Response(200, "ok", {"Content-Type": "text/plain"})


@pytest.fixture
def slack():
    with StandIn([("POST", r"/services/T0001/B0001/(?P<token>\w+)", _slack)]) as standin:
        yield standin


def _slack_destination(world, url: str) -> Destination:
    connector = make_connector(Connector.Kind.SLACK, "Sales channel", secrets={"webhook_url": url})
    destination = Destination.objects.create(name="Tell #sales", kind=Destination.Kind.NOTIFY, connector=connector)
    world.churn.destinations.set([destination])
    return destination


def test_slack_message_has_text_blocks_and_the_trace_link(world, allowed, slack, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    _slack_destination(world, f"{slack.url}/services/T0001/B0001/s3cr3tToken")
    (recommendation,) = allowed(text="Renewal <at risk> & sponsor left")
    delivery = services.delivery_send(delivery_id=Delivery.objects.get(recommendation=recommendation).pk)
    assert delivery.status == "succeeded" and delivery.last_response == "ok"
    assert delivery.attempt_log[-1] == {**delivery.attempt_log[-1], "ok": True, "status": 200, "response": "ok"}
    (payload,) = slack.state["posted"]
    assert "ACC-0001" in payload["text"] and "Churn risk on CRM accounts" in payload["text"]
    header, section, action, context = payload["blocks"]
    assert header["text"]["text"] == "Approved: Churn risk on CRM accounts for ACC-0001"
    assert section["text"]["text"] == "Renewal &lt;at risk&gt; &amp; sponsor left"  # Slack's escaping
    assert "discount_pct" in action["text"]["text"]
    link = context["elements"][0]["text"]
    assert f"/audit/recommendations/{recommendation.pk}/|Open the trace>" in link
    assert link.startswith("Allowed by policy Churn retention policy v1")


def test_slack_refusal_is_permanent_and_never_shows_the_secret_url(world, allowed, slack, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    _slack_destination(world, f"{slack.url}/services/T0001/B0001/s3cr3tToken")
    (recommendation,) = allowed()
    slack.fail_next("auth")
    delivery = services.delivery_send(delivery_id=Delivery.objects.get(recommendation=recommendation).pk)
    assert delivery.status == "failed" and delivery.attempts == 1 and "401" in delivery.last_error
    assert "s3cr3tToken" not in delivery.last_error and "s3cr3tToken" not in str(delivery.attempt_log)


def test_message_names_the_editor_of_an_edited_output(world, queued_recommendation):
    recommendation = queued_recommendation()
    review_task_decide(
        actor=Actor(user=world.reviewer),
        task=recommendation.review_task,
        decision="edit",
        edited_text="Call the sponsor.",
    )
    recommendation.refresh_from_db()
    message = notifications.message_for(recommendation)
    assert message.approval == "Edited and approved by reviewer" and message.text == "Call the sponsor."
