"""The Salesforce client (simple-salesforce on the guarded session) against the TLS Salesforce stand-in."""

import time
from urllib.parse import parse_qs

import pytest

from apps.connectors.clients.base import FieldInfo, WriteRequest
from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.http import BlockedAddress, RateLimited
from apps.connectors.clients.registry import client_for
from apps.connectors.clients.salesforce import SalesforceClient
from apps.connectors.models import Connector
from standins.salesforce import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, salesforce_standin


@pytest.fixture
def crm():
    with salesforce_standin(batch_size=2) as standin:
        yield standin


@pytest.fixture
def allow_loopback(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]


def make_client(crm, *, client_secret=DEMO_CLIENT_SECRET, **config) -> SalesforceClient:
    connector = Connector(
        name="Salesforce", kind="salesforce", config={"instance_url": crm.url, "ca_bundle": crm.ca_file, **config}
    )
    connector.set_secrets({"client_id": DEMO_CLIENT_ID, "client_secret": client_secret})
    client = client_for(connector)
    client.timeout = 0.5
    return client


@pytest.fixture
def client(crm, allow_loopback):
    return make_client(crm)


def tasks(crm):
    return crm.state["salesforce"]["records"]["Task"]


def test_connection_test_authenticates_with_client_credentials(client, crm):
    assert isinstance(client, SalesforceClient)
    assert client.test() == f"Connected to Salesforce at {crm.url[8:]} (API v59.0): 4 queryable objects"
    token_request = crm.requests[0]
    assert token_request.path == "/services/oauth2/token"
    assert parse_qs(token_request.body.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": [DEMO_CLIENT_ID],
        "client_secret": [DEMO_CLIENT_SECRET],
    }
    assert crm.requests[1].path == "/services/data/v59.0/sobjects"
    assert crm.requests[1].headers["authorization"].startswith("Bearer 00D5g000004Ez3Q!")


def test_api_version_may_be_written_with_its_v(crm, allow_loopback):
    assert "(API v58.0)" in make_client(crm, api_version="v58.0").test()
    assert crm.requests[-1].path == "/services/data/v58.0/sobjects"


def test_lists_queryable_objects_and_fields(client):
    assert client.list_objects() == ["Account", "Contact", "Opportunity", "Task"]  # not AccountChangeEvent
    fields = client.list_fields("Account")
    assert FieldInfo("AccountNumber", "string") in fields and FieldInfo("LastModifiedDate", "datetime") in fields


def test_reads_an_account_by_key(client, crm):
    (account,) = client.read_by_key("Account", "AccountNumber", "ACC-0002")
    assert account["Name"] == "Birch Health" and account["Id"] == "0015g00000Nw6qSAAR"
    assert "attributes" not in account
    soql = crm.requests[-1].query["q"]
    assert soql.startswith("SELECT Id, IsDeleted, OwnerId, ") and soql.endswith(
        "FROM Account WHERE AccountNumber = 'ACC-0002' LIMIT 50"
    )
    assert client.read_by_key("Contact", "Email", "nobody@example.com") == []


def test_key_is_escaped_in_soql(client, crm):
    crm.state["salesforce"]["records"]["Account"][0]["Name"] = "O'Brien \\ Sons"
    (account,) = client.read_by_key("Account", "Name", "O'Brien \\ Sons")
    assert account["AccountNumber"] == "ACC-0001"
    assert "WHERE Name = 'O\\'Brien \\\\ Sons'" in crm.requests[-1].query["q"]
    # An injection attempt stays one string literal: it matches nothing instead of every account.
    assert client.read_by_key("Account", "Name", "x' OR Name != 'x") == []


def test_unknown_field_is_refused_before_any_query(client, crm):
    with pytest.raises(ConnectorError, match="Salesforce Account has no field 'Nope'") as caught:
        client.read_by_key("Account", "Nope", "1")
    assert caught.value.permanent
    assert not any(r.path.endswith("/query/") for r in crm.requests)


def test_read_since_follows_the_cursor_and_next_records_url(client, crm):
    every = client.read_since("Account", "LastModifiedDate", None)
    assert [a["AccountNumber"] for a in every] == ["ACC-0001", "ACC-0002", "ACC-0003", "ACC-0004", "ACC-0005"]
    assert sum(r.path.startswith("/services/data/v59.0/query/01g") for r in crm.requests) == 2  # batches of 2
    newer = client.read_since("Account", "LastModifiedDate", every[2]["LastModifiedDate"])
    assert [a["AccountNumber"] for a in newer] == ["ACC-0004", "ACC-0005"]
    assert (
        "WHERE LastModifiedDate > 2024-05-02T10:03:17+00:00 ORDER BY LastModifiedDate ASC"
        in (crm.requests[-1].query["q"])
    )
    assert len(client.read_since("Account", "LastModifiedDate", None, limit=3)) == 3


def test_write_creates_one_task_on_the_account_even_when_retried(client, crm):
    request = WriteRequest(
        idempotency_key="dlv-41",
        subject_key="ACC-0003",
        title="Churn risk: Cobalt Analytics",
        text="Offer a 10% renewal discount.",
        target={"table": "", "object": "Task", "subject_field": "AccountNumber"},
    )
    task_id = client.write(request)
    assert client.write(request) == task_id
    (task,) = tasks(crm)
    assert task["Id"] == task_id and task_id.startswith("00T")
    assert task["WhatId"] == "0015g00000Nw6qTAAR"  # ACC-0003
    assert (task["Subject"], task["Description"], task["Status"]) == (
        "Churn risk: Cobalt Analytics",
        "Offer a 10% renewal discount.",
        "Not Started",
    )
    assert task["Doorstep_Delivery_Id__c"] == "dlv-41"


def test_write_by_record_id_and_clear_errors(client, crm):
    by_id = WriteRequest(idempotency_key="dlv-1", subject_key="0015g00000Nw6qRAAR", title="t", text="x", target={})
    client.write(by_id)
    assert tasks(crm)[0]["WhatId"] == "0015g00000Nw6qRAAR"
    unknown = WriteRequest("dlv-2", "ACC-0999", "t", "x", {"subject_field": "AccountNumber"})
    with pytest.raises(ConnectorError, match="No Salesforce Account has AccountNumber = 'ACC-0999'") as caught:
        client.write(unknown)
    assert caught.value.permanent
    with pytest.raises(ConnectorError, match="'ACC-0001' is not a Salesforce record id"):
        client.write(WriteRequest("dlv-3", "ACC-0001", "t", "x", {}))
    with pytest.raises(ConnectorError, match="Salesforce Task has no field Missing__c: create it"):
        client.write(WriteRequest("dlv-4", "ACC-0001", "t", "x", {"idempotency_field": "Missing__c"}))
    assert len(tasks(crm)) == 1


def test_wrong_client_secret_is_a_clear_permanent_error(crm, allow_loopback):
    client = make_client(crm, client_secret="wrong")
    with pytest.raises(ConnectorError) as caught:
        client.test()
    assert str(caught.value) == "Salesforce refused the client credentials: invalid_client (invalid client credentials)"
    assert caught.value.permanent


def test_an_expired_session_is_renewed_once(client, crm):
    client.test()
    crm.state["salesforce"]["tokens"].clear()  # every issued token expires
    assert client.list_fields("Contact")
    assert sum(r.path == "/services/oauth2/token" for r in crm.requests) == 2
    crm.fail_next("auth", times=2)  # the session, then the new token, refused
    with pytest.raises(ConnectorError, match="INVALID_SESSION_ID") as caught:
        client.list_fields("Opportunity")
    assert caught.value.permanent


def test_timeout(client, crm):
    client.test()
    crm.fail_next("slow", times=2, seconds=1.0)
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="Salesforce did not answer within 0.5s") as caught:
        client.list_fields("Account")
    assert not caught.value.permanent
    assert time.monotonic() - started < 1.5  # one retry of the read, no more


def test_malformed_response(client, crm):
    client.test()
    crm.fail_next("malformed")
    with pytest.raises(ConnectorError, match=r"Salesforce sent a malformed response \(expected JSON, got text/html\)"):
        client.list_fields("Account")


def test_short_retry_after_is_waited_out(client, crm):
    client.test()
    crm.fail_next("ratelimit", retry_after=1)
    started = time.monotonic()
    assert len(client.read_by_key("Account", "AccountNumber", "ACC-0001")) == 1
    assert 0.9 < time.monotonic() - started < 2


def test_long_retry_after_is_handed_back(client, crm):
    client.test()
    crm.fail_next("ratelimit", retry_after=120)
    with pytest.raises(RateLimited) as caught:
        client.read_by_key("Account", "AccountNumber", "ACC-0001")
    assert caught.value.retry_after == 120


def test_untrusted_certificate_names_the_ca_bundle(crm, allow_loopback):
    client = make_client(crm, ca_bundle="")
    with pytest.raises(ConnectorError, match="TLS certificate is not trusted.*set the connector's CA bundle") as e:
        client.test()
    assert e.value.permanent


def test_a_missing_ca_bundle_file_is_named(crm, allow_loopback, tmp_path):
    with pytest.raises(ConnectorError, match="The CA bundle .*/absent.pem is not a file on this server") as caught:
        make_client(crm, ca_bundle=str(tmp_path / "absent.pem")).test()
    assert caught.value.permanent
    assert crm.requests == []


def test_plain_http_instance_is_refused(crm, allow_loopback):
    with pytest.raises(ConnectorError, match="must start with https://"):
        make_client(crm, instance_url=crm.url.replace("https://", "http://")).test()
    assert crm.requests == []


def test_loopback_is_refused_unless_allow_listed(crm, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    with pytest.raises(BlockedAddress, match="private address"):
        make_client(crm).test()
    assert crm.requests == []
