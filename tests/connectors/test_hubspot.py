"""The HubSpot client (CRM v3 on the guarded session) against the HubSpot stand-in."""

import time

import pytest

from apps.connectors.clients.base import FieldInfo, WriteRequest
from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.http import BlockedAddress, RateLimited
from apps.connectors.clients.hubspot import HubSpotClient
from apps.connectors.clients.registry import client_for
from apps.connectors.models import Connector
from standins.hubspot import DEMO_TOKEN, hubspot_standin


@pytest.fixture
def crm():
    with hubspot_standin() as standin:
        yield standin


@pytest.fixture
def allow_loopback(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]


def make_client(crm, *, token=DEMO_TOKEN) -> HubSpotClient:
    connector = Connector(name="HubSpot", kind="hubspot", config={"base_url": crm.url})
    connector.set_secrets({"access_token": token})
    client = client_for(connector)
    client.timeout = 0.5
    return client


@pytest.fixture
def client(crm, allow_loopback):
    return make_client(crm)


def notes(crm):
    return crm.state["hubspot"]["objects"]["notes"]


def note_request(key="dlv-7", subject="ACC-0001", **target):
    return WriteRequest(
        idempotency_key=key,
        subject_key=subject,
        title="Churn risk <high>",
        text="Call the sponsor.\n\nOffer 10% & a QBR.",
        target={"table": "", "object": "companies", "subject_field": "account_id", **target},
    )


def test_connection_test_names_the_portal(client, crm):
    assert isinstance(client, HubSpotClient)
    assert client.test() == "Connected to HubSpot portal 62515 (STANDARD account, data in na1)"
    assert crm.requests[0].headers["authorization"] == f"Bearer {DEMO_TOKEN}"


def test_lists_standard_objects_and_properties(client):
    assert client.list_objects() == ["companies", "contacts", "deals", "tickets"]
    fields = client.list_fields("companies")
    assert FieldInfo("id", "id") in fields and FieldInfo("hs_lastmodifieddate", "datetime") in fields
    assert FieldInfo("account_id", "string") in fields


def test_reads_by_id_by_unique_property_and_by_search(client, crm):
    (by_id,) = client.read_by_key("companies", "hs_object_id", "9002")
    assert by_id["id"] == "9002" and by_id["name"] == "Birch Health" and by_id["account_id"] == "ACC-0002"
    assert crm.requests[-1].path == "/crm/v3/objects/companies/9002"
    assert "account_id" in crm.requests[-1].query["properties"].split(",")

    (by_unique,) = client.read_by_key("companies", "account_id", "ACC-0003")
    assert by_unique["name"] == "Cobalt Analytics"
    assert crm.requests[-1].query["idProperty"] == "account_id"

    (by_search,) = client.read_by_key("deals", "dealname", "Aster Logistics renewal")
    assert by_search["id"] == "7001"
    search = crm.requests[-1]
    assert search.path == "/crm/v3/objects/deals/search"
    assert search.json["filterGroups"] == [
        {"filters": [{"propertyName": "dealname", "operator": "EQ", "value": "Aster Logistics renewal"}]}
    ]

    assert client.read_by_key("companies", "hs_object_id", "123456") == []  # HubSpot's 404
    assert client.read_by_key("companies", "account_id", "ACC-0999") == []
    assert client.read_by_key("companies", "id", "not-a-number") == []


def test_unknown_property_is_refused(client):
    with pytest.raises(ConnectorError, match="HubSpot companies have no property 'nope'") as caught:
        client.read_by_key("companies", "nope", "x")
    assert caught.value.permanent


def test_read_since_pages_through_search_in_cursor_order(client, crm, monkeypatch):
    monkeypatch.setattr("apps.connectors.clients.hubspot.SEARCH_PAGE", 2)
    every = client.read_since("companies", "hs_lastmodifieddate", None)
    assert [c["account_id"] for c in every] == ["ACC-0001", "ACC-0002", "ACC-0003", "ACC-0004", "ACC-0005"]
    searches = [r.json for r in crm.requests if r.path.endswith("/search")]
    assert [s.get("after") for s in searches] == [None, "2", "4"]
    assert searches[0]["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]

    newer = client.read_since("companies", "hs_lastmodifieddate", every[2]["hs_lastmodifieddate"])
    assert [c["account_id"] for c in newer] == ["ACC-0004", "ACC-0005"]
    (cursor_filter,) = crm.requests[-1].json["filterGroups"][0]["filters"]
    assert cursor_filter == {"propertyName": "hs_lastmodifieddate", "operator": "GT", "value": "1714644197004"}
    assert len(client.read_since("companies", "hs_lastmodifieddate", None, limit=3)) == 3


def test_write_creates_one_note_associated_with_the_company(client, crm):
    request = note_request()
    note_id = client.write(request)
    assert client.write(request) == note_id
    (note,) = notes(crm)
    assert note["id"] == note_id
    assert note["associations"] == [{"to": "companies", "id": "9001", "associationTypeId": 190}]
    assert note["properties"]["doorstep_delivery_id"] == "dlv-7"
    assert note["properties"]["hs_note_body"] == (
        "<p><strong>Churn risk &lt;high&gt;</strong></p><p>Call the sponsor.</p><p>Offer 10% &amp; a QBR.</p>"
    )
    assert note["properties"]["hs_timestamp"].endswith("Z")


def test_write_on_a_deal_by_record_id(client, crm):
    client.write(note_request(subject="7002", object="deals", subject_field=""))
    assert notes(crm)[0]["associations"] == [{"to": "deals", "id": "7002", "associationTypeId": 214}]


def test_write_errors_are_clear(client, crm):
    with pytest.raises(ConnectorError, match="No HubSpot companies have account_id = 'ACC-0999'") as caught:
        client.write(note_request(subject="ACC-0999"))
    assert caught.value.permanent
    with pytest.raises(ConnectorError, match="HubSpot notes attach to companies, contacts, deals, tickets"):
        client.write(note_request(object="products"))
    crm.state["hubspot"]["properties"]["notes"] = [
        p for p in crm.state["hubspot"]["properties"]["notes"] if p["name"] != "doorstep_delivery_id"
    ]
    with pytest.raises(ConnectorError, match="HubSpot notes have no unique property doorstep_delivery_id"):
        make_client(crm).write(note_request())  # a new client: property definitions are read once per client
    assert notes(crm) == []


def test_wrong_token_is_a_clear_permanent_error(crm, allow_loopback):
    with pytest.raises(
        ConnectorError, match=r"HubSpot refused the credentials \(401\).*Authentication credentials not found"
    ) as e:
        make_client(crm, token="pat-na1-wrong").test()
    assert e.value.permanent


def test_timeout(client, crm):
    crm.fail_next("slow", times=2, seconds=1.0)
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="HubSpot did not answer within 0.5s") as caught:
        client.test()
    assert not caught.value.permanent
    assert time.monotonic() - started < 1.5


def test_search_is_retried_after_a_timeout_but_a_note_is_never_resent(client, crm):
    crm.fail_next("slow", seconds=1.0)
    assert client.read_by_key("deals", "dealname", "Birch Health renewal")  # POST search, retried once
    crm.fail_next("slow", seconds=1.0, method="POST", path="/crm/v3/objects/notes")
    with pytest.raises(ConnectorError, match="HubSpot did not answer within 0.5s"):
        client.write(note_request())
    creates = [r for r in crm.requests if r.method == "POST" and r.path == "/crm/v3/objects/notes"]
    assert len(creates) == 1
    time.sleep(0.6)  # the stand-in finishes the slow create
    assert len(notes(crm)) == 1
    assert client.write(note_request()) == notes(crm)[0]["id"]  # the retried delivery finds it
    assert len(notes(crm)) == 1


def test_malformed_response(client, crm):
    crm.fail_next("malformed")
    with pytest.raises(ConnectorError, match=r"HubSpot sent a malformed response \(expected JSON, got text/html\)"):
        client.test()


def test_short_retry_after_is_waited_out(client, crm):
    crm.fail_next("ratelimit", retry_after=1)
    started = time.monotonic()
    assert client.test().startswith("Connected")
    assert 0.9 < time.monotonic() - started < 2


def test_long_retry_after_is_handed_back(client, crm):
    crm.fail_next("ratelimit", retry_after=60)
    with pytest.raises(RateLimited) as caught:
        client.list_fields("deals")
    assert caught.value.retry_after == 60


def test_loopback_is_refused_unless_allow_listed(crm, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    with pytest.raises(BlockedAddress):
        make_client(crm).test()
    assert crm.requests == []
