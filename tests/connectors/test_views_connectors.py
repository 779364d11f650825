"""The integrator's page: connectors with health and a connection test; the user's own API keys."""

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from apps.connectors.models import Connector
from apps.permissions.models import ApiKey, digest

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def _login(client, user):
    client.force_login(user)
    return client


def test_integrator_sees_connectors_without_secrets(client, world):
    response = _login(client, world.integrator).get(reverse("connectors:connector-list"))
    assert response.status_code == 200
    body = response.content.decode()
    assert escape(world.crm_connector.name) in body and world.churn_model.name in body
    assert "credentials set (version 1)" in body
    assert str(world.source_db) not in body and "sqlite:///" not in body
    assert world.crm_connector.secrets_ciphertext not in body
    assert reverse("connectors:connector-test", args=[world.crm_connector.pk]) in body
    assert "Your API keys" in body


def test_governance_views_but_cannot_test(client, world):
    c = _login(client, world.governance)
    body = c.get(reverse("connectors:connector-list")).content.decode()
    assert escape(world.crm_connector.name) in body
    assert reverse("connectors:connector-test", args=[world.crm_connector.pk]) not in body
    response = c.post(reverse("connectors:connector-test", args=[world.crm_connector.pk]), **HTMX)
    assert response.status_code == 200 and "You may not test this connector." in response.content.decode()
    world.crm_connector.refresh_from_db()
    assert world.crm_connector.health == Connector.Health.UNKNOWN


def test_outsider_sees_no_connector_and_gets_404(client, world, outsider):
    c = _login(client, outsider)
    response = c.get(reverse("connectors:connector-list"))
    assert response.status_code == 200 and escape(world.crm_connector.name) not in response.content.decode()
    assert c.post(reverse("connectors:connector-test", args=[world.crm_connector.pk]), **HTMX).status_code == 404


def test_sql_connection_test_records_health_and_history(client, world):
    response = _login(client, world.integrator).post(
        reverse("connectors:connector-test", args=[world.crm_connector.pk]), **HTMX
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and f'id="connector-{world.crm_connector.pk}"' in body
    assert "Test passed" in body and "accounts" in body
    world.crm_connector.refresh_from_db()
    assert world.crm_connector.health == Connector.Health.OK and world.crm_connector.last_success_at
    latest = world.crm_connector.history.first()
    assert latest.history_user == world.integrator and latest.health == "ok"


def test_model_connection_test_loads_the_artifact(client, world):
    c = _login(client, world.integrator)
    body = c.post(reverse("connectors:connector-test", args=[world.churn_model.pk]), **HTMX).content.decode()
    assert "Model loaded" in body
    body = c.post(reverse("connectors:connector-test", args=[world.reply_model.pk]), **HTMX).content.decode()
    assert "Index loaded" in body


def test_failing_connection_is_a_message_not_a_500(client, world):
    world.churn_model.config = {"artifact": str(world.demo_dir / "missing.joblib")}
    world.churn_model.save()
    response = _login(client, world.integrator).post(
        reverse("connectors:connector-test", args=[world.churn_model.pk]), **HTMX
    )
    assert response.status_code == 200
    assert "Test failed" in response.content.decode()
    world.churn_model.refresh_from_db()
    assert world.churn_model.health == Connector.Health.FAILING
    assert world.churn_model.last_failure_at and "missing.joblib" in world.churn_model.last_error


def test_garbage_artifact_is_reported_not_raised(client, world):
    garbage = world.demo_dir / "garbage.joblib"
    garbage.write_bytes(b"not a pickle at all")
    world.reply_model.config = {"artifact": str(garbage)}
    world.reply_model.save()
    response = _login(client, world.integrator).post(
        reverse("connectors:connector-test", args=[world.reply_model.pk]), **HTMX
    )
    assert response.status_code == 200 and "Test failed" in response.content.decode()
    world.reply_model.refresh_from_db()
    assert world.reply_model.health == Connector.Health.FAILING


def test_webhook_to_a_private_address_fails_the_test(client, world):
    hook = Connector.objects.create(name="Hook", kind=Connector.Kind.WEBHOOK, config={"url": "http://127.0.0.1/x"})
    response = _login(client, world.admin).post(reverse("connectors:connector-test", args=[hook.pk]), **HTMX)
    assert response.status_code == 200 and "private address" in response.content.decode()


def test_non_htmx_test_redirects_with_a_message(client, world):
    c = _login(client, world.integrator)
    response = c.post(reverse("connectors:connector-test", args=[world.crm_connector.pk]), follow=True)
    assert response.status_code == 200 and "Connected;" in response.content.decode()


def test_api_key_is_shown_once_and_stored_as_digest(client, world):
    c = _login(client, world.integrator)
    response = c.post(
        reverse("connectors:api-key-create"),
        {"name": "CRM widget", "scopes": ["feedback:write", "read"], "expires_at": ""},
        **HTMX,
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    raw = re.search(r'value="(dsk_[^"]+)"', body).group(1)
    assert "shown only once" in body
    key = ApiKey.objects.get(user=world.integrator, name="CRM widget")
    assert key.key_digest == digest(raw) and raw not in {key.key_digest, key.prefix}
    assert key.scopes == ["feedback:write", "read"]
    # The raw key never appears again.
    assert raw not in c.get(reverse("connectors:connector-list")).content.decode()
    assert key.prefix in c.get(reverse("connectors:connector-list")).content.decode()


def test_api_key_errors_name_the_field(client, world):
    c = _login(client, world.integrator)
    c.post(reverse("connectors:api-key-create"), {"name": "Dup"}, **HTMX)
    body = c.post(reverse("connectors:api-key-create"), {"name": "Dup"}, **HTMX).content.decode()
    assert "Name:" in body and "already has a key named" in body
    body = c.post(
        reverse("connectors:api-key-create"), {"name": "Old", "expires_at": "2001-01-01T00:00"}, **HTMX
    ).content.decode()
    assert "Expires: The expiry must be in the future." in body
    body = c.post(reverse("connectors:api-key-create"), {"name": "X", "scopes": ["admin"]}, **HTMX).content.decode()
    assert "Scopes:" in body
    assert ApiKey.objects.filter(user=world.integrator).count() == 1


def test_revoke_own_key_only(client, world):
    c = _login(client, world.integrator)
    c.post(reverse("connectors:api-key-create"), {"name": "Temp"}, **HTMX)
    key = ApiKey.objects.get(user=world.integrator, name="Temp")
    response = c.post(reverse("connectors:api-key-revoke", args=[key.pk]), **HTMX)
    assert response.status_code == 200 and "Revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    other = _login(client, world.governance)
    assert other.post(reverse("connectors:api-key-revoke", args=[key.pk]), **HTMX).status_code == 404
