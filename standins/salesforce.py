"""Salesforce stand-in: the REST API endpoints Doorstep uses, over TLS (simple-salesforce builds https://
URLs only), seeded from the response bodies in standins/recordings/salesforce.json.

    POST /services/oauth2/token                       OAuth 2.0 client credentials → access token; its
                                                      instance_url is this server
    GET  /services/data/vNN.N/sobjects                describeGlobal
    GET  /services/data/vNN.N/sobjects/{o}/describe   sObject describe
    GET  /services/data/vNN.N/query?q=SOQL            the SOQL Doorstep sends: SELECT f, … FROM o
                                                      [WHERE f op literal [AND …]] [ORDER BY f [ASC|DESC]]
                                                      [LIMIT n]; answered in batches of `batch_size`
    GET  /services/data/vNN.N/query/{locator}         the next batch (nextRecordsUrl)
    POST /services/data/vNN.N/sobjects/{o}/           create: checks fields, references and unique fields

Every data call checks the Bearer token (else 401 INVALID_SESSION_ID). State in
standin.state["salesforce"]: `records` per object (created Tasks land in records["Task"]) and `tokens`
issued; clearing `tokens` expires every session.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
from urllib.parse import parse_qs

from .server import Request, Response, StandIn, recording

DEMO_CLIENT_ID = "3MVG9doorstep.demo.consumer.key"
DEMO_CLIENT_SECRET = "doorstep-demo-consumer-secret"

_API = r"/services/data/v(?P<version>\d+\.\d)"
_ID_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def salesforce_standin(
    *,
    client_id: str = DEMO_CLIENT_ID,
    client_secret: str = DEMO_CLIENT_SECRET,
    batch_size: int = 2000,
    **server_options,
) -> StandIn:
    data = recording("salesforce")
    errors = data["errors"]
    standin = StandIn(
        ROUTES,
        tls=True,
        fault_bodies={
            "auth": errors["invalid_session"],
            "ratelimit": errors["request_limit"],
            "unavailable": errors["server_unavailable"],
        },
        **server_options,
    )
    standin.state["salesforce"] = {
        "client_id": client_id,
        "client_secret": client_secret,
        "batch_size": batch_size,
        "tokens": set(),
        "records": data["records"],
        "describe_global": data["describe_global"],
        "describe": data["describe"],
        "token": data["token"],
        "errors": errors,
        "cursors": {},
        "serial": 0,
        "lock": threading.Lock(),
    }
    return standin


def record_id(prefix: str, number: int) -> str:
    """An 18-character record id: 15 case-sensitive characters and the 3-character case checksum."""
    base = f"{prefix}5g0000{number:06d}"
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, char in enumerate(base[start : start + 5]) if "A" <= char <= "Z")
        suffix += _ID_CHECKSUM[bits]
    return base + suffix


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _error(status: int, code: str, message: str, fields: list | None = None) -> Response:
    body = {"message": message, "errorCode": code}
    if fields is not None:
        body["fields"] = fields
    return Response(status, [body])


def _authorized(handler):
    def checked(standin: StandIn, request: Request) -> Response:
        org = standin.state["salesforce"]
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or header.removeprefix("Bearer ") not in org["tokens"]:
            return Response(401, org["errors"]["invalid_session"])
        return handler(org, request)

    return checked


def token(standin: StandIn, request: Request) -> Response:
    org = standin.state["salesforce"]
    form = {key: values[-1] for key, values in parse_qs(request.body.decode()).items()}
    if form.get("grant_type") != "client_credentials":
        return Response(400, org["errors"]["unsupported_grant_type"])
    if (form.get("client_id"), form.get("client_secret")) != (org["client_id"], org["client_secret"]):
        return Response(400, org["errors"]["invalid_client"])
    access_token = "00D5g000004Ez3Q!" + secrets.token_urlsafe(48)
    with org["lock"]:
        org["tokens"].add(access_token)
    issued_at = str(int(dt.datetime.now(dt.UTC).timestamp() * 1000))
    return Response(
        200, {**org["token"], "access_token": access_token, "instance_url": standin.url, "issued_at": issued_at}
    )


@_authorized
def describe_global(org: dict, request: Request) -> Response:
    return Response(200, org["describe_global"])


@_authorized
def describe(org: dict, request: Request) -> Response:
    found = org["describe"].get(request.params["object"])
    return Response(200, found) if found else Response(404, org["errors"]["not_found"])


# --- SOQL -------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<datetime>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d))
    | (?P<date>\d{4}-\d\d-\d\d)
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<comma>,)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_TYPES = {"datetime": "dateTime", "date": "date", "int": "number", "double": "number", "currency": "number"}
_TYPES |= {"percent": "number", "boolean": "boolean"}


class SoqlError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _tokens(soql: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while soql[position:].strip():
        match = _TOKEN.match(soql, position)
        if not match:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{soql[position:].strip()[:20]}'")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        position = match.end()
    return tokens


def _literal(kind: str, text: str):
    if kind == "string":
        return re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), text[1:-1])
    if kind == "datetime":
        return dt.datetime.fromisoformat(text)
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "number":
        return float(text)
    if kind == "word" and text.lower() in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[text.lower()]
    raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text}'")


def parse_soql(soql: str) -> dict:
    tokens = _tokens(soql)
    position = 0

    def take(kind: str | None = None, word: str | None = None) -> str:
        nonlocal position
        if position >= len(tokens):
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        found_kind, text = tokens[position]
        if (kind and found_kind != kind) or (word and text.upper() != word):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text}'")
        position += 1
        return text

    def peek(word: str) -> bool:
        return position < len(tokens) and tokens[position][1].upper() == word

    take("word", "SELECT")
    fields = [take("word")]
    while position < len(tokens) and tokens[position][0] == "comma":
        position += 1
        fields.append(take("word"))
    take("word", "FROM")
    query = {"fields": fields, "object": take("word"), "where": [], "order": None, "limit": None}
    if peek("WHERE"):
        position += 1
        while True:
            field, op = take("word"), take("op")
            kind, text = tokens[position] if position < len(tokens) else ("", "")
            position += 1
            query["where"].append((field, op, kind, _literal(kind, text)))
            if not peek("AND"):
                break
            position += 1
    if peek("ORDER"):
        position += 1
        take("word", "BY")
        field, descending = take("word"), False
        if peek("ASC") or peek("DESC"):
            descending = take("word").upper() == "DESC"
        query["order"] = (field, descending)
    if peek("LIMIT"):
        position += 1
        query["limit"] = int(float(take("number")))
    if position != len(tokens):
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tokens[position][1]}'")
    return query


def _typed(value, field_type: str):
    """A record's value as the type SOQL compares it as."""
    if value is None:
        return None
    if field_type == "datetime":
        return dt.datetime.fromisoformat(value)
    if field_type == "date":
        return dt.date.fromisoformat(value)
    if _TYPES.get(field_type) == "number":
        return float(value)
    if field_type == "boolean":
        return bool(value)
    return str(value).lower()  # string comparisons in SOQL ignore case


def _matches(value, op: str, literal) -> bool:
    if op == "=":
        return value == literal
    if op in ("!=", "<>"):
        return value != literal
    if value is None or literal is None:
        return False
    return {"<": value < literal, "<=": value <= literal, ">": value > literal, ">=": value >= literal}[op]


def _run(org: dict, soql: str) -> list[dict]:
    query = parse_soql(soql)
    name = query["object"]
    described = org["describe"].get(name)
    if described is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to "
            "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
            "appropriate names.",
        )
    types = {field["name"].lower(): (field["name"], field["type"]) for field in described["fields"]}

    def column(field: str) -> tuple[str, str]:
        if field.lower() not in types:
            raise SoqlError(
                "INVALID_FIELD",
                f"No such column '{field}' on entity '{name}'. If you are attempting to use a custom field, be "
                "sure to append the '__c' after the custom field name. Please reference your WSDL or the "
                "describe call for the appropriate names.",
            )
        return types[field.lower()]

    selected = [column(field)[0] for field in query["fields"]]
    conditions = []
    for field, op, kind, literal in query["where"]:
        canonical, field_type = column(field)
        expected = _TYPES.get(field_type, "string")
        given = {"string": "string", "datetime": "dateTime", "date": "date", "number": "number"}.get(kind)
        if literal is not None and kind != "word" and given != expected:
            quoted = "" if expected == "string" else " and should not be enclosed in quotes"
            raise SoqlError(
                "INVALID_FIELD", f"value of filter criterion for field '{canonical}' must be of type {expected}{quoted}"
            )
        if isinstance(literal, str):
            literal = literal.lower()
        conditions.append((canonical, field_type, op, literal))
    rows = [
        record
        for record in org["records"].get(name, [])
        if all(_matches(_typed(record.get(f), t), op, literal) for f, t, op, literal in conditions)
    ]
    if query["order"]:
        (canonical, field_type), descending = column(query["order"][0]), query["order"][1]
        present = [r for r in rows if r.get(canonical) is not None]
        present.sort(key=lambda r: _typed(r[canonical], field_type), reverse=descending)
        absent = [r for r in rows if r.get(canonical) is None]
        rows = present + absent if descending else absent + present  # NULLS FIRST ascending, LAST descending
    if query["limit"] is not None:
        rows = rows[: query["limit"]]
    return [{"attributes": record["attributes"], **{f: record.get(f) for f in selected}} for record in rows]


def _batch(org: dict, version: str, rows: list[dict], total: int) -> Response:
    size = org["batch_size"]
    body = {"totalSize": total, "done": len(rows) <= size, "records": rows[:size]}
    if len(rows) > size:
        with org["lock"]:
            org["serial"] += 1
            locator = f"01g5g00000{org['serial']:05d}-{total - len(rows) + size}"
            org["cursors"][locator] = (rows[size:], total)
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}"
    return Response(200, body)


@_authorized
def query(org: dict, request: Request) -> Response:
    try:
        rows = _run(org, request.query.get("q", ""))
    except SoqlError as exc:
        return _error(400, exc.code, str(exc))
    return _batch(org, request.params["version"], rows, len(rows))


@_authorized
def query_more(org: dict, request: Request) -> Response:
    with org["lock"]:
        found = org["cursors"].pop(request.params["locator"], None)
    if found is None:
        return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    rows, total = found
    return _batch(org, request.params["version"], rows, total)


@_authorized
def create(org: dict, request: Request) -> Response:
    name = request.params["object"]
    described = org["describe"].get(name)
    if described is None:
        return Response(404, org["errors"]["not_found"])
    fields = {field["name"]: field for field in described["fields"]}
    values = request.json
    if not isinstance(values, dict):
        return _error(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of " + name + " from the request body")
    for field, value in values.items():
        if field not in fields or not fields[field]["createable"]:
            return _error(400, "INVALID_FIELD", f"No such column '{field}' on sobject of type {name}", [])
        described_field = fields[field]
        if described_field["type"] == "reference" and value is not None:
            targets = described_field["referenceTo"]
            if not any(r["Id"] == value for target in targets for r in org["records"].get(target, [])):
                return _error(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"{described_field['label']}: id value of incorrect type: {value}",
                    [field],
                )
    now = _timestamp(dt.datetime.now(dt.UTC))
    with org["lock"]:
        existing = org["records"].setdefault(name, [])
        for field, value in values.items():
            if fields[field]["unique"] and value is not None:
                duplicate = next((r for r in existing if r.get(field) == value), None)
                if duplicate:
                    return _error(
                        400,
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {field} duplicates value on record with id: {duplicate['Id']}",
                        [],
                    )
        org["serial"] += 1
        new_id = record_id(described["keyPrefix"], org["serial"])
        record = dict.fromkeys(fields)
        if name == "Task":
            record |= {"Status": "Not Started", "Priority": "Normal"}
        record |= values
        record |= {
            "attributes": {
                "type": name,
                "url": f"/services/data/v{request.params['version']}/sobjects/{name}/{new_id}",
            },
            "Id": new_id,
            "IsDeleted": False,
            "OwnerId": record_id("005", 1),
            "CreatedDate": now,
            "LastModifiedDate": now,
            "SystemModstamp": now,
        }
        existing.append(record)
    return Response(201, {"id": new_id, "success": True, "errors": []})


ROUTES = [
    ("POST", r"/services/oauth2/token", token),
    ("GET", _API + r"/sobjects/?", describe_global),
    ("GET", _API + r"/sobjects/(?P<object>\w+)/describe/?", describe),
    ("GET", _API + r"/query/?", query),
    ("GET", _API + r"/query/(?P<locator>[\w-]+)", query_more),
    ("POST", _API + r"/sobjects/(?P<object>\w+)/?", create),
]
