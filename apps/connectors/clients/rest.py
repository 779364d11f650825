"""Generic REST: an internal portal or any JSON API, configured instead of coded.

Settings (apps/connectors/kinds.py "rest"): base_url; auth_type none / bearer (token) / basic (username,
password) / header (auth_header: api_key); read_path with {key} for one subject; list_path with {cursor}
for incremental reads; records_path, a JSON path to the records in an answer (a list, or one object);
field_map {"our_field": "$.their.json.path"}; write_path with {key}, write_method and write_id_path for
write-back. JSON paths are jsonpath-ng (extended syntax). Placeholders are filled URL-encoded, so a key
cannot reach another path.

The connector has one object, named after its path (e.g. "customers"). Incremental reads ask the list path
again from the newest cursor value seen until a page brings nothing newer. Write-back sends
{subject, title, text, idempotency_key} with an Idempotency-Key header (the remote must honour it for a
retried delivery to be written once) and returns the value at write_id_path (the idempotency key when no
path is set).

validate_config(config) returns the problems of a configuration as messages naming the setting, for the
connector form; the client raises the same messages (permanent) when used with a bad configuration.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urlparse

import requests
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext import parse as parse_jsonpath

from apps.connectors.kinds import KINDS

from . import http
from .base import Client, FieldInfo, WriteRequest
from .errors import ConnectorError

MAX_PAGES = 100  # an API that ignores the cursor must not keep us reading forever
_LABELS = {setting.name: setting.label for setting in KINDS["rest"]["config"]}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def _jsonpath(value: str):
    try:
        return parse_jsonpath(value)
    except (JSONPathError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{value!r} is not a valid JSON path ({exc})") from exc


def _field_map(config: dict) -> dict:
    raw = config.get("field_map") or {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in raw.items()):
        raise ValueError('expected {"our_field": "$.their.json.path", …}')
    return raw


def validate_config(config: dict) -> list[str]:
    """What is wrong with a REST connector's settings, one message per problem, each naming the setting."""
    problems: list[str] = []

    def problem(name: str, message: str) -> None:
        problems.append(f"{_LABELS[name]}: {message}")

    base_url = config.get("base_url") or ""
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        problem("base_url", f"{base_url!r} is not an http(s) URL")
    auth_type = config.get("auth_type") or "none"
    if auth_type not in ("none", "bearer", "basic", "header"):
        problem("auth_type", f"{auth_type!r} is not one of none, bearer, basic, header")
    if auth_type == "header" and not _HEADER_NAME.match(config.get("auth_header") or ""):
        problem("auth_header", "header-key authentication needs a header name, e.g. X-Api-Key")
    for name, placeholder, required in (
        ("read_path", "key", True),
        ("list_path", "cursor", True),
        ("write_path", "key", False),
    ):
        path = config.get(name) or ""
        if not path:
            continue
        if not path.startswith("/"):
            problem(name, f"{path!r} must start with / (it is appended to the base URL)")
        found = set(_PLACEHOLDER.findall(path))
        if found - {placeholder}:
            problem(name, f"only {{{placeholder}}} may be filled in, not {', '.join(sorted(found - {placeholder}))}")
        elif required and placeholder not in found:
            problem(name, f"must contain {{{placeholder}}}")
    for name in ("records_path", "write_id_path"):
        if config.get(name):
            try:
                _jsonpath(config[name])
            except ValueError as exc:
                problem(name, str(exc))
    try:
        for ours, theirs in _field_map(config).items():
            try:
                _jsonpath(theirs)
            except ValueError as exc:
                problem("field_map", f"{ours}: {exc}")
    except ValueError as exc:
        problem("field_map", str(exc))
    method = config.get("write_method") or "POST"
    if method not in ("POST", "PUT", "PATCH"):
        problem("write_method", f"{method!r} is not one of POST, PUT, PATCH")
    return problems


class RestClient(Client):
    system = "The REST API"

    def __init__(self, connector):
        super().__init__(connector)
        self.timeout: float | tuple[float, float] = http.DEFAULT_TIMEOUT
        self._http: requests.Session | None = None
        self._checked = False

    # --- configuration --------------------------------------------------------------------------------

    def _check(self) -> None:
        if not self._checked:
            problems = validate_config(self.config)
            if problems:
                raise ConnectorError("; ".join(problems), permanent=True)
            self._checked = True

    def _auth(self) -> tuple[dict, tuple[str, str] | None]:
        auth_type = self.config.get("auth_type") or "none"
        need = {"bearer": ("token",), "basic": ("username", "password"), "header": ("api_key",)}.get(auth_type, ())
        missing = [name for name in need if not self.secrets.get(name)]
        if missing:
            raise ConnectorError(f"{auth_type} authentication needs the {' and '.join(missing)}", permanent=True)
        if auth_type == "bearer":
            return {"Authorization": f"Bearer {self.secrets['token']}"}, None
        if auth_type == "basic":
            return {}, (self.secrets["username"], self.secrets["password"])
        if auth_type == "header":
            return {self.config["auth_header"]: self.secrets["api_key"]}, None
        return {}, None

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        self._check()
        headers, auth = self._auth()
        if self._http is None:
            self._http = http.session(timeout=self.timeout)
        return http.request(
            self._http,
            method,
            self.config["base_url"].rstrip("/") + path,
            system=self.system,
            timeout=self.timeout,
            headers={"Accept": "application/json", **headers, **kwargs.pop("headers", {})},
            auth=auth,
            **kwargs,
        )

    def _records(self, body) -> list[dict]:
        """The records of an answer (at records_path, when set), mapped through field_map."""
        if self.config.get("records_path"):
            found = [match.value for match in _jsonpath(self.config["records_path"]).find(body)]
            if len(found) == 1 and isinstance(found[0], list):
                found = found[0]
        else:
            found = body if isinstance(body, list) else [body]
        if not all(isinstance(record, dict) for record in found):
            where = self.config.get("records_path") or "the answer"
            raise ConnectorError(f"The REST API's records at {where} are not JSON objects: {str(found)[:200]}")
        mapping = {ours: _jsonpath(theirs) for ours, theirs in _field_map(self.config).items()}
        if not mapping:
            return found
        return [{ours: _first(path, record) for ours, path in mapping.items()} for record in found]

    def _get_records(self, path: str, *, missing_is_empty: bool = False) -> list[dict]:
        response = self._call("GET", path, allow_statuses=(404,) if missing_is_empty else ())
        if response.status_code == 404:
            return []
        return self._records(http.json_body(response, system=self.system))

    def _list_path(self, cursor: str | None) -> str:
        path = self.config.get("list_path")
        if not path:
            raise ConnectorError("The REST connector has no list path: it cannot read incrementally", permanent=True)
        return path.replace("{cursor}", quote(cursor or "", safe=""))

    # --- the client interface ------------------------------------------------------------------------

    def test(self) -> str:
        base = self.config.get("base_url", "")
        if self.config.get("list_path"):
            records = self._get_records(self._list_path(None))
            return f"Connected to {base}: the list path answered {len(records)} records"
        response = self._call("GET", "")
        return f"Connected to {base} ({response.status_code})"

    def list_objects(self) -> list[str]:
        """One object, named after the resource its paths read (/customers/{key} → customers)."""
        path = self.config.get("list_path") or self.config.get("read_path") or ""
        segments = [s for s in urlparse(path).path.split("/") if s and not _PLACEHOLDER.search(s)]
        return [segments[-1] if segments else "records"]

    def list_fields(self, obj: str) -> list[FieldInfo]:
        mapping = _field_map(self.config)
        if mapping:
            return [FieldInfo(name) for name in mapping]
        sample = self._get_records(self._list_path(None))
        return [FieldInfo(name) for name in (sample[0] if sample else {})]

    def read_by_key(self, obj: str, key_field: str, key: str, *, limit: int = 50) -> list[dict]:
        path = self.config.get("read_path")
        if not path:
            raise ConnectorError("The REST connector has no read path: it cannot read one subject", permanent=True)
        records = self._get_records(path.replace("{key}", quote(key, safe="")), missing_is_empty=True)
        # The path picked the subject; a record that names another one is not theirs.
        return [r for r in records if key_field not in r or str(r[key_field]) == key][:limit]

    def read_since(self, obj: str, cursor_field: str, cursor: str | None, *, limit: int = 1000) -> list[dict]:
        records: list[dict] = []
        for _ in range(MAX_PAGES):
            page = [r for r in self._get_records(self._list_path(cursor)) if _after(r.get(cursor_field), cursor)]
            if not page:
                break
            records += page
            cursor = str(max((r[cursor_field] for r in page), key=_order))
            if len(records) >= limit:
                break
        records.sort(key=lambda r: _order(r[cursor_field]))
        return records[:limit]

    def write(self, request: WriteRequest) -> str:
        path = self.config.get("write_path")
        if not path:
            raise ConnectorError("The REST connector has no write path: it cannot write back", permanent=True)
        response = self._call(
            self.config.get("write_method") or "POST",
            path.replace("{key}", quote(request.subject_key, safe="")),
            json={
                "subject": request.subject_key,
                "title": request.title,
                "text": request.text,
                "idempotency_key": request.idempotency_key,
            },
            headers={"Idempotency-Key": request.idempotency_key},
            attempts=1,  # a retried delivery sends the same key again; never resend blindly here
        )
        if not self.config.get("write_id_path"):
            return request.idempotency_key
        created = _first(_jsonpath(self.config["write_id_path"]), http.json_body(response, system=self.system))
        if created in (None, ""):
            raise ConnectorError(
                f"The REST API's answer has nothing at {self.config['write_id_path']}: {response.text[:200]}",
                permanent=True,
            )
        return str(created)


def _first(path, data):
    found = path.find(data)
    return found[0].value if found else None


def _order(value):
    """Numbers by value, anything else as text (ISO timestamps sort right as text)."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _after(value, cursor: str | None) -> bool:
    if value is None:
        return False
    return cursor is None or cursor == "" or _order(value) > _order(cursor)
