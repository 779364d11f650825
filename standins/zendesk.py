"""Zendesk stand-in: the Support API v2 endpoints Doorstep uses, seeded from standins/recordings/zendesk.json.

    GET /api/v2/users/me.json                          the agent the token belongs to (connection test)
    GET /api/v2/ticket_fields.json                     system and custom ticket fields
    GET /api/v2/tickets/{id}.json                      one ticket
    GET /api/v2/tickets.json?external_id=…             tickets by external id
    GET /api/v2/search.json?query=type:ticket f:v …    search (property:value terms, ANDed)
    GET /api/v2/incremental/tickets/cursor.json        incremental export (start_time, then cursor;
                                                       per_page; leaves out the last minute's changes)
    GET /api/v2/tickets/{id}/audits.json               a ticket's audits (sort_order=desc: newest first)
    PUT /api/v2/tickets/{id}.json                      update: a comment (and audit metadata) → the
                                                       ticket and its new audit. Honours Idempotency-Key:
                                                       the same key answers the first response again
                                                       (x-idempotency-lookup: hit) without a second comment.

Authentication is an API token: Basic base64("{email}/token:{api_token}"), else 401 "Couldn't authenticate
you". State in standin.state["zendesk"]: `tickets`, `audits` per ticket id (what comments were added).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import threading
from html import escape

from .server import Request, Response, StandIn, recording

DEMO_EMAIL = "dana.agent@northwind.example"
DEMO_API_TOKEN = "6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv"
INCREMENTAL_DELAY = dt.timedelta(minutes=1)  # the export leaves out the last minute's changes


def zendesk_standin(*, email: str = DEMO_EMAIL, api_token: str = DEMO_API_TOKEN, **server_options) -> StandIn:
    errors = recording("zendesk")["errors"]
    standin = StandIn(
        ROUTES,
        fault_bodies={
            "auth": errors["unauthorized"],
            "ratelimit": errors["too_many_requests"],
            "unavailable": errors["unavailable"],
        },
        **server_options,
    )
    install(standin, email=email, api_token=api_token)
    return standin


def install(standin: StandIn, *, email: str = DEMO_EMAIL, api_token: str = DEMO_API_TOKEN) -> None:
    """Seed a stand-in's state (also used when several stand-ins share one server)."""
    data = recording("zendesk")
    standin.state["zendesk"] = {
        "credentials": f"{email}/token:{api_token}",
        "me": data["me"],
        "ticket_fields": data["ticket_fields"],
        "tickets": {ticket["id"]: ticket for ticket in data["tickets"]},
        "audits": {},
        "idempotency": {},
        "errors": data["errors"],
        "serial": 0,
        "lock": threading.Lock(),
    }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _authorized(handler):
    def checked(standin: StandIn, request: Request) -> Response:
        desk = standin.state["zendesk"]
        header = request.headers.get("authorization", "")
        try:
            credentials = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            credentials = ""
        if not header.startswith("Basic ") or credentials != desk["credentials"]:
            return Response(401, desk["errors"]["unauthorized"])
        return handler(standin, desk, request)

    return checked


def _not_found(desk: dict) -> Response:
    return Response(404, desk["errors"]["not_found"])


def _list(key: str, items: list) -> dict:
    return {key: items, "next_page": None, "previous_page": None, "count": len(items)}


@_authorized
def me(standin: StandIn, desk: dict, request: Request) -> Response:
    return Response(200, desk["me"])


@_authorized
def ticket_fields(standin: StandIn, desk: dict, request: Request) -> Response:
    return Response(200, _list("ticket_fields", desk["ticket_fields"]))


@_authorized
def show_ticket(standin: StandIn, desk: dict, request: Request) -> Response:
    ticket = desk["tickets"].get(int(request.params["id"]))
    return Response(200, {"ticket": ticket}) if ticket else _not_found(desk)


@_authorized
def list_tickets(standin: StandIn, desk: dict, request: Request) -> Response:
    tickets = sorted(desk["tickets"].values(), key=lambda t: t["id"])
    if "external_id" in request.query:
        tickets = [t for t in tickets if t.get("external_id") == request.query["external_id"]]
    return Response(200, _list("tickets", tickets))


_TERM = re.compile(r'(?P<field>[\w]+):(?:"(?P<quoted>[^"]*)"|(?P<plain>\S+))')


def _field_value(ticket: dict, field: str):
    if field.startswith("custom_field_"):
        wanted = int(field.removeprefix("custom_field_"))
        return next((f["value"] for f in ticket.get("custom_fields", []) if f["id"] == wanted), None)
    return ticket.get(field)


@_authorized
def search(standin: StandIn, desk: dict, request: Request) -> Response:
    terms = [
        (m["field"], m["quoted"] if m["quoted"] is not None else m["plain"])
        for m in _TERM.finditer(request.query.get("query", ""))
    ]
    if ("type", "ticket") not in terms:
        return Response(200, {**_list("results", []), "facets": None})
    results = []
    for ticket in sorted(desk["tickets"].values(), key=lambda t: t["id"]):
        matched = True
        for field, value in terms:
            if field == "type":
                continue
            found = _field_value(ticket, field)
            if isinstance(found, list):
                matched &= value.lower() in [str(v).lower() for v in found]
            else:
                matched &= str(found).lower() == value.lower()  # search matches ignore case
        if matched:
            results.append({**ticket, "result_type": "ticket"})
    return Response(200, {**_list("results", results), "facets": None})


def _cursor(start: int, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([start, offset]).encode()).decode()


@_authorized
def incremental(standin: StandIn, desk: dict, request: Request) -> Response:
    per_page = min(int(request.query.get("per_page", 1000)), 1000)
    if "cursor" in request.query:
        try:
            start, offset = json.loads(base64.urlsafe_b64decode(request.query["cursor"]))
        except (ValueError, binascii.Error):
            return Response(400, {"error": "InvalidCursor", "description": "The cursor is not valid"})
    elif "start_time" in request.query:
        start, offset = int(request.query["start_time"]), 0
    else:
        return Response(400, {"error": "InvalidValue", "description": "start_time or cursor is required"})
    until = dt.datetime.now(dt.UTC) - INCREMENTAL_DELAY
    changed = sorted(
        (t for t in desk["tickets"].values() if start <= _parse(t["updated_at"]).timestamp() <= until.timestamp()),
        key=lambda t: (t["updated_at"], t["id"]),
    )
    page = changed[offset : offset + per_page]
    after = _cursor(start, offset + len(page))
    return Response(
        200,
        {
            "tickets": [{**t, "generated_timestamp": int(_parse(t["updated_at"]).timestamp())} for t in page],
            "after_url": f"{standin.url}/api/v2/incremental/tickets/cursor.json?cursor={after}",
            "after_cursor": after,
            "before_url": None,
            "before_cursor": None,
            "end_of_stream": offset + len(page) >= len(changed),
        },
    )


@_authorized
def audits(standin: StandIn, desk: dict, request: Request) -> Response:
    ticket_id = int(request.params["id"])
    if ticket_id not in desk["tickets"]:
        return _not_found(desk)
    found = list(desk["audits"].get(ticket_id, []))
    if request.query.get("sort_order") == "desc":
        found.reverse()
    return Response(200, _list("audits", found))


@_authorized
def update_ticket(standin: StandIn, desk: dict, request: Request) -> Response:
    key = request.headers.get("idempotency-key")
    with desk["lock"]:
        if key and key in desk["idempotency"]:
            body, response = desk["idempotency"][key]
            if body != request.body:
                return Response(400, desk["errors"]["idempotency_mismatch"])
            return Response(response.status, response.body, {"x-idempotency-lookup": "hit"})
        response = _update(standin, desk, request)
        if key and response.status < 300:
            desk["idempotency"][key] = (request.body, response)
    if key:
        response.headers["x-idempotency-lookup"] = "miss"
    return response


def _update(standin: StandIn, desk: dict, request: Request) -> Response:
    ticket = desk["tickets"].get(int(request.params["id"]))
    if ticket is None:
        return _not_found(desk)
    changes = (request.json or {}).get("ticket")
    if not isinstance(changes, dict):
        return Response(400, {"error": "InvalidValue", "description": "The request body must hold a ticket"})
    comment = changes.get("comment")
    if comment is not None and not (isinstance(comment, dict) and str(comment.get("body", "")).strip()):
        invalid = dict(desk["errors"]["record_invalid"])
        invalid["details"] = {"base": [{"description": "Comment: cannot be blank"}]}
        return Response(422, invalid)
    now = _iso(dt.datetime.now(dt.UTC))
    desk["serial"] += 1
    audit_id = 24_000_000_000 + desk["serial"]
    author = desk["me"]["user"]["id"]
    events = []
    if comment is not None:
        public = bool(comment.get("public", True))
        events.append(
            {
                "id": audit_id + 1,
                "type": "Comment",
                "author_id": author,
                "body": comment["body"],
                "html_body": f'<div class="zd-comment"><p>{escape(comment["body"])}</p></div>',
                "plain_body": comment["body"],
                "public": public,
                "attachments": [],
                "audit_id": audit_id,
            }
        )
        ticket["is_public"] = ticket["is_public"] or public
    ticket["updated_at"] = now
    audit = {
        "id": audit_id,
        "ticket_id": ticket["id"],
        "created_at": now,
        "author_id": author,
        "metadata": {"system": {"client": request.headers.get("user-agent", ""), "ip_address": "127.0.0.1"}},
        "events": events,
        "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
    }
    if isinstance(changes.get("metadata"), dict):
        audit["metadata"]["custom"] = changes["metadata"]
    desk["audits"].setdefault(ticket["id"], []).append(audit)
    return Response(200, {"ticket": ticket, "audit": audit})


ROUTES = [
    ("GET", r"/api/v2/users/me\.json", me),
    ("GET", r"/api/v2/ticket_fields\.json", ticket_fields),
    ("GET", r"/api/v2/tickets\.json", list_tickets),
    ("GET", r"/api/v2/tickets/(?P<id>\d+)\.json", show_ticket),
    ("PUT", r"/api/v2/tickets/(?P<id>\d+)\.json", update_ticket),
    ("GET", r"/api/v2/tickets/(?P<id>\d+)/audits\.json", audits),
    ("GET", r"/api/v2/search\.json", search),
    ("GET", r"/api/v2/incremental/tickets/cursor\.json", incremental),
]
