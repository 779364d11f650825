"""Signed outbound webhooks in the Standard Webhooks style (https://www.standardwebhooks.com).

What Doorstep sends, per delivery:

    POST <receiver URL>
    content-type: application/json
    webhook-id: dlv-<delivery id>          the same on every retry of one delivery: dedupe on it
    webhook-timestamp: <unix seconds>      when this attempt was signed
    webhook-signature: v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<raw body>">

The signing secret is the connector's `signing_secret`. A secret written `whsec_<base64>` (the Standard
Webhooks format) is used as the decoded bytes; any other string is used as its UTF-8 bytes.

Receivers: copy `verify` below (it needs only base64, hashlib, hmac and time), call it with the raw body bytes
before parsing them, answer 2xx once the event is stored, and ignore a `webhook-id` already seen, e.g.

    def doorstep_hook(request):                          # Django; Flask is the same with request.data
        if not verify(SECRET, request.headers, request.body):
            return HttpResponse(status=401)
        event_id = request.headers["webhook-id"]
        if not Seen.objects.filter(pk=event_id).exists():  # Doorstep retries until it gets a 2xx
            handle(json.loads(request.body))
            Seen.objects.create(pk=event_id)
        return HttpResponse(status=204)

Doorstep retries a failed delivery with exponential backoff for about five hours (see
apps.delivery.services.retry_delay), so a receiver that is down for a while loses nothing; a signature
older than five minutes is refused by `verify`, so a captured request cannot be replayed later.
"""

import base64
import hashlib
import hmac
import time
from urllib.parse import urlparse

import requests

from apps.connectors.clients import http


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret, headers, body, *, now=None, tolerance=300):
    """True when `body` (the raw bytes) was signed with `secret` by the sender of `headers` less than
    `tolerance` seconds ago (either way, for clock skew). `headers` is any mapping of the request's
    headers. `webhook-signature` may hold several space-separated signatures (as during a secret
    rotation): one match is enough. Self-contained on purpose, so a receiver can copy it."""
    lowered = {str(name).lower(): value for name, value in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = int(lowered["webhook-timestamp"])
    except (KeyError, TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False  # too old or from the future: a replay, or a badly wrong clock
    key = base64.b64decode(secret[len("whsec_") :]) if secret.startswith("whsec_") else secret.encode()
    if isinstance(body, str):
        body = body.encode()
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    for candidate in lowered.get("webhook-signature", "").split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(expected.encode(), signature.encode()):
            return True
    return False


def send(*, url: str, secret: str, msg_id: str, body: bytes, timeout: float = 5.0) -> requests.Response:
    """POST one signed event through the SSRF-guarded session (the receiver's address is checked when
    connecting). One try: the delivery task owns retries and their backoff. Raises ConnectorError."""
    timestamp = int(time.time())  # the receiver checks it against its own clock, never the simulated one
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    return http.request(
        http.session(),
        "POST",
        url,
        system=f"The webhook receiver {urlparse(url).netloc}",
        timeout=timeout,
        attempts=1,
        data=body,
        headers=headers,
    )
