"""Signed outbound webhooks, Standard Webhooks style: webhook-id, webhook-timestamp, webhook-signature
(v1,<base64 HMAC-SHA256 of "id.timestamp.body">). `verify` is the receiver helper we document."""

import base64
import hashlib
import hmac
import time

import requests

from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.http import check_address

TOLERANCE_SECONDS = 5 * 60


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict, body: bytes, *, now: float | None = None) -> bool:
    """Receiver side: the signature matches and the timestamp is within 5 minutes (no replays)."""
    try:
        msg_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in headers.get("webhook-signature", "").split())


def send(*, url: str, secret: str, msg_id: str, body: bytes, timeout: float = 5.0) -> requests.Response:
    check_address(url)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise ConnectorError(f"Webhook to {url} failed: {exc}") from exc
    if response.status_code >= 300:
        raise ConnectorError(f"Webhook to {url} answered {response.status_code}")
    return response
