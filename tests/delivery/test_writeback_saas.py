"""Write-back through a SaaS client: an approved churn output becomes one HubSpot note on the company,
through the delivery service and the real HubSpot client, against the HubSpot stand-in."""

import datetime as dt

import pytest

from apps.connectors.models import Connector, Destination
from apps.core import clock
from apps.core.actors import Actor
from apps.delivery import services
from apps.delivery.models import Delivery
from apps.reviews.services import review_task_decide
from standins.hubspot import DEMO_TOKEN, hubspot_standin
from tests.delivery.helpers import make_connector


@pytest.fixture
def hubspot():
    with hubspot_standin() as standin:
        yield standin


@pytest.fixture
def note_destination(world, hubspot, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    connector = make_connector(
        Connector.Kind.HUBSPOT, "HubSpot", config={"base_url": hubspot.url}, secrets={"access_token": DEMO_TOKEN}
    )
    destination = Destination.objects.create(
        name="Note on the HubSpot company",
        kind=Destination.Kind.WRITEBACK,
        connector=connector,
        config={"object": "companies", "subject_field": "account_id"},
    )
    world.churn.destinations.set([destination])
    return destination


def _notes(hubspot):
    return hubspot.state["hubspot"]["objects"]["notes"]


def test_edited_output_becomes_one_note_on_the_company(world, queued_recommendation, hubspot, note_destination):
    recommendation = queued_recommendation(subject_key="ACC-0001", text="Offer 20% off the renewal.")
    review_task_decide(
        actor=Actor(user=world.reviewer),
        task=recommendation.review_task,
        decision="edit",
        edited_text="Offer 10% off and a QBR.",
    )
    delivery = Delivery.objects.get(recommendation=recommendation)
    hubspot.fail_next("ratelimit", retry_after=90)
    delivery = services.delivery_send(delivery_id=delivery.pk)
    assert delivery.status == "pending" and delivery.attempt_log[-1]["status"] == 429
    assert delivery.next_attempt_at >= clock.now() + dt.timedelta(seconds=85)

    delivery = services.delivery_send(delivery_id=delivery.pk)
    assert delivery.status == "succeeded" and delivery.attempts == 2
    (note,) = _notes(hubspot)
    assert delivery.external_id == note["id"] and note["id"] in delivery.last_response
    assert note["associations"] == [{"to": "companies", "id": "9001", "associationTypeId": 190}]
    assert note["properties"]["doorstep_delivery_id"] == f"dlv-{delivery.pk}"
    assert "Offer 10% off and a QBR." in note["properties"]["hs_note_body"]
    assert "Churn risk on CRM accounts: ACC-0001" in note["properties"]["hs_note_body"]

    # The same delivery sent again (a duplicate task) finds its note instead of writing a second one.
    Delivery.objects.filter(pk=delivery.pk).update(status="pending")
    assert services.delivery_send(delivery_id=delivery.pk).external_id == note["id"]
    assert len(_notes(hubspot)) == 1


def test_an_unknown_company_fails_at_once(world, allowed, hubspot, note_destination):
    (recommendation,) = allowed(start=999)
    delivery = services.delivery_send(delivery_id=Delivery.objects.get(recommendation=recommendation).pk)
    assert delivery.status == "failed" and delivery.attempts == 1 and "ACC-0999" in delivery.last_error
    assert _notes(hubspot) == []
