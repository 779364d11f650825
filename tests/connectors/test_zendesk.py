"""The Zendesk client (Support API v2 on the guarded session) against the Zendesk stand-in."""

import base64
import datetime as dt
import time

import pytest

from apps.connectors.clients import http
from apps.connectors.clients.base import FieldInfo, WriteRequest
from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.registry import client_for
from apps.connectors.clients.zendesk import ZendeskClient
from apps.connectors.models import Connector
from standins.zendesk import DEMO_API_TOKEN, DEMO_EMAIL, zendesk_standin


@pytest.fixture
def desk():
    with zendesk_standin() as standin:
        yield standin


@pytest.fixture
def allow_loopback(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]


def make_client(desk, *, api_token=DEMO_API_TOKEN) -> ZendeskClient:
    connector = Connector(name="Zendesk", kind="zendesk", config={"base_url": desk.url})
    connector.set_secrets({"email": DEMO_EMAIL, "api_token": api_token})
    client = client_for(connector)
    client.timeout = 0.5
    return client


@pytest.fixture
def client(desk, allow_loopback):
    return make_client(desk)


def comments(desk, ticket_id):
    audits = desk.state["zendesk"]["audits"].get(ticket_id, [])
    return [event for audit in audits for event in audit["events"] if event["type"] == "Comment"]


def comment_request(key="dlv-9", subject="TCK-0001"):
    return WriteRequest(
        idempotency_key=key,
        subject_key=subject,
        title="Suggested reply",
        text="We have refunded the duplicate charge.",
        target={"table": "", "subject_field": "external_id"},
    )


def test_connection_test_names_the_agent(client, desk):
    assert isinstance(client, ZendeskClient)
    assert client.test() == "Connected to Zendesk as Dana Agent <dana.agent@northwind.example> (agent)"
    expected = base64.b64encode(f"{DEMO_EMAIL}/token:{DEMO_API_TOKEN}".encode()).decode()
    assert desk.requests[0].headers["authorization"] == f"Basic {expected}"


def test_lists_tickets_and_their_fields(client):
    assert client.list_objects() == ["tickets"]
    fields = client.list_fields("tickets")
    assert FieldInfo("subject", "subject") in fields and FieldInfo("type", "tickettype") in fields
    assert FieldInfo("custom_field_360012345679", "text") in fields and FieldInfo("updated_at", "datetime") in fields
    with pytest.raises(ConnectorError, match="Zendesk connectors read tickets, not 'users'"):
        client.list_fields("users")


def test_reads_a_ticket_by_id_external_id_and_search(client, desk):
    (by_id,) = client.read_by_key("tickets", "id", "2")
    assert by_id["external_id"] == "TCK-0002" and by_id["custom_field_360012345679"] == "ACC-0002"
    assert "custom_fields" not in by_id

    (by_external_id,) = client.read_by_key("tickets", "external_id", "TCK-0003")
    assert by_external_id["id"] == 3
    assert desk.requests[-1].query == {"external_id": "TCK-0003"}

    (urgent,) = client.read_by_key("tickets", "priority", "urgent")
    assert urgent["id"] == 5
    assert desk.requests[-1].query["query"] == 'type:ticket priority:"urgent"'

    assert client.read_by_key("tickets", "id", "99") == []  # Zendesk's 404
    assert client.read_by_key("tickets", "id", "TCK-0001") == []
    with pytest.raises(ConnectorError, match="Zendesk search cannot look for") as caught:
        client.read_by_key("tickets", "subject", 'say "hi"')
    assert caught.value.permanent


def test_read_since_follows_the_incremental_export_cursor(client, desk, monkeypatch):
    monkeypatch.setattr("apps.connectors.clients.zendesk.INCREMENTAL_PAGE", 2)
    every = client.read_since("tickets", "updated_at", None)
    assert [t["external_id"] for t in every] == ["TCK-0001", "TCK-0002", "TCK-0003", "TCK-0004", "TCK-0005"]
    exports = [r.query for r in desk.requests if r.path == "/api/v2/incremental/tickets/cursor.json"]
    assert exports[0] == {"start_time": "0", "per_page": "2"}
    assert len(exports) == 3 and all("cursor" in q for q in exports[1:])

    newer = client.read_since("tickets", "updated_at", every[2]["updated_at"])
    assert [t["external_id"] for t in newer] == ["TCK-0004", "TCK-0005"]
    since = dt.datetime.fromisoformat(every[2]["updated_at"]).timestamp()
    # start_time is inclusive: the export starts at the cursor's second and the client keeps what is newer.
    assert [r.query.get("start_time") for r in desk.requests[-2:]] == [str(int(since)), None]
    with pytest.raises(ConnectorError, match="by updated_at only"):
        client.read_since("tickets", "created_at", None)


def test_write_adds_one_internal_comment_even_when_retried(client, desk):
    request = comment_request()
    audit_id = client.write(request)
    assert client.write(request) == audit_id
    (comment,) = comments(desk, 1)
    assert comment["public"] is False
    assert comment["body"] == "Suggested reply\n\nWe have refunded the duplicate charge."
    (audit,) = desk.state["zendesk"]["audits"][1]
    assert str(audit["id"]) == audit_id and audit["metadata"]["custom"] == {"doorstep_delivery_id": "dlv-9"}
    (update,) = [r for r in desk.requests if r.method == "PUT"]
    assert update.path == "/api/v2/tickets/1.json" and update.headers["idempotency-key"] == "dlv-9"


def test_a_write_whose_answer_was_lost_is_not_written_twice(client, desk):
    desk.fail_next("slow", seconds=1.0, method="PUT", path=r"/api/v2/tickets/\d+\.json")
    with pytest.raises(ConnectorError, match="Zendesk did not answer within 0.5s"):
        client.write(comment_request())
    assert sum(r.method == "PUT" for r in desk.requests) == 1  # a comment is never resent blindly
    time.sleep(0.6)  # the stand-in finishes the slow update
    assert len(comments(desk, 1)) == 1
    audit_id = client.write(comment_request())  # the retried delivery finds its audit
    assert audit_id == str(desk.state["zendesk"]["audits"][1][0]["id"])
    assert len(comments(desk, 1)) == 1 and sum(r.method == "PUT" for r in desk.requests) == 1


def test_the_stand_in_honours_the_idempotency_key(desk, allow_loopback):
    session = http.session()
    session.auth = (f"{DEMO_EMAIL}/token", DEMO_API_TOKEN)
    update = {"ticket": {"comment": {"body": "Once", "public": False}}}
    url, headers = f"{desk.url}/api/v2/tickets/2.json", {"Idempotency-Key": "dlv-77"}
    first = http.request(session, "PUT", url, system="Zendesk", json=update, headers=headers)
    again = http.request(session, "PUT", url, system="Zendesk", json=update, headers=headers)
    assert (first.headers["x-idempotency-lookup"], again.headers["x-idempotency-lookup"]) == ("miss", "hit")
    assert first.json()["audit"]["id"] == again.json()["audit"]["id"]
    assert len(comments(desk, 2)) == 1


def test_write_errors_are_clear(client, desk):
    with pytest.raises(ConnectorError, match="No Zendesk ticket has external_id = 'TCK-0999'") as caught:
        client.write(comment_request(subject="TCK-0999"))
    assert caught.value.permanent
    with pytest.raises(ConnectorError, match="finds the ticket by id or external_id, not 'subject'"):
        client.write(WriteRequest("dlv-1", "x", "t", "x", {"subject_field": "subject"}))
    assert not any(r.method == "PUT" for r in desk.requests)


def test_wrong_token_is_a_clear_permanent_error(desk, allow_loopback):
    with pytest.raises(ConnectorError) as caught:
        make_client(desk, api_token="wrong").test()
    assert str(caught.value) == 'Zendesk refused the credentials (401): {"error": "Couldn\'t authenticate you"}'
    assert caught.value.permanent


def test_timeout(client, desk):
    desk.fail_next("slow", times=2, seconds=1.0)
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="Zendesk did not answer within 0.5s") as caught:
        client.read_by_key("tickets", "id", "1")
    assert not caught.value.permanent
    assert time.monotonic() - started < 1.5


def test_malformed_response(client, desk):
    desk.fail_next("malformed")
    with pytest.raises(ConnectorError, match=r"Zendesk sent a malformed response \(expected JSON, got text/html\)"):
        client.list_fields("tickets")


def test_short_retry_after_is_waited_out(client, desk):
    desk.fail_next("ratelimit", retry_after=1)
    started = time.monotonic()
    assert len(client.read_by_key("tickets", "external_id", "TCK-0001")) == 1
    assert 0.9 < time.monotonic() - started < 2


def test_long_retry_after_is_handed_back(client, desk):
    desk.fail_next("ratelimit", retry_after=90)
    with pytest.raises(http.RateLimited) as caught:
        client.test()
    assert caught.value.retry_after == 90


def test_loopback_is_refused_unless_allow_listed(desk, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    with pytest.raises(http.BlockedAddress):
        make_client(desk).test()
    assert desk.requests == []
