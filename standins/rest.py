"""Generic REST stand-in: an internal customer-health portal, the kind of API the generic REST connector is
for, seeded from standins/recordings/rest.json. Mounted under /portal so it can share a server.

    GET  /portal                                        what the API offers
    GET  /portal/customers/{key}                        {"data": customer}
    GET  /portal/customers?updated_since=…&limit=…      {"data": [customers updated after], "next_cursor": …}
                                                        (ascending by `updated`, at most `page_size` a page)
    POST /portal/customers/{key}/notes                  create a note; honours Idempotency-Key (the same
                                                        key answers the first note again, Idempotent-Replayed)

`auth` picks what it checks: "none", "bearer" (Authorization: Bearer <token>), "basic" (username/password)
or "header" (<header_name>: <api_key>). State in standin.state["rest"]: `customers`, created `notes`.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from urllib.parse import unquote

from .server import Request, Response, StandIn, recording

DEMO_TOKEN = "portal-demo-token-4f1c2b"


def rest_standin(*, port: int = 0, slow_seconds: float = 3.0, **settings) -> StandIn:
    """`settings` as for install(): auth, credentials, page_size."""
    errors = recording("rest")["errors"]
    standin = StandIn(ROUTES, port=port, slow_seconds=slow_seconds, fault_bodies={"auth": errors["unauthorized"]})
    install(standin, **settings)
    return standin


def install(
    standin: StandIn,
    *,
    auth: str = "bearer",
    token: str = DEMO_TOKEN,
    username: str = "doorstep",
    password: str = "portal-pass",
    header_name: str = "X-Api-Key",
    api_key: str = "portal-key-93d1",
    page_size: int = 50,
) -> None:
    """Seed a stand-in's state (also used when several stand-ins share one server)."""
    data = recording("rest")
    expected = {
        "none": None,
        "bearer": ("authorization", f"Bearer {token}"),
        "basic": ("authorization", "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()),
        "header": (header_name.lower(), api_key),
    }[auth]
    standin.state["rest"] = {
        "expected": expected,
        "page_size": page_size,
        "customers": {c["id"]: c for c in data["customers"]},
        "notes": [],
        "idempotency": {},
        "errors": data["errors"],
        "lock": threading.Lock(),
    }


def _authorized(handler):
    def checked(standin: StandIn, request: Request) -> Response:
        portal = standin.state["rest"]
        expected = portal["expected"]
        if expected and request.headers.get(expected[0]) != expected[1]:
            return Response(401, portal["errors"]["unauthorized"])
        return handler(portal, request)

    return checked


@_authorized
def show(portal: dict, request: Request) -> Response:
    customer = portal["customers"].get(unquote(request.params["key"]))
    return Response(200, {"data": customer}) if customer else Response(404, portal["errors"]["not_found"])


@_authorized
def changed(portal: dict, request: Request) -> Response:
    since = request.query.get("updated_since") or ""
    size = min(int(request.query.get("limit") or portal["page_size"]), portal["page_size"])
    rows = sorted((c for c in portal["customers"].values() if c["updated"] > since), key=lambda c: c["updated"])
    page = rows[:size]
    return Response(200, {"data": page, "next_cursor": page[-1]["updated"] if len(rows) > size else None})


@_authorized
def add_note(portal: dict, request: Request) -> Response:
    key = request.headers.get("idempotency-key")
    with portal["lock"]:
        if key and key in portal["idempotency"]:
            return Response(201, portal["idempotency"][key], {"Idempotent-Replayed": "true"})
        customer_id = unquote(request.params["key"])
        if customer_id not in portal["customers"]:
            return Response(404, portal["errors"]["not_found"])
        body = request.json
        if not isinstance(body, dict) or not str(body.get("text", "")).strip():
            invalid = dict(portal["errors"]["invalid"])
            invalid["error"] = {"code": "invalid", "message": "text is required"}
            return Response(422, invalid)
        note = {
            "id": f"note-{len(portal['notes']) + 1}",
            "customer_id": customer_id,
            "title": body.get("title", ""),
            "text": body["text"],
            "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        portal["notes"].append(note)
        answer = {"note": note}
        if key:
            portal["idempotency"][key] = answer
    return Response(201, answer)


@_authorized
def root(portal: dict, request: Request) -> Response:
    return Response(200, {"name": "Customer health portal", "version": "1.4", "resources": ["customers"]})


ROUTES = [
    ("GET", r"/portal/?", root),
    ("GET", r"/portal/customers", changed),
    ("GET", r"/portal/customers/(?P<key>[^/]+)", show),
    ("POST", r"/portal/customers/(?P<key>[^/]+)/notes", add_note),
]
