"""The generic REST client (paths, auth, JSON path mapping) against the REST portal stand-in."""

import base64
import time

import pytest

from apps.connectors.clients.base import FieldInfo, WriteRequest
from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.http import BlockedAddress, RateLimited
from apps.connectors.clients.registry import client_for
from apps.connectors.clients.rest import RestClient, validate_config
from apps.connectors.models import Connector
from standins.rest import DEMO_TOKEN, rest_standin

FIELD_MAP = {
    "account_id": "$.id",
    "name": "$.name",
    "health_score": "$.health.score",
    "updated_at": "$.updated",
}


def portal_config(portal, **overrides) -> dict:
    return {
        "base_url": f"{portal.url}/portal",
        "auth_type": "bearer",
        "read_path": "/customers/{key}",
        "list_path": "/customers?updated_since={cursor}",
        "records_path": "$.data",
        "field_map": FIELD_MAP,
        "write_path": "/customers/{key}/notes",
        "write_method": "POST",
        "write_id_path": "$.note.id",
        **overrides,
    }


@pytest.fixture
def portal():
    with rest_standin(page_size=2) as standin:
        yield standin


@pytest.fixture
def allow_loopback(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]


def make_client(portal, secrets=None, **config) -> RestClient:
    connector = Connector(name="Portal", kind="rest", config=portal_config(portal, **config))
    connector.set_secrets({"token": DEMO_TOKEN} if secrets is None else secrets)
    client = client_for(connector)
    client.timeout = 0.5
    return client


@pytest.fixture
def client(portal, allow_loopback):
    return make_client(portal)


def note_request(key="dlv-5", subject="ACC-0004"):
    return WriteRequest(idempotency_key=key, subject_key=subject, title="Churn risk", text="Call them.", target={})


def test_connection_test_reads_the_list_path(client, portal):
    assert isinstance(client, RestClient)
    assert client.test() == f"Connected to {portal.url}/portal: the list path answered 2 records"
    assert portal.requests[0].path == "/portal/customers" and portal.requests[0].query == {}
    assert portal.requests[0].headers["authorization"] == f"Bearer {DEMO_TOKEN}"


def test_connection_test_without_a_list_path_reads_the_base_url(portal, allow_loopback):
    assert make_client(portal, list_path="").test() == f"Connected to {portal.url}/portal (200)"
    assert portal.requests[-1].path == "/portal"


def test_objects_and_fields_come_from_the_configuration(client, portal, allow_loopback):
    assert client.list_objects() == ["customers"]
    assert client.list_fields("customers") == [FieldInfo(name) for name in FIELD_MAP]
    assert portal.requests == []
    unmapped = make_client(portal, field_map={})
    assert [f.name for f in unmapped.list_fields("customers")] == ["id", "name", "health", "owner", "updated"]


def test_reads_one_subject_through_the_field_map(client, portal):
    (record,) = client.read_by_key("customers", "account_id", "ACC-0002")
    assert record == {
        "account_id": "ACC-0002",
        "name": "Birch Health",
        "health_score": 77,
        "updated_at": "2024-05-02T09:22:05Z",
    }
    assert client.read_by_key("customers", "account_id", "ACC-0999") == []  # the portal's 404
    assert client.read_by_key("customers", "account_id", "../admin") == []
    assert portal.requests[-1].path == "/portal/customers/..%2Fadmin"  # a key stays one path segment


def test_read_since_pages_by_cursor(client, portal):
    every = client.read_since("customers", "updated_at", None)
    assert [r["account_id"] for r in every] == ["ACC-0001", "ACC-0002", "ACC-0003", "ACC-0004", "ACC-0005"]
    cursors = [r.query.get("updated_since", "") for r in portal.requests]
    assert cursors == ["", "2024-05-02T09:22:05Z", "2024-05-02T11:45:59Z", "2024-05-02T13:30:00Z"]
    newer = client.read_since("customers", "updated_at", "2024-05-02T10:03:17Z")
    assert [r["account_id"] for r in newer] == ["ACC-0004", "ACC-0005"]
    assert len(client.read_since("customers", "updated_at", None, limit=3)) == 3


def test_write_posts_once_per_idempotency_key(client, portal):
    request = note_request()
    assert client.write(request) == "note-1"
    assert client.write(request) == "note-1"
    (note,) = portal.state["rest"]["notes"]
    assert (note["customer_id"], note["title"], note["text"]) == ("ACC-0004", "Churn risk", "Call them.")
    posts = [r for r in portal.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/portal/customers/ACC-0004/notes"] * 2
    assert posts[0].headers["idempotency-key"] == "dlv-5"
    assert posts[0].json == {
        "subject": "ACC-0004",
        "title": "Churn risk",
        "text": "Call them.",
        "idempotency_key": "dlv-5",
    }


def test_write_without_an_id_path_returns_the_idempotency_key(portal, allow_loopback):
    assert make_client(portal, write_id_path="").write(note_request()) == "dlv-5"
    with pytest.raises(ConnectorError, match=r"nothing at \$\.id") as caught:
        make_client(portal, write_id_path="$.id").write(note_request(key="dlv-6"))
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("auth", "config", "secrets", "expected_header"),
    [
        ("basic", {"auth_type": "basic"}, {"username": "doorstep", "password": "portal-pass"}, "authorization"),
        ("header", {"auth_type": "header", "auth_header": "X-Api-Key"}, {"api_key": "portal-key-93d1"}, "x-api-key"),
    ],
)
def test_basic_and_header_key_authentication(auth, config, secrets, expected_header, allow_loopback):
    with rest_standin(auth=auth) as portal:
        assert make_client(portal, secrets, **config).read_by_key("customers", "account_id", "ACC-0001")
        sent = portal.requests[-1].headers[expected_header]
        if auth == "basic":
            assert sent == "Basic " + base64.b64encode(b"doorstep:portal-pass").decode()


def test_wrong_or_missing_credentials_are_clear_permanent_errors(portal, allow_loopback):
    with pytest.raises(ConnectorError, match=r"The REST API refused the credentials \(401\).*unauthorized") as e:
        make_client(portal, {"token": "wrong"}).test()
    assert e.value.permanent
    with pytest.raises(ConnectorError, match="bearer authentication needs the token") as e:
        make_client(portal, {}).test()
    assert e.value.permanent


def test_validate_config_names_each_bad_setting(portal):
    assert validate_config(portal_config(portal)) == []
    problems = validate_config(
        portal_config(
            portal,
            base_url="ftp://portal",
            auth_type="header",
            read_path="customers",
            list_path="/customers?since={key}",
            records_path="$.[",
            field_map={"score": "$..x("},
            write_method="DELETE",
        )
    )
    assert problems == [
        "Base URL: 'ftp://portal' is not an http(s) URL",
        "Key header name: header-key authentication needs a header name, e.g. X-Api-Key",
        "Read path: 'customers' must start with / (it is appended to the base URL)",
        "Read path: must contain {key}",
        "List path: only {cursor} may be filled in, not key",
        "Records JSON path: '$.[' is not a valid JSON path (Parse error near the end of string!)",
        "Field mapping: score: '$..x(' is not a valid JSON path (Parse error at 1:4 near token ( (())",
        "Write method: 'DELETE' is not one of POST, PUT, PATCH",
    ]
    assert validate_config(portal_config(portal, field_map="{not json")) == [
        "Field mapping: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    ]


def test_a_bad_configuration_fails_before_any_request(portal, allow_loopback):
    with pytest.raises(ConnectorError, match=r"Records JSON path: '\$\.\[' is not a valid JSON path") as caught:
        make_client(portal, records_path="$.[").read_by_key("customers", "account_id", "ACC-0001")
    assert caught.value.permanent
    assert portal.requests == []


def test_timeout(client, portal):
    portal.fail_next("slow", times=2, seconds=1.0)
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="The REST API did not answer within 0.5s") as caught:
        client.read_by_key("customers", "account_id", "ACC-0001")
    assert not caught.value.permanent
    assert time.monotonic() - started < 1.5


def test_malformed_response(client, portal):
    portal.fail_next("malformed")
    with pytest.raises(ConnectorError, match=r"REST API sent a malformed response \(expected JSON, got text/html\)"):
        client.read_since("customers", "updated_at", None)


def test_short_retry_after_is_waited_out(client, portal):
    portal.fail_next("ratelimit", retry_after=1)
    started = time.monotonic()
    assert client.read_by_key("customers", "account_id", "ACC-0001")
    assert 0.9 < time.monotonic() - started < 2


def test_long_retry_after_is_handed_back(client, portal):
    portal.fail_next("ratelimit", retry_after=300)
    with pytest.raises(RateLimited) as caught:
        client.write(note_request())
    assert caught.value.retry_after == 300
    assert portal.state["rest"]["notes"] == []


def test_loopback_is_refused_unless_allow_listed(portal, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    with pytest.raises(BlockedAddress):
        make_client(portal).test()
    assert portal.requests == []
