"""Salesforce: read Accounts, Contacts, Opportunities (any queryable object) and write back a Task on an account.

Speaks through simple-salesforce, the well-kept REST client, on our SSRF-guarded session. Authentication is
the OAuth 2.0 client-credentials flow of a connected app: POST {instance_url}/services/oauth2/token with the
consumer key and secret gives an access token and the org's instance URL, which simple-salesforce then uses
as its session. A token that expires meanwhile (401 INVALID_SESSION_ID) is fetched again once.

simple-salesforce raises its own exceptions and hides the response headers, so a response hook on the session
keeps the last response: a 429's Retry-After is honoured (waited out when short, else RateLimited) and an
answer that is not JSON is reported as malformed. Every failure leaves as a ConnectorError, permanent when
retrying cannot help.

Write-back (target config {"object": "Task", "subject_field": "Id" or an Account field such as
"AccountNumber", "idempotency_field": ...}) creates a Task related to the account (WhatId). The Task carries
the delivery's idempotency key in an external-id field (default Doorstep_Delivery_Id__c: create it on Task as
a unique External ID text field), and a retried delivery finds the Task it already created.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Callable
from urllib.parse import urlparse

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql

from . import http
from .base import Client, FieldInfo, WriteRequest
from .errors import ConnectorError

DEFAULT_VERSION = "59.0"
DEFAULT_IDEMPOTENCY_FIELD = "Doorstep_Delivery_Id__c"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_NUMBER_TYPES = {"int", "double", "currency", "percent"}


class SalesforceClient(Client):
    system = "Salesforce"

    def __init__(self, connector):
        super().__init__(connector)
        self.timeout: float | tuple[float, float] = http.DEFAULT_TIMEOUT
        self._http: requests.Session | None = None
        self._sf: Salesforce | None = None
        self._last_response: requests.Response | None = None
        self._describes: dict[str, dict[str, str]] = {}
        # "v59.0" and "59.0" both mean 59.0: simple-salesforce adds the v.
        self.version = (self.config.get("api_version") or DEFAULT_VERSION).strip().lstrip("vV")

    # --- connection ---------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        if self._http is None:
            ca_bundle = self.config.get("ca_bundle")
            if ca_bundle and not os.path.isfile(ca_bundle):
                raise ConnectorError(f"The CA bundle {ca_bundle} is not a file on this server", permanent=True)
            self._http = http.session(timeout=self.timeout)
            self._http.verify = ca_bundle or True
            self._http.hooks["response"].append(self._remember)
        return self._http

    def _remember(self, response: requests.Response, *args, **kwargs) -> None:
        self._last_response = response

    def _login(self) -> Salesforce:
        instance = (self.config.get("instance_url") or "").rstrip("/")
        if not instance.startswith("https://"):
            raise ConnectorError("The Salesforce instance URL must start with https://", permanent=True)
        if not (self.secrets.get("client_id") and self.secrets.get("client_secret")):
            raise ConnectorError("Salesforce needs the consumer key and secret of a connected app", permanent=True)
        response = http.request(
            self._session(),
            "POST",
            f"{instance}/services/oauth2/token",
            system=self.system,
            timeout=self.timeout,
            allow_statuses=(400,),
            data={
                "grant_type": "client_credentials",
                "client_id": self.secrets["client_id"],
                "client_secret": self.secrets["client_secret"],
            },
        )
        body = http.json_body(response, system=self.system)
        if not isinstance(body, dict) or not body.get("access_token"):
            error = body if isinstance(body, dict) else {}
            raise ConnectorError(
                f"Salesforce refused the client credentials: {error.get('error', 'no access token')} "
                f"({error.get('error_description', 'check the consumer key and secret')})",
                permanent=True,
            )
        return Salesforce(
            instance_url=body.get("instance_url") or instance,
            session_id=body["access_token"],
            version=self.version,
            session=self._session(),
        )

    def _call(self, operation: Callable[[Salesforce], object], *, idempotent: bool = True):
        """Run one simple-salesforce call and turn what it raises into our errors. Retries once: after a new
        token, after a short Retry-After, or (reads only) after a timeout, a dropped connection or a 5xx."""
        renewed = retried = False
        while True:
            if self._sf is None:
                self._sf = self._login()
            try:
                return operation(self._sf)
            except SalesforceError as exc:
                if exc.status == 401 and not renewed:  # the token expired: one new one
                    self._sf, renewed = None, True
                    continue
                if exc.status == 429:
                    wait = http.retry_after_seconds(self._last_response)
                    if not retried and wait <= http.MAX_INLINE_WAIT:  # a 429 was not processed: safe to resend
                        retried = True
                        time.sleep(wait)
                        continue
                    raise http.RateLimited(
                        f"Salesforce is rate limiting us (429); retry after {wait:g}s", retry_after=wait
                    ) from exc
                if exc.status >= 500 and idempotent and not retried:
                    retried = True
                    time.sleep(0.2)
                    continue
                raise _error(exc) from exc
            except requests.Timeout as exc:
                if idempotent and not retried:
                    retried = True
                    continue
                limit = self.timeout if isinstance(self.timeout, int | float) else self.timeout[1]
                raise ConnectorError(f"Salesforce did not answer within {limit:g}s") from exc
            except requests.exceptions.SSLError as exc:
                raise ConnectorError(
                    f"Salesforce: the TLS certificate is not trusted or does not match ({exc}); if it is signed "
                    "by a private CA, set the connector's CA bundle",
                    permanent=True,
                ) from exc
            except requests.ConnectionError as exc:
                if idempotent and not retried:
                    retried = True
                    time.sleep(0.2)
                    continue
                host = urlparse(self.config.get("instance_url", "")).netloc
                raise ConnectorError(f"Cannot reach Salesforce at {host}: connection failed") from exc
            except requests.exceptions.JSONDecodeError as exc:
                raise http.malformed(self._last_response, system=self.system) from exc

    # --- reading ------------------------------------------------------------------------------------

    def _sobjects(self) -> list[dict]:
        body = self._call(lambda sf: sf.describe())
        if not isinstance(body, dict) or not isinstance(body.get("sobjects"), list):
            raise ConnectorError("Salesforce sent a describe answer without sobjects")
        return body["sobjects"]

    def _fields(self, obj: str) -> dict[str, str]:
        """The object's fields and their types (from its describe, once per client)."""
        if not _NAME.match(obj or ""):
            raise ConnectorError(f"Not a Salesforce object name: {obj!r}", permanent=True)
        if obj not in self._describes:
            body = self._call(lambda sf: sf.restful(f"sobjects/{obj}/describe"))
            if not isinstance(body, dict) or not isinstance(body.get("fields"), list):
                raise ConnectorError(f"Salesforce sent a describe answer for {obj} without fields")
            self._describes[obj] = {field["name"]: field["type"] for field in body["fields"]}
        return self._describes[obj]

    def _field(self, obj: str, name: str) -> str:
        fields = self._fields(obj)
        if name not in fields:
            raise ConnectorError(f"Salesforce {obj} has no field {name!r}", permanent=True)
        return fields[name]

    def _query(self, soql: str, limit: int) -> list[dict]:
        """The records of a SOQL query, following nextRecordsUrl until `limit` records are in."""
        result = self._call(lambda sf: sf.query(soql))
        records = _records(result)
        while not result.get("done", True) and len(records) < limit:
            next_url = result["nextRecordsUrl"]
            result = self._call(lambda sf, url=next_url: sf.query_more(url, identifier_is_url=True))
            records += _records(result)
        return [{k: v for k, v in record.items() if k != "attributes"} for record in records[:limit]]

    def test(self) -> str:
        queryable = [o for o in self._sobjects() if o.get("queryable")]
        host = urlparse(self.config.get("instance_url", "")).netloc
        return f"Connected to Salesforce at {host} (API v{self.version}): {len(queryable)} queryable objects"

    def list_objects(self) -> list[str]:
        return sorted(o["name"] for o in self._sobjects() if o.get("queryable"))

    def list_fields(self, obj: str) -> list[FieldInfo]:
        return [FieldInfo(name, type_) for name, type_ in self._fields(obj).items()]

    def read_by_key(self, obj: str, key_field: str, key: str, *, limit: int = 50) -> list[dict]:
        literal = _literal(key, self._field(obj, key_field), key_field)
        columns = ", ".join(self._fields(obj))
        return self._query(f"SELECT {columns} FROM {obj} WHERE {key_field} = {literal} LIMIT {int(limit)}", limit)

    def read_since(self, obj: str, cursor_field: str, cursor: str | None, *, limit: int = 1000) -> list[dict]:
        field_type = self._field(obj, cursor_field)
        where = f" WHERE {cursor_field} > {_literal(cursor, field_type, cursor_field)}" if cursor else ""
        columns = ", ".join(self._fields(obj))
        soql = f"SELECT {columns} FROM {obj}{where} ORDER BY {cursor_field} ASC LIMIT {int(limit)}"
        return self._query(soql, limit)

    # --- writing ------------------------------------------------------------------------------------

    def write(self, request: WriteRequest) -> str:
        target = request.target or {}
        if (target.get("object") or "Task") != "Task":
            raise ConnectorError(
                f"Salesforce write-back creates Tasks; object {target['object']!r} is not supported", permanent=True
            )
        idempotency_field = target.get("idempotency_field") or DEFAULT_IDEMPOTENCY_FIELD
        if idempotency_field not in self._fields("Task"):
            raise ConnectorError(
                f"Salesforce Task has no field {idempotency_field}: create it (text, unique, External ID) so that "
                "a retried delivery cannot create a second Task, or name another one in the destination's "
                "idempotency_field",
                permanent=True,
            )
        key = _literal(request.idempotency_key, "string", idempotency_field)
        existing = self._query(f"SELECT Id FROM Task WHERE {idempotency_field} = {key} LIMIT 1", 1)
        if existing:
            return existing[0]["Id"]
        account_id = self._account_id(request.subject_key, target.get("subject_field") or "Id")
        task = {
            "WhatId": account_id,
            "Subject": request.title[:255],
            "Description": request.text,
            "Status": "Not Started",
            idempotency_field: request.idempotency_key,
        }
        created = self._call(lambda sf: sf.Task.create(task), idempotent=False)
        if not isinstance(created, dict) or not created.get("id"):
            raise ConnectorError(f"Salesforce did not return the new Task's id: {str(created)[:200]}")
        return created["id"]

    def _account_id(self, key: str, subject_field: str) -> str:
        if subject_field == "Id":
            if not _RECORD_ID.match(key):
                raise ConnectorError(
                    f"{key!r} is not a Salesforce record id; set the destination's subject_field to the Account "
                    "field that holds the subject key (e.g. AccountNumber)",
                    permanent=True,
                )
            return key
        literal = _literal(key, self._field("Account", subject_field), subject_field)
        found = self._query(f"SELECT Id FROM Account WHERE {subject_field} = {literal} LIMIT 2", 2)
        if len(found) != 1:
            many = "Several Salesforce Accounts have" if found else "No Salesforce Account has"
            raise ConnectorError(f"{many} {subject_field} = {key!r}", permanent=True)
        return found[0]["Id"]


def _literal(value: str, field_type: str, field: str) -> str:
    """`value` as a SOQL literal of the field's type, quoted and escaped by simple-salesforce."""
    try:
        if field_type == "datetime":
            moment = dt.datetime.fromisoformat(value)
            return format_soql("{}", moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))
        if field_type == "date":
            return format_soql("{}", dt.date.fromisoformat(value[:10]))
        if field_type in _NUMBER_TYPES:
            return format_soql("{}", float(value))
        if field_type == "boolean":
            return format_soql("{}", str(value).lower() in ("true", "1"))
    except ValueError:
        raise ConnectorError(
            f"{value!r} is not a valid {field_type} for Salesforce field {field}", permanent=True
        ) from None
    return format_soql("{}", str(value))


def _records(result) -> list[dict]:
    if not isinstance(result, dict) or not isinstance(result.get("records"), list):
        raise ConnectorError(f"Salesforce sent a query answer without records: {str(result)[:200]}")
    return list(result["records"])


def _error(exc: SalesforceError) -> ConnectorError:
    """A simple-salesforce exception as a message naming Salesforce's own error code."""
    content = exc.content
    if isinstance(content, list) and all(isinstance(e, dict) for e in content):
        detail = "; ".join(f"{e.get('errorCode', '?')}: {e.get('message', '')}" for e in content)
    else:
        detail = str(content)[:200]
    if exc.status in (401, 403):
        return ConnectorError(f"Salesforce refused the request ({exc.status} {detail})", permanent=True)
    if exc.status == 404:
        return ConnectorError(f"Salesforce has no such resource ({detail})", permanent=True)
    if 400 <= exc.status < 500:
        return ConnectorError(f"Salesforce rejected the request ({exc.status} {detail})", permanent=True)
    return ConnectorError(f"Salesforce answered {exc.status}: {detail}")
