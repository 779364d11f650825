"""POST /api/v1/use-cases/<slug>/widget-tokens: an integrator's server issues widget links."""

import pytest
from rest_framework.test import APIClient

from apps.core.actors import Actor
from apps.permissions.services import api_key_create
from apps.widget.models import WidgetToken
from tests.factories import key_client

URL = "/api/v1/use-cases/churn-risk/widget-tokens"


def test_an_integrator_key_issues_a_link_that_shows_the_output(world, released):
    recommendation = released(subject_key="ACC-0003", text="Invite the sponsor to the roadmap call.")
    world.churn.embed_origins = ["https://crm.example.com"]
    world.churn.save()
    response = key_client(world.integrator, "widget key", scopes=["feedback:write", "read"]).post(
        URL, {"subject": "ACC-0003", "ttl_minutes": 20}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"url", "snippet", "expires_at", "subject", "allowed_origins"}
    assert body["subject"] == "ACC-0003" and body["allowed_origins"] == ["https://crm.example.com"]
    assert body["snippet"] == (
        '<script src="http://127.0.0.1:8000/static/widget/embed.js" '
        f'data-doorstep-widget="{body["url"]}" async></script>'
    )
    row = WidgetToken.objects.get()
    assert row.issued_by == world.integrator and row.issued_by_api_key.name == "widget key"
    assert row.issued_by_label == "api-key:widget key (integrator)"
    assert (row.expires_at - row.issued_at).total_seconds() == 20 * 60

    page = APIClient().get(body["url"].removeprefix("http://127.0.0.1:8000"))
    assert page.status_code == 200 and recommendation.text in page.content.decode()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "subject"),
        ({"subject": ""}, "subject"),
        ({"subject": "A" * 121}, "subject"),
        ({"subject": "ACC-1", "ttl_minutes": 5}, "ttl_minutes"),
        ({"subject": "ACC-1", "ttl_minutes": 61}, "ttl_minutes"),
        ({"subject": "ACC-1", "ttl_minutes": "soon"}, "ttl_minutes"),
    ],
)
def test_bad_input_names_the_field(world, payload, field):
    response = key_client(world.integrator).post(URL, payload, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
    assert not WidgetToken.objects.exists()


def test_who_may_not_issue_a_link(world):
    # No run_usecase: governance may view and change the use case, but not speak for it.
    response = key_client(world.governance).post(URL, {"subject": "ACC-1"}, format="json")
    assert response.status_code == 403 and response.json()["error"] == "permission_denied"
    # Not visible at all: the same answer as a use case that does not exist.
    assert key_client(world.outsider).post(URL, {"subject": "ACC-1"}, format="json").status_code == 404
    missing = key_client(world.integrator, scopes=["feedback:write", "read"]).post(
        "/api/v1/use-cases/no-such-thing/widget-tokens", {"subject": "ACC-1"}, format="json"
    )
    assert missing.status_code == 404
    # A key without both scopes: the link would read the output and write feedback.
    read_only = APIClient()
    _, raw = api_key_create(actor=Actor(user=world.integrator), user=world.integrator, name="r", scopes=["read"])
    read_only.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert read_only.post(URL, {"subject": "ACC-1"}, format="json").status_code == 403
    write_only = key_client(world.integrator, name="w", scopes=["feedback:write"])
    response = write_only.post(URL, {"subject": "ACC-1"}, format="json")
    assert response.status_code == 403 and "read scope" in response.json()["detail"]
    assert APIClient().post(URL, {"subject": "ACC-1"}, format="json").status_code in (401, 403)
    assert not WidgetToken.objects.exists()


def test_an_idempotency_key_replays_the_same_link(world):
    client = key_client(world.integrator)
    first = client.post(URL, {"subject": "ACC-1"}, format="json", HTTP_IDEMPOTENCY_KEY="page-view-1")
    again = client.post(URL, {"subject": "ACC-1"}, format="json", HTTP_IDEMPOTENCY_KEY="page-view-1")
    assert first.json() == again.json() and again["Idempotent-Replayed"] == "true"
    assert WidgetToken.objects.count() == 1
