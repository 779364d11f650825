"""The failed-deliveries page and API: who sees which failures, who may retry, what a retry does."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from apps.connectors.models import Connector, Destination
from apps.core.actors import Actor
from apps.delivery import selectors
from apps.delivery.models import Delivery
from apps.permissions.services import api_key_create
from apps.workflows.models import RecommendationEvent
from standins.server import Response, StandIn
from tests.delivery.helpers import make_connector

SECRET = "portal-signing-secret"


@pytest.fixture
def portal():
    with StandIn([("POST", "/hook", lambda standin, request: Response(200, {"ok": True}))]) as standin:
        yield standin


@pytest.fixture
def failed(world, allowed, portal, django_capture_on_commit_callbacks):
    """Three churn outputs whose webhook failed at once: the portal's loopback address is not allow-listed."""
    connector = make_connector(
        Connector.Kind.WEBHOOK, "Portal hook", config={"url": f"{portal.url}/hook"}, secrets={"signing_secret": SECRET}
    )
    destination = Destination.objects.create(name="Partner portal", kind=Destination.Kind.WEBHOOK, connector=connector)
    world.churn.destinations.set([destination])
    with django_capture_on_commit_callbacks(execute=True):
        recommendations = allowed(3)
    deliveries = list(Delivery.objects.filter(recommendation__in=recommendations).order_by("pk"))
    assert [d.status for d in deliveries] == ["failed"] * 3
    return deliveries


def _row_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="delivery-(\d+)"', html)]


def test_page_lists_failures_with_retry_for_those_who_may_run(client, world, failed):
    client.force_login(world.integrator)  # view and run on the churn use case
    response = client.get(reverse("delivery:failed-list"))
    assert response.status_code == 200
    html = response.content.decode()
    assert _row_ids(html) == [d.pk for d in reversed(failed)]  # newest first
    assert "Partner portal" in html and "ACC-0001" in html and "private address" in html
    assert html.count(">Retry</button>") == 3
    assert reverse("audit:trace", args=[failed[0].recommendation_id]) in html


def test_viewers_see_failures_without_a_retry_button_and_cannot_retry(client, world, failed, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    client.force_login(world.executive)  # view only
    html = client.get(reverse("delivery:failed-list")).content.decode()
    assert len(_row_ids(html)) == 3 and ">Retry</button>" not in html
    events = RecommendationEvent.objects.count()
    url = reverse("delivery:delivery-retry", args=[failed[0].pk])
    assert client.post(url, HTTP_HX_REQUEST="true").status_code == 403
    assert client.post(url).status_code == 403
    failed[0].refresh_from_db()
    assert failed[0].status == "failed" and RecommendationEvent.objects.count() == events


def test_outsiders_see_nothing_and_change_nothing(client, world, failed):
    client.force_login(world.outsider)
    for extra in ({}, {"HTTP_HX_REQUEST": "true"}):
        response = client.get(reverse("delivery:failed-list"), **extra)
        assert response.status_code == 200 and _row_ids(response.content.decode()) == []
        assert "ACC-0001" not in response.content.decode()
    events = RecommendationEvent.objects.count()
    for pk in (failed[0].pk, 999999):
        url = reverse("delivery:delivery-retry", args=[pk])
        assert client.post(url, HTTP_HX_REQUEST="true").status_code == 404
        assert client.post(url).status_code == 404
    failed[0].refresh_from_db()
    assert failed[0].status == "failed" and RecommendationEvent.objects.count() == events


def test_retry_by_htmx_sends_again_and_updates_the_row(
    client, world, failed, portal, settings, django_capture_on_commit_callbacks
):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]  # the admin fixed what made it fail
    client.force_login(world.integrator)
    delivery = failed[0]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("delivery:delivery-retry", args=[delivery.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert _row_ids(html) == [delivery.pk] and "<table" not in html  # only the row, swapped in place
    # Rendered when the retry committed: back in the queue, no button; the worker then sent it.
    assert "Pending" in html and "Sent again" in html and ">Retry</button>" not in html
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempts == 1
    assert [entry["ok"] for entry in delivery.attempt_log] == [False, True]  # the log keeps the failure
    assert [r.headers["webhook-id"] for r in portal.requests] == [f"dlv-{delivery.pk}"]
    retried = delivery.recommendation.events.get(type="delivery_retried")
    assert retried.actor_user == world.integrator and retried.payload["previous_attempts"] == 1
    delivery.recommendation.refresh_from_db()
    assert delivery.recommendation.status == "delivered"
    # The others are still failed, and retrying a delivered one is refused in the row.
    assert (
        client.post(reverse("delivery:delivery-retry", args=[delivery.pk]), HTTP_HX_REQUEST="true").status_code == 200
    )
    assert len(portal.requests) == 1


def test_retry_without_htmx_redirects_with_a_message(client, world, failed, django_capture_on_commit_callbacks):
    client.force_login(world.integrator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("delivery:delivery-retry", args=[failed[1].pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("delivery:failed-list")
    assert "Sent again" in response.content.decode()
    failed[1].refresh_from_db()
    assert failed[1].status == "failed"  # still not allow-listed: it failed again, visibly


def test_pages_are_keyset_paginated_without_counting(client, world, failed):
    page, has_next = selectors.deliveries_failed_page(user=world.integrator, size=2)
    assert [d.pk for d in page] == [failed[2].pk, failed[1].pk] and has_next
    page, has_next = selectors.deliveries_failed_page(user=world.integrator, after=failed[1].pk, size=2)
    assert [d.pk for d in page] == [failed[0].pk] and not has_next
    client.force_login(world.integrator)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("delivery:failed-list"), {"after": failed[1].pk}, HTTP_HX_REQUEST="true")
    assert _row_ids(response.content.decode()) == [failed[0].pk]
    assert "<html" not in response.content.decode()
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    assert response.headers["Vary"].count("HX-Request") == 1
    # A malformed cursor is the first page, not an error.
    for bad in ("x'--", "²", "9" * 40):
        assert _row_ids(client.get(reverse("delivery:failed-list"), {"after": bad}).content.decode())[0] == failed[2].pk


def _api(user, *, scopes=None):
    api = APIClient()
    _, raw = api_key_create(actor=Actor(user=user), user=user, name=f"k-{user.username}", scopes=scopes or [])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api


def test_api_lists_failed_deliveries_and_retries(world, failed, portal, settings, django_capture_on_commit_callbacks):
    api = _api(world.integrator)
    response = api.get("/api/v1/deliveries", {"status": "failed"})
    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["results"]] == [d.pk for d in reversed(failed)]
    first = body["results"][-1]
    assert first["destination"] == "Partner portal" and first["use_case"] == "churn-risk"
    assert first["status"] == "failed" and "private address" in first["last_error"] and first["attempts"] == 1
    assert api.get("/api/v1/deliveries", {"status": "succeeded"}).json()["results"] == []

    bad = api.get("/api/v1/deliveries", {"status": "broken"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "status"

    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    with django_capture_on_commit_callbacks(execute=True):
        retried = api.post(f"/api/v1/deliveries/{failed[0].pk}/retry")
    assert retried.status_code == 200 and retried.json()["id"] == failed[0].pk
    failed[0].refresh_from_db()
    assert failed[0].status == "succeeded"
    again = api.post(f"/api/v1/deliveries/{failed[0].pk}/retry")
    assert again.status_code == 409 and again.json()["error"] == "not_failed"


def test_api_checks_the_same_permissions(world, failed):
    events = RecommendationEvent.objects.count()
    outsider = _api(world.outsider)
    assert outsider.get("/api/v1/deliveries", {"status": "failed"}).json()["results"] == []
    for pk in (failed[0].pk, 999999):
        response = outsider.post(f"/api/v1/deliveries/{pk}/retry")
        assert response.status_code == 404 and response["Content-Type"].startswith("application/json")
    viewer = _api(world.executive)
    assert len(viewer.get("/api/v1/deliveries", {"status": "failed"}).json()["results"]) == 3
    assert viewer.post(f"/api/v1/deliveries/{failed[0].pk}/retry").status_code == 403
    read_only = _api(world.integrator, scopes=["read"])
    assert read_only.post(f"/api/v1/deliveries/{failed[0].pk}/retry").status_code == 403
    assert Delivery.objects.filter(status="failed").count() == 3 and RecommendationEvent.objects.count() == events
