"""HubSpot stand-in: the CRM v3 endpoints Doorstep uses, seeded from standins/recordings/hubspot.json.

    GET  /account-info/v3/details                     the portal (connection test)
    GET  /crm/v3/properties/{object}                  property definitions (types, unique values)
    GET  /crm/v3/objects/{object}/{id}                one record, by id or ?idProperty=<unique property>
    POST /crm/v3/objects/{object}/search              filterGroups (EQ, NEQ, LT, LTE, GT, GTE, HAS_PROPERTY,
                                                      NOT_HAS_PROPERTY), sorts, properties, limit ≤ 200, after
    POST /crm/v3/objects/{object}                     create (notes with associations to companies/deals)

Every call checks the private-app Bearer token (else HubSpot's 401 body). State in standin.state["hubspot"]:
`objects` per object type (created notes land in objects["notes"], each with its `associations`).
"""

from __future__ import annotations

import datetime as dt
import threading
from urllib.parse import unquote

from .server import Request, Response, StandIn, recording

DEMO_TOKEN = "pat-na1-00000000-0000-4000-8000-d00257e9d3m0"

# HubSpot-defined association type ids of a note to each object it can be attached to.
NOTE_ASSOCIATION_TYPES = {190: "companies", 202: "contacts", 214: "deals", 228: "tickets"}
SEARCH_LIMIT = 200


def hubspot_standin(*, token: str = DEMO_TOKEN, **server_options) -> StandIn:
    standin = StandIn(ROUTES, fault_bodies=_fault_bodies(), **server_options)
    install(standin, token=token)
    return standin


def install(standin: StandIn, *, token: str = DEMO_TOKEN) -> None:
    """Seed a stand-in's state (also used when several stand-ins share one server)."""
    data = recording("hubspot")
    standin.state["hubspot"] = {
        "token": token,
        "account_info": data["account_info"],
        "properties": data["properties"],
        "objects": data["objects"],
        "errors": data["errors"],
        "serial": 0,
        "lock": threading.Lock(),
    }


def _fault_bodies() -> dict:
    errors = recording("hubspot")["errors"]
    return {"auth": errors["authentication"], "ratelimit": errors["rate_limit"], "unavailable": errors["internal"]}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(portal: dict, status: int, error: str, **values) -> Response:
    """A recorded error body with its {placeholders} filled in."""
    body = dict(portal["errors"][error])
    for key, value in values.items():
        body["message"] = body["message"].replace("{" + key + "}", str(value))
    if "context" in body:
        body["context"] = {key: [str(values.get(key, "")) for _ in items] for key, items in body["context"].items()}
    return Response(status, body)


def _authorized(handler):
    def checked(standin: StandIn, request: Request) -> Response:
        portal = standin.state["hubspot"]
        if request.headers.get("authorization") != f"Bearer {portal['token']}":
            return Response(401, portal["errors"]["authentication"])
        if "object" in request.params and request.params["object"] not in portal["objects"]:
            return _error(portal, 400, "unknown_object_type", object=request.params["object"])
        return handler(portal, request)

    return checked


def _milliseconds(value) -> float | None:
    """A datetime property or filter value (ISO 8601 or epoch milliseconds) as epoch milliseconds."""
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        return dt.datetime.fromisoformat(str(value)).timestamp() * 1000


def _comparable(portal: dict, obj: str, name: str, value):
    kind = next((p["type"] for p in portal["properties"][obj] if p["name"] == name), "string")
    if value in (None, ""):
        return None
    if kind in ("datetime", "date"):
        return _milliseconds(value)
    if kind == "number":
        return float(value)
    return str(value).lower()  # string filters ignore case


def _shape(portal: dict, obj: str, record: dict, names: list[str] | None) -> dict:
    """The record as HubSpot answers it: only the requested properties (or the object's defaults)."""
    names = names or [
        "createdate",
        "hs_object_id",
        "lastmodifieddate" if obj == "contacts" else "hs_lastmodifieddate",
    ]
    known = {p["name"] for p in portal["properties"][obj]}
    properties = {name: record["properties"].get(name) for name in names if name in known}
    return {k: v for k, v in record.items() if k != "associations"} | {"properties": properties}


@_authorized
def account_info(portal: dict, request: Request) -> Response:
    return Response(200, portal["account_info"])


@_authorized
def properties(portal: dict, request: Request) -> Response:
    return Response(200, {"results": portal["properties"][request.params["object"]]})


@_authorized
def read(portal: dict, request: Request) -> Response:
    obj, key = request.params["object"], unquote(request.params["id"])
    id_property = request.query.get("idProperty") or "hs_object_id"
    described = next((p for p in portal["properties"][obj] if p["name"] == id_property), None)
    if described is None or (id_property != "hs_object_id" and not described["hasUniqueValue"]):
        return _error(portal, 400, "property_doesnt_exist", name=id_property)
    found = next((r for r in portal["objects"][obj] if str(r["properties"].get(id_property)) == key), None)
    if found is None:
        return _error(portal, 404, "object_not_found", id=key)
    names = [n for n in request.query.get("properties", "").split(",") if n]
    return Response(200, _shape(portal, obj, found, names))


_OPERATORS = {
    "EQ": lambda a, b: a == b,
    "NEQ": lambda a, b: a != b,
    "LT": lambda a, b: a is not None and a < b,
    "LTE": lambda a, b: a is not None and a <= b,
    "GT": lambda a, b: a is not None and a > b,
    "GTE": lambda a, b: a is not None and a >= b,
    "HAS_PROPERTY": lambda a, b: a is not None,
    "NOT_HAS_PROPERTY": lambda a, b: a is None,
}


@_authorized
def search(portal: dict, request: Request) -> Response:
    obj, body = request.params["object"], request.json or {}
    known = {p["name"] for p in portal["properties"][obj]}
    limit = int(body.get("limit", 10))
    if limit > SEARCH_LIMIT:
        return Response(
            400, {"status": "error", "message": f"limit must be <= {SEARCH_LIMIT}", "category": "VALIDATION_ERROR"}
        )
    groups = []
    for group in body.get("filterGroups") or []:
        filters = []
        for f in group.get("filters", []):
            if f.get("propertyName") not in known:
                return _error(portal, 400, "property_doesnt_exist", name=f.get("propertyName"))
            if f.get("operator") not in _OPERATORS:
                message = f"Unsupported operator {f.get('operator')!r}"
                return Response(400, {"status": "error", "message": message, "category": "VALIDATION_ERROR"})
            value = _comparable(portal, obj, f["propertyName"], f.get("value"))
            filters.append((f["propertyName"], _OPERATORS[f["operator"]], value))
        groups.append(filters)

    def matches(record: dict) -> bool:
        if not groups:
            return True
        return any(
            all(
                op(_comparable(portal, obj, name, record["properties"].get(name)), value) for name, op, value in filters
            )
            for filters in groups
        )

    rows = [r for r in portal["objects"][obj] if matches(r)]

    def sort_key(record: dict, name: str):
        value = _comparable(portal, obj, name, record["properties"].get(name))
        return (value is None, value if value is not None else 0)  # records without the property go last

    for sort in reversed(body.get("sorts") or []):  # the first sort decides, so it is applied last
        if isinstance(sort, str):
            name, descending = sort.lstrip("-"), sort.startswith("-")
        else:
            name, descending = sort.get("propertyName", ""), sort.get("direction") == "DESCENDING"
        rows.sort(key=lambda record, n=name: sort_key(record, n), reverse=descending)
    offset = int(body.get("after") or 0)
    page = rows[offset : offset + limit]
    answer = {"total": len(rows), "results": [_shape(portal, obj, r, body.get("properties")) for r in page]}
    if offset + limit < len(rows):
        answer["paging"] = {"next": {"after": str(offset + limit)}}
    return Response(200, answer)


@_authorized
def create(portal: dict, request: Request) -> Response:
    obj, body = request.params["object"], request.json or {}
    described = {p["name"]: p for p in portal["properties"][obj]}
    values = body.get("properties") or {}
    for name in values:
        if name not in described:
            return _error(portal, 400, "property_doesnt_exist", name=name)
    associations = []
    for association in body.get("associations") or []:
        target_id = str((association.get("to") or {}).get("id"))
        for kind in association.get("types") or []:
            target = NOTE_ASSOCIATION_TYPES.get(kind.get("associationTypeId"))
            if obj != "notes" or kind.get("associationCategory") != "HUBSPOT_DEFINED" or target is None:
                message = f"Invalid association type {kind.get('associationTypeId')} for {obj}"
                return Response(400, {"status": "error", "message": message, "category": "VALIDATION_ERROR"})
            if not any(r["id"] == target_id for r in portal["objects"][target]):
                message = f"No {target} with id {target_id} to associate the {obj[:-1]} with"
                return Response(400, {"status": "error", "message": message, "category": "VALIDATION_ERROR"})
            associations.append({"to": target, "id": target_id, "associationTypeId": kind["associationTypeId"]})
    now = _now()
    with portal["lock"]:
        for name, value in values.items():
            if described[name]["hasUniqueValue"] and any(
                r["properties"].get(name) == value for r in portal["objects"][obj]
            ):
                message = f"A {obj[:-1]} with {name}={value} already exists"
                return Response(409, {"status": "error", "message": message, "category": "CONFLICT"})
        portal["serial"] += 1
        new_id = str(80000 + portal["serial"])
        record = {
            "id": new_id,
            "properties": {**values, "hs_object_id": new_id, "createdate": now, "hs_lastmodifieddate": now},
            "createdAt": now,
            "updatedAt": now,
            "archived": False,
            "associations": associations,
        }
        portal["objects"][obj].append(record)
    return Response(201, _shape(portal, obj, record, list(record["properties"])))


ROUTES = [
    ("GET", r"/account-info/v3/details", account_info),
    ("GET", r"/crm/v3/properties/(?P<object>\w+)", properties),
    ("POST", r"/crm/v3/objects/(?P<object>\w+)/search", search),
    ("GET", r"/crm/v3/objects/(?P<object>\w+)/(?P<id>[^/]+)", read),
    ("POST", r"/crm/v3/objects/(?P<object>\w+)", create),
]
