"""HubSpot: read companies, contacts, deals and tickets (CRM v3) and write back a note on a company or deal.

A thin client on our own session rather than HubSpot's official library: hubspot-api-client is generated
urllib3 code with its own connection pool, which would bypass the SSRF-guarded session (the request-time
address check) and our handling of timeouts, 401/403 and 429 Retry-After.

Authentication is a private app's access token (Bearer). Reads use GET /crm/v3/objects/{object}/{id}
(by record id, or ?idProperty= for a property with unique values) and POST .../search (any other property;
incremental reads filter `cursor_field GT cursor`, sorted ascending, paged with `after`).

Write-back (target config {"object": "companies" | "deals" | "contacts" | "tickets", "subject_field":
"hs_object_id" or a property holding the subject key}) creates a note (POST /crm/v3/objects/notes)
associated with the record. The note carries the delivery's idempotency key in the custom note property
doorstep_delivery_id (create it: single-line text, unique values). A retried delivery first reads the note
by that property (GET ...?idProperty=doorstep_delivery_id, not the search endpoint, whose index trails a
write by a few seconds) and returns the note it already created.
"""

from __future__ import annotations

import datetime as dt
import re
from html import escape
from urllib.parse import quote

import requests

from . import http
from .base import Client, FieldInfo, WriteRequest
from .errors import ConnectorError

DEFAULT_BASE_URL = "https://api.hubapi.com"
IDEMPOTENCY_PROPERTY = "doorstep_delivery_id"
STANDARD_OBJECTS = ("companies", "contacts", "deals", "tickets")
# HubSpot-defined association type ids: note → object.
NOTE_ASSOCIATION_TYPES = {"companies": 190, "contacts": 202, "deals": 214, "tickets": 228}
SEARCH_PAGE = 100
_OBJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ID_FIELDS = ("id", "hs_object_id")


class HubSpotClient(Client):
    system = "HubSpot"

    def __init__(self, connector):
        super().__init__(connector)
        self.timeout: float | tuple[float, float] = http.DEFAULT_TIMEOUT
        self.base_url = (self.config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self._http: requests.Session | None = None
        self._properties: dict[str, dict[str, dict]] = {}

    def _call(self, method: str, path: str, *, allow_statuses: tuple[int, ...] = (), **kwargs) -> requests.Response:
        if not self.secrets.get("access_token"):
            raise ConnectorError("HubSpot needs a private app access token", permanent=True)
        if self._http is None:
            self._http = http.session(timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self.secrets['access_token']}", "Accept": "application/json"}
        return http.request(
            self._http,
            method,
            self.base_url + path,
            system=self.system,
            timeout=self.timeout,
            headers=headers,
            allow_statuses=allow_statuses,
            **kwargs,
        )

    def _json(self, method: str, path: str, **kwargs) -> dict:
        body = http.json_body(self._call(method, path, **kwargs), system=self.system)
        if not isinstance(body, dict):
            raise ConnectorError(f"HubSpot sent an unexpected answer to {path}: {str(body)[:200]}")
        return body

    def _props(self, obj: str) -> dict[str, dict]:
        """The object's property definitions by name (once per client)."""
        if not _OBJECT.match(obj or ""):
            raise ConnectorError(f"Not a HubSpot object type: {obj!r}", permanent=True)
        if obj not in self._properties:
            results = self._json("GET", f"/crm/v3/properties/{obj}").get("results")
            if not isinstance(results, list):
                raise ConnectorError(f"HubSpot sent no property list for {obj}")
            self._properties[obj] = {p["name"]: p for p in results if isinstance(p, dict) and "name" in p}
        return self._properties[obj]

    def _prop(self, obj: str, name: str) -> dict:
        props = self._props(obj)
        if name not in props:
            raise ConnectorError(f"HubSpot {obj} have no property {name!r}", permanent=True)
        return props[name]

    def _value(self, obj: str, name: str, value: str) -> str:
        """A filter value as HubSpot's search wants it: dates as epoch milliseconds."""
        if self._prop(obj, name).get("type") in ("datetime", "date"):
            try:
                moment = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ConnectorError(f"{value!r} is not a date for HubSpot property {name}", permanent=True) from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return str(int(moment.timestamp() * 1000))
        return value

    def _search(self, obj: str, filters: list[dict], *, limit: int, sort: str | None = None) -> list[dict]:
        records: list[dict] = []
        after = None
        while len(records) < limit:
            body = {
                "filterGroups": [{"filters": filters}] if filters else [],
                "properties": list(self._props(obj)),
                "limit": min(SEARCH_PAGE, limit - len(records)),
            }
            if sort:
                body["sorts"] = [{"propertyName": sort, "direction": "ASCENDING"}]
            if after:
                body["after"] = after
            answer = self._json("POST", f"/crm/v3/objects/{obj}/search", json=body, idempotent=True)
            records += [_flat(r) for r in answer.get("results") or []]
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        return records[:limit]

    def test(self) -> str:
        info = self._json("GET", "/account-info/v3/details")
        return (
            f"Connected to HubSpot portal {info.get('portalId', '?')} "
            f"({info.get('accountType', 'unknown')} account, data in {info.get('dataHostingLocation', '?')})"
        )

    def list_objects(self) -> list[str]:
        return list(STANDARD_OBJECTS)

    def list_fields(self, obj: str) -> list[FieldInfo]:
        return [FieldInfo("id", "id")] + [FieldInfo(name, p.get("type", "")) for name, p in self._props(obj).items()]

    def read_by_key(self, obj: str, key_field: str, key: str, *, limit: int = 50) -> list[dict]:
        if key_field in _ID_FIELDS:
            if not key.isdigit():
                return []  # record ids are numeric: no record has this one
            return self._get(obj, key, {})
        prop = self._prop(obj, key_field)
        if prop.get("hasUniqueValue"):
            return self._get(obj, key, {"idProperty": key_field})
        return self._search(obj, [{"propertyName": key_field, "operator": "EQ", "value": key}], limit=limit)

    def _get(self, obj: str, key: str, params: dict) -> list[dict]:
        params = {**params, "properties": ",".join(self._props(obj))}
        response = self._call(
            "GET", f"/crm/v3/objects/{obj}/{quote(key, safe='')}", params=params, allow_statuses=(404,)
        )
        if response.status_code == 404:
            return []
        return [_flat(http.json_body(response, system=self.system))]

    def read_since(self, obj: str, cursor_field: str, cursor: str | None, *, limit: int = 1000) -> list[dict]:
        self._prop(obj, cursor_field)
        filters = []
        if cursor:
            filters = [
                {"propertyName": cursor_field, "operator": "GT", "value": self._value(obj, cursor_field, cursor)}
            ]
        return self._search(obj, filters, limit=limit, sort=cursor_field)

    def write(self, request: WriteRequest) -> str:
        target = request.target or {}
        obj = target.get("object") or "companies"
        if obj not in NOTE_ASSOCIATION_TYPES:
            raise ConnectorError(
                f"HubSpot notes attach to {', '.join(NOTE_ASSOCIATION_TYPES)}; not to {obj!r}", permanent=True
            )
        if not self._props("notes").get(IDEMPOTENCY_PROPERTY, {}).get("hasUniqueValue"):
            raise ConnectorError(
                f"HubSpot notes have no unique property {IDEMPOTENCY_PROPERTY}: create it (single-line text, "
                "unique values) so that a retried delivery cannot write a second note",
                permanent=True,
            )
        existing = self._get("notes", request.idempotency_key, {"idProperty": IDEMPOTENCY_PROPERTY})
        if existing:
            return existing[0]["id"]
        subject_field = target.get("subject_field") or "hs_object_id"
        found = self.read_by_key(obj, subject_field, request.subject_key, limit=2)
        if len(found) != 1:
            many = "Several HubSpot" if found else "No HubSpot"
            raise ConnectorError(f"{many} {obj} have {subject_field} = {request.subject_key!r}", permanent=True)
        note = {
            "properties": {
                "hs_note_body": _note_body(request.title, request.text),
                "hs_timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                IDEMPOTENCY_PROPERTY: request.idempotency_key,
            },
            "associations": [
                {
                    "to": {"id": found[0]["id"]},
                    "types": [
                        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_ASSOCIATION_TYPES[obj]}
                    ],
                }
            ],
        }
        created = self._json("POST", "/crm/v3/objects/notes", json=note)
        if not created.get("id"):
            raise ConnectorError(f"HubSpot did not return the new note's id: {str(created)[:200]}")
        return str(created["id"])


def _flat(result) -> dict:
    """A CRM object as one record: its id and its properties."""
    if not isinstance(result, dict) or not isinstance(result.get("properties"), dict):
        raise ConnectorError(f"HubSpot sent a record without properties: {str(result)[:200]}")
    return {"id": str(result.get("id")), **result["properties"]}


def _note_body(title: str, text: str) -> str:
    """hs_note_body is rich text (HTML): escape ours and keep its paragraphs."""
    paragraphs = "".join(f"<p>{escape(part).replace(chr(10), '<br>')}</p>" for part in text.split("\n\n") if part)
    return f"<p><strong>{escape(title)}</strong></p>{paragraphs}"
