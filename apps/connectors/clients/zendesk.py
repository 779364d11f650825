"""Zendesk: read tickets (Support API v2) and write back an internal comment on a ticket.

A thin client on our own session: the Python Zendesk libraries (zenpy and the like) open their own requests
sessions, which would bypass the SSRF-guarded session (the request-time address check) and our handling of
timeouts, 401/403 and 429 Retry-After; the few endpoints we need are plain JSON.

Authentication is an agent's API token: Basic "{email}/token:{api_token}". Tickets are read by id
(GET /api/v2/tickets/{id}.json), by external id (GET /api/v2/tickets.json?external_id=), by any other
field through the search API, and incrementally by updated_at through the cursor-based incremental export.

Write-back (target config {"subject_field": "id" or "external_id"}) adds an internal comment
(PUT /api/v2/tickets/{id}.json with comment.public = false); the external id is the new audit's id.
Idempotent twice over: the update carries an Idempotency-Key header, and the delivery's key as audit
metadata (ticket.metadata → audit.metadata.custom), which a retried delivery looks for among the ticket's
newest audits before writing — Zendesk documents the header for ticket creation, the audit check does not
depend on it.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import requests

from . import http
from .base import Client, FieldInfo, WriteRequest
from .errors import ConnectorError

IDEMPOTENCY_METADATA = "doorstep_delivery_id"
INCREMENTAL_PAGE = 1000  # the export's largest page
# The record key each system ticket field type is read under; custom fields are custom_field_<id>.
SYSTEM_FIELD_KEYS = {
    "subject": "subject",
    "description": "description",
    "status": "status",
    "tickettype": "type",
    "priority": "priority",
    "group": "group_id",
    "assignee": "assignee_id",
}
BUILT_IN_FIELDS = (
    ("id", "integer"),
    ("external_id", "text"),
    ("created_at", "datetime"),
    ("updated_at", "datetime"),
    ("requester_id", "integer"),
    ("organization_id", "integer"),
    ("tags", "list"),
)


class ZendeskClient(Client):
    system = "Zendesk"

    def __init__(self, connector):
        super().__init__(connector)
        self.timeout: float | tuple[float, float] = http.DEFAULT_TIMEOUT
        self.base_url = (self.config.get("base_url") or "").rstrip("/")
        self._http: requests.Session | None = None

    def _call(self, method: str, path: str, *, allow_statuses: tuple[int, ...] = (), **kwargs) -> requests.Response:
        if not self.base_url:
            raise ConnectorError("The Zendesk connector has no URL", permanent=True)
        if not (self.secrets.get("email") and self.secrets.get("api_token")):
            raise ConnectorError("Zendesk needs the agent's e-mail and an API token", permanent=True)
        if self._http is None:
            self._http = http.session(timeout=self.timeout)
            self._http.auth = (f"{self.secrets['email']}/token", self.secrets["api_token"])
        return http.request(
            self._http,
            method,
            self.base_url + path,
            system=self.system,
            timeout=self.timeout,
            allow_statuses=allow_statuses,
            **kwargs,
        )

    def _json(self, method: str, path: str, *, key: str, **kwargs):
        """The answer's `key` member (tickets, results, …), or a clear error when it is missing."""
        body = http.json_body(self._call(method, path, **kwargs), system=self.system)
        if not isinstance(body, dict) or key not in body:
            raise ConnectorError(f"Zendesk sent an answer to {path} without {key!r}: {str(body)[:200]}")
        return body[key], body

    @staticmethod
    def _tickets_only(obj: str) -> None:
        if obj != "tickets":
            raise ConnectorError(f"Zendesk connectors read tickets, not {obj!r}", permanent=True)

    def test(self) -> str:
        user, _ = self._json("GET", "/api/v2/users/me.json", key="user")
        if not isinstance(user, dict) or user.get("id") is None:  # Zendesk answers anonymous callers as a user
            raise ConnectorError("Zendesk did not accept the e-mail and API token", permanent=True)
        return f"Connected to Zendesk as {user.get('name')} <{user.get('email')}> ({user.get('role')})"

    def list_objects(self) -> list[str]:
        return ["tickets"]

    def list_fields(self, obj: str) -> list[FieldInfo]:
        self._tickets_only(obj)
        fields, _ = self._json("GET", "/api/v2/ticket_fields.json", key="ticket_fields")
        found = [FieldInfo(name, type_) for name, type_ in BUILT_IN_FIELDS]
        for field in fields:
            name = SYSTEM_FIELD_KEYS.get(field.get("type"), f"custom_field_{field.get('id')}")
            if field.get("active", True) and name not in {f.name for f in found}:
                found.append(FieldInfo(name, field.get("type", "")))
        return found

    def read_by_key(self, obj: str, key_field: str, key: str, *, limit: int = 50) -> list[dict]:
        self._tickets_only(obj)
        if key_field == "id":
            if not key.isdigit():
                return []  # ticket ids are numbers: no ticket has this one
            response = self._call("GET", f"/api/v2/tickets/{key}.json", allow_statuses=(404,))
            if response.status_code == 404:
                return []
            body = http.json_body(response, system=self.system)
            return [_flat(body.get("ticket") if isinstance(body, dict) else None)]
        if key_field == "external_id":
            tickets, _ = self._json("GET", "/api/v2/tickets.json", key="tickets", params={"external_id": key})
        else:
            if '"' in key or not key_field.replace("_", "").isalnum():
                raise ConnectorError(f"Zendesk search cannot look for {key_field} = {key!r}", permanent=True)
            query = f'type:ticket {key_field}:"{key}"'
            tickets, _ = self._json("GET", "/api/v2/search.json", key="results", params={"query": query})
        return [_flat(ticket) for ticket in tickets[:limit]]

    def read_since(self, obj: str, cursor_field: str, cursor: str | None, *, limit: int = 1000) -> list[dict]:
        self._tickets_only(obj)
        if cursor_field != "updated_at":
            raise ConnectorError("Zendesk exports tickets incrementally by updated_at only", permanent=True)
        since = _moment(cursor) if cursor else None
        # start_time is whole seconds and inclusive: ask from the cursor's second, keep what is newer.
        params = {"start_time": int(since.timestamp()) if since else 0, "per_page": min(limit, INCREMENTAL_PAGE)}
        records: list[dict] = []
        while True:
            tickets, body = self._json("GET", "/api/v2/incremental/tickets/cursor.json", key="tickets", params=params)
            records += [_flat(t) for t in tickets if since is None or _moment(t.get("updated_at")) > since]
            if body.get("end_of_stream", True) or not body.get("after_cursor") or len(records) >= limit:
                break
            params = {"cursor": body["after_cursor"], "per_page": params["per_page"]}
        records.sort(key=lambda r: (_moment(r["updated_at"]), r["id"]))
        return records[:limit]

    def write(self, request: WriteRequest) -> str:
        subject_field = (request.target or {}).get("subject_field") or "id"
        if subject_field not in ("id", "external_id"):
            raise ConnectorError(
                f"Zendesk write-back finds the ticket by id or external_id, not {subject_field!r}", permanent=True
            )
        found = self.read_by_key("tickets", subject_field, request.subject_key, limit=2)
        if len(found) != 1:
            many = "Several Zendesk tickets have" if found else "No Zendesk ticket has"
            raise ConnectorError(f"{many} {subject_field} = {request.subject_key!r}", permanent=True)
        ticket_id = found[0]["id"]
        audits, _ = self._json(
            "GET", f"/api/v2/tickets/{ticket_id}/audits.json", key="audits", params={"sort_order": "desc"}
        )
        for audit in audits:  # the newest page is enough: a retry comes soon after the first try
            custom = (audit.get("metadata") or {}).get("custom") or {}
            if custom.get(IDEMPOTENCY_METADATA) == request.idempotency_key:
                return str(audit["id"])
        update = {
            "ticket": {
                "comment": {"body": f"{request.title}\n\n{request.text}", "public": False},
                "metadata": {IDEMPOTENCY_METADATA: request.idempotency_key},
            }
        }
        # attempts=1: a comment is not safe to resend blindly; the next delivery attempt checks the audits.
        audit, _ = self._json(
            "PUT",
            f"/api/v2/tickets/{quote(str(ticket_id))}.json",
            key="audit",
            json=update,
            headers={"Idempotency-Key": request.idempotency_key},
            attempts=1,
        )
        if not isinstance(audit, dict) or not audit.get("id"):
            raise ConnectorError(f"Zendesk did not return the comment's audit: {str(audit)[:200]}")
        return str(audit["id"])


def _moment(value) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ConnectorError(f"{value!r} is not a Zendesk timestamp", permanent=True) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _flat(ticket) -> dict:
    """A ticket as one record: custom field values under custom_field_<id>, next to the system fields."""
    if not isinstance(ticket, dict) or "id" not in ticket:
        raise ConnectorError(f"Zendesk sent a ticket without an id: {str(ticket)[:200]}")
    record = {k: v for k, v in ticket.items() if k not in ("custom_fields", "fields")}
    for field in ticket.get("custom_fields") or []:
        record[f"custom_field_{field['id']}"] = field.get("value")
    return record
