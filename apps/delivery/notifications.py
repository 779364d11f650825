"""Notifications of an approved output: an e-mail over SMTP, or a message to a Slack-style incoming webhook.

Both say what was approved, for which subject, by whom, and link to the output's trace page (built from
DOORSTEP_BASE_URL). Failures become ConnectorError: refused credentials, recipients or payloads are
permanent (a retry cannot help), anything else (server down, timeout) is retried by the delivery task.
"""

import json
import smtplib
from dataclasses import dataclass
from urllib.parse import urlparse

import requests
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.urls import reverse

from apps.connectors.clients import http
from apps.connectors.clients.errors import ConnectorError
from apps.workflows.models import Recommendation, RecommendationEvent

TIMEOUT = 10.0
TRUE_WORDS = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Message:
    subject: str
    approval: str  # "Approved by rui", "Allowed by policy Churn retention policy v1"
    text: str
    action: dict
    trace_url: str


def trace_url(recommendation: Recommendation) -> str:
    return settings.DOORSTEP_BASE_URL + reverse("audit:trace", args=[recommendation.pk])


def _approval(recommendation: Recommendation) -> str:
    event = (
        recommendation.events.filter(type__in=(RecommendationEvent.Type.APPROVED, RecommendationEvent.Type.EDITED))
        .order_by("-sequence")
        .first()
    )
    if event is None:
        return "Approved"
    if event.payload.get("automatic"):
        version = recommendation.policy_version
        return f"Allowed by policy {version}" if version else "Allowed without review"
    verb = "Edited and approved" if event.type == RecommendationEvent.Type.EDITED else "Approved"
    return f"{verb} by {event.actor_label}"


def message_for(recommendation: Recommendation) -> Message:
    use_case = recommendation.use_case
    return Message(
        subject=f"Approved: {use_case.name} for {recommendation.subject_key}",
        approval=_approval(recommendation),
        text=recommendation.text,
        action=recommendation.proposed_action or {},
        trace_url=trace_url(recommendation),
    )


def _plain(message: Message) -> str:
    lines = [f"{message.approval}: {message.subject.removeprefix('Approved: ')}.", "", message.text, ""]
    if message.action:
        lines += [f"Proposed action: {json.dumps(message.action, sort_keys=True, default=str)}", ""]
    lines.append(f"Trace (sources, policy, review, delivery): {message.trace_url}")
    return "\n".join(lines)


def _recipients(value) -> list[str]:
    items = value.split(",") if isinstance(value, str) else (value or [])
    return [str(item).strip() for item in items if str(item).strip()]


def email_send(*, connector, message: Message, message_id: str) -> str:
    """Send `message` through the connector's SMTP server; return what the server accepted. The
    Message-ID is fixed per delivery, so a mail client shows a message resent by a retry only once."""
    config, secrets = connector.config or {}, connector.secrets
    host, recipients, sender = config.get("host", ""), _recipients(config.get("to")), config.get("from_address", "")
    if not host or not recipients or not sender:
        raise ConnectorError("The e-mail connector needs an SMTP host, a From address and recipients", permanent=True)
    try:
        port = int(config.get("port") or 25)
    except (TypeError, ValueError):
        raise ConnectorError(f"The SMTP port is not a number: {config.get('port')!r}", permanent=True) from None
    # The same address rule as outbound HTTP, at connect time: a relay in a private network must be allow-listed.
    connection = get_connection(
        backend="apps.connectors.clients.smtp.GuardedEmailBackend",
        host=host,
        port=port,
        username=secrets.get("username") or "",
        password=secrets.get("password") or "",
        use_tls=str(config.get("use_tls", "")).lower() in TRUE_WORDS,
        timeout=TIMEOUT,
        fail_silently=False,
    )
    domain = urlparse(settings.DOORSTEP_BASE_URL).hostname or "doorstep"
    email = EmailMessage(
        subject=message.subject,
        body=_plain(message),
        from_email=sender,
        to=recipients,
        connection=connection,
        headers={"Message-ID": f"<{message_id}@{domain}>"},
    )
    system = f"The SMTP server {host}:{port}"
    try:
        email.send()
    except smtplib.SMTPAuthenticationError as exc:
        raise ConnectorError(f"{system} refused the credentials ({exc.smtp_code})", permanent=True) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(sorted(exc.recipients))
        raise ConnectorError(f"{system} refused the recipients: {refused}", permanent=True) from exc
    except smtplib.SMTPSenderRefused as exc:
        raise ConnectorError(f"{system} refused the sender {exc.sender}: {exc.smtp_code}", permanent=True) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise ConnectorError(f"{system} does not support what was asked: {exc}", permanent=True) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise ConnectorError(f"{system} failed: {exc or type(exc).__name__}") from exc
    return f"Sent to {', '.join(recipients)}"


def _mrkdwn(text: str) -> str:
    """Slack's mrkdwn escapes exactly these three (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: Message) -> dict:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(message.text)[:3000] or "(no text)"}},
    ]
    if message.action:
        action = json.dumps(message.action, sort_keys=True, default=str)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Proposed action:* `{_mrkdwn(action)[:2900]}`"}}
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"{_mrkdwn(message.approval)} · <{message.trace_url}|Open the trace>"}
            ],
        }
    )
    # `text` is what notifications and clients without blocks show.
    return {"text": f"{message.subject}: {message.text}"[:3000], "blocks": blocks}


def slack_send(*, connector, message: Message) -> requests.Response:
    """POST the message to the incoming-webhook URL (a credential: it is never put in a message). Slack
    answers a plain-text "ok", not JSON; a refused payload or a removed hook is a 4xx, so permanent."""
    url = connector.secrets.get("webhook_url", "")
    if urlparse(url).scheme not in ("http", "https"):
        raise ConnectorError("The Slack connector has no incoming-webhook URL", permanent=True)
    return http.request(
        http.session(),
        "POST",
        url,
        system=f"The chat webhook at {urlparse(url).hostname}",
        timeout=TIMEOUT,
        attempts=1,
        json=slack_payload(message),
    )
