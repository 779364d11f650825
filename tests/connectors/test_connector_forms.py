"""Configuring connectors in the UI: one form per kind, credentials write-only, bad configs as clear messages
beside the field (never a 500), and a test of the typed settings before they are saved."""

import socket

import pytest
from django.test import override_settings
from django.urls import reverse

from apps.connectors.models import Connector
from standins.server import Response, StandIn

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
SECRET = "s3cr3t-Value-never-shown-42"


def _create(client, user, kind, data, **extra):
    client.force_login(user)
    return client.post(reverse("connectors:connector-create"), {"kind": kind, **data}, **extra)


def _body(response) -> str:
    assert response.status_code < 500
    return response.content.decode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _models_standin(key="sk-good"):
    def models(standin, request):
        if request.headers.get("authorization") != f"Bearer {key}":
            return Response(401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
        return Response(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})

    return StandIn([("GET", r"/v1/models", models)])


# --- choosing a kind ---------------------------------------------------------------------------------------------


def test_new_connector_starts_with_a_kind_and_builds_its_form(client, world):
    client.force_login(world.integrator)
    body = _body(client.get(reverse("connectors:connector-create")))
    assert "What does it connect to?" in body and "?kind=hubspot" in body
    body = _body(client.get(reverse("connectors:connector-create") + "?kind=zendesk"))
    assert "Zendesk URL" in body and "Agent e-mail" in body and "API token" in body
    assert 'type="password"' in body and 'autocomplete="off"' in body
    body = _body(client.get(reverse("connectors:connector-create") + "?kind=nonsense"))
    assert "Choose a kind of connector." in body


def test_only_integrators_and_admins_create(client, world):
    client.force_login(world.governance)
    assert client.get(reverse("connectors:connector-create") + "?kind=sql").status_code == 403
    response = _create(client, world.governance, "webhook", {"name": "X", "cfg_url": "https://example.com/h"})
    assert response.status_code == 403 and not Connector.objects.filter(name="X").exists()


# --- SQL -------------------------------------------------------------------------------------------------------


def test_sql_connector_is_created_with_encrypted_url_and_tested_from_its_page(client, world):
    url = f"sqlite:///{world.source_db}"
    response = _create(client, world.integrator, "sql", {"name": "Second CRM", "sec_url": url}, **HTMX)
    connector = Connector.objects.get(name="Second CRM")
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("connectors:connector-detail", args=[connector.pk])
    assert connector.secrets == {"url": url} and url not in connector.secrets_ciphertext
    assert connector.secrets_version == 1
    # The creator's role group may view, use and edit it.
    detail = _body(client.get(reverse("connectors:connector-detail", args=[connector.pk])))
    assert str(world.source_db) not in detail and "set (version 1)" in detail
    assert "Group Integrator" in detail and "Edit settings" in detail
    tested = _body(
        client.post(
            reverse("connectors:connector-test", args=[connector.pk]), HTTP_HX_TARGET="connector-health", **HTMX
        )
    )
    assert "Test passed" in tested and "accounts" in tested and str(world.source_db) not in tested


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url at all", "Not a database URL"),
        ("oracle+nodriver://u:p@h/db", "Unsupported database kind"),
        ("sqlite:///relative.db", "A SQLite URL needs an absolute file path"),
    ],
)
def test_bad_database_urls_are_field_errors_that_never_echo_the_url(client, world, url, message):
    response = _create(client, world.integrator, "sql", {"name": "Bad", "sec_url": url}, **HTMX)
    body = _body(response)
    assert response.status_code == 200 and f"Database URL: {message}" in body
    assert url not in body and not Connector.objects.filter(name="Bad").exists()


def test_unknown_database_and_closed_port_give_clear_test_messages_without_the_password(client, world):
    """Against the machine's PostgreSQL (trust auth accepts any password, so the failure is a missing database)."""
    for url, expected in (
        (f"postgresql://postgres:{SECRET}@127.0.0.1:5432/doorstep_no_such_db", "doorstep_no_such_db"),
        (f"postgresql://postgres:{SECRET}@127.0.0.1:{_closed_port()}/x", "127.0.0.1"),
    ):
        response = _create(client, world.integrator, "sql", {"name": "PG", "sec_url": url, "action": "test"}, **HTMX)
        body = _body(response)
        assert 'id="draft-test"' in body and "<form" not in body  # only the result box is swapped
        assert "Test failed (nothing saved)" in body and expected in body, body
        assert SECRET not in body and url not in body
    assert not Connector.objects.filter(name="PG").exists()


def test_working_settings_test_without_saving(client, world):
    response = _create(
        client,
        world.integrator,
        "sql",
        {"name": "Try", "sec_url": f"sqlite:///{world.source_db}", "action": "test"},
        **HTMX,
    )
    assert "Test passed (nothing saved)" in _body(response)
    assert not Connector.objects.filter(name="Try").exists()


def test_file_connector_has_nothing_to_test_before_it_is_saved(client, world):
    body = _body(
        _create(client, world.integrator, "file", {"name": "Up", "cfg_format": "jsonl", "action": "test"}, **HTMX)
    )
    assert "Test passed (nothing saved): Nothing to connect to" in body


# --- HubSpot ---------------------------------------------------------------------------------------------------


def test_hubspot_private_address_is_refused_on_the_field(client, world):
    response = _create(
        client,
        world.integrator,
        "hubspot",
        {"name": "HS", "cfg_base_url": "http://10.1.2.3:8080", "sec_access_token": SECRET},
        **HTMX,
    )
    body = _body(response)
    assert "API base URL: 10.1.2.3 resolves to a private address" in body and "allow-list" in body
    assert SECRET not in body  # the typed token is not sent back after a failed submit
    assert not Connector.objects.filter(name="HS").exists()


def test_hubspot_bad_and_unresolvable_urls(client, world):
    for url, message in (
        ("ftp://files.example.com", "Enter an http:// or https:// URL"),
        ("https://nohost.invalid", "Cannot resolve nohost.invalid"),
    ):
        body = _body(
            _create(
                client,
                world.integrator,
                "hubspot",
                {"name": "HS", "cfg_base_url": url, "sec_access_token": "t"},
                **HTMX,
            )
        )
        assert f"API base URL: {message}" in body, body


def test_hubspot_token_is_write_only_on_edit(client, world):
    _create(client, world.integrator, "hubspot", {"name": "HS", "sec_access_token": SECRET})
    connector = Connector.objects.get(name="HS")
    assert connector.config == {} and connector.secrets == {"access_token": SECRET}
    edit_url = reverse("connectors:connector-edit", args=[connector.pk])
    body = _body(client.get(edit_url))
    assert SECRET not in body and "Set (version 1) — leave blank to keep." in body
    assert 'name="sec_access_token"' in body and 'value="' + SECRET not in body
    # A blank token keeps the stored one; the version stays.
    response = client.post(edit_url, {"name": "HubSpot CRM", "sec_access_token": ""}, **HTMX)
    assert response.status_code == 200 and "HX-Redirect" in response
    connector.refresh_from_db()
    assert connector.name == "HubSpot CRM" and connector.secrets == {"access_token": SECRET}
    assert connector.secrets_version == 1
    # A required token cannot be cleared.
    body = _body(client.post(edit_url, {"name": "HubSpot CRM", "clear_access_token": "on"}, **HTMX))
    assert "Private app access token: This credential is required; it cannot be cleared." in body
    # A new token is a new version, and the old value never appears.
    client.post(edit_url, {"name": "HubSpot CRM", "sec_access_token": "new-token-value"}, **HTMX)
    connector.refresh_from_db()
    assert connector.secrets == {"access_token": "new-token-value"} and connector.secrets_version == 2
    for url in (
        edit_url,
        reverse("connectors:connector-detail", args=[connector.pk]),
        reverse("connectors:connector-list"),
    ):
        page = _body(client.get(url))
        assert SECRET not in page and "new-token-value" not in page


# --- webhook ---------------------------------------------------------------------------------------------------


def test_webhook_loopback_needs_the_allow_list(client, world):
    data = {"name": "Hook", "cfg_url": "http://127.0.0.1:9/hook", "sec_signing_secret": SECRET}
    body = _body(_create(client, world.integrator, "webhook", data, **HTMX))
    assert "Receiver URL: 127.0.0.1 resolves to a private address (127.0.0.1)" in body and SECRET not in body
    with override_settings(DOORSTEP_OUTBOUND_ALLOWLIST=["127.0.0.1"]):
        response = _create(client, world.integrator, "webhook", data, **HTMX)
    assert "HX-Redirect" in response
    assert Connector.objects.get(name="Hook").config == {"url": "http://127.0.0.1:9/hook"}


@override_settings(DOORSTEP_OUTBOUND_ALLOWLIST=["127.0.0.1"])
def test_webhook_receiver_down_is_a_clear_test_message(client, world):
    data = {"name": "Hook", "cfg_url": f"http://127.0.0.1:{_closed_port()}/hook", "sec_signing_secret": "x" * 8}
    body = _body(_create(client, world.integrator, "webhook", {**data, "action": "test"}, **HTMX))
    assert "Test failed (nothing saved): Cannot reach The webhook receiver at 127.0.0.1" in body


def test_required_fields_are_named(client, world):
    body = _body(_create(client, world.integrator, "webhook", {"name": ""}, **HTMX))
    assert "Name: This field is required." in body
    assert "Receiver URL: This field is required." in body
    assert "Signing secret: This credential is required." in body


# --- OpenAI-compatible model endpoint -------------------------------------------------------------------------------


def test_model_openai_typed_settings_are_checked(client, world):
    data = {
        "name": "LLM",
        "cfg_base_url": "https://api.openai.com/v1",
        "cfg_model": "",
        "cfg_temperature": "warm",
        "cfg_max_tokens": "1.5",
        "cfg_api_style": "soap",
    }
    body = _body(_create(client, world.integrator, "model_openai", data, **HTMX))
    assert "Model: This field is required." in body
    assert "Temperature: Enter a number." in body
    assert "Max tokens: Enter a whole number." in body
    assert "API style: Select a valid choice." in body


@override_settings(DOORSTEP_OUTBOUND_ALLOWLIST=["127.0.0.1"])
def test_model_openai_settings_test_against_a_local_endpoint(client, world):
    with _models_standin() as endpoint:
        data = {
            "name": "LLM",
            "cfg_base_url": f"{endpoint.url}/v1",
            "cfg_model": "gpt-4o-mini",
            "cfg_temperature": "0.2",
            "cfg_max_tokens": "200",
            "cfg_price_per_1k_input_tokens": "0.00015",
            "sec_api_key": "sk-wrong",
            "action": "test",
        }
        body = _body(_create(client, world.integrator, "model_openai", data, **HTMX))
        assert "Test failed" in body and "refused the credentials (401)" in body and "sk-wrong" not in body
        body = _body(_create(client, world.integrator, "model_openai", {**data, "sec_api_key": "sk-good"}, **HTMX))
        assert "Test passed (nothing saved)" in body and "model gpt-4o-mini is available" in body
        assert endpoint.requests[-1].headers["authorization"] == "Bearer sk-good"
        response = _create(client, world.integrator, "model_openai", {**data, "sec_api_key": "sk-good", "action": ""})
    connector = Connector.objects.get(name="LLM")
    assert response.status_code == 302
    assert connector.config["temperature"] == "0.2" and connector.config["max_tokens"] == 200
    assert connector.config["price_per_1k_input_tokens"] == "0.00015"
    assert connector.secrets == {"api_key": "sk-good"}


def test_edit_needs_change_permission(client, world):
    client.force_login(world.governance)  # may view the CRM connector, not change it
    url = reverse("connectors:connector-edit", args=[world.crm_connector.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"name": "Renamed"}, **HTMX).status_code == 403
    world.crm_connector.refresh_from_db()
    assert world.crm_connector.name == "Northwind CRM & helpdesk"


def test_a_model_file_outside_the_allowed_folders_is_refused(world, settings):
    from apps.connectors.services import _clean_path

    settings.DOORSTEP_FILE_DIRS = ["/srv/doorstep/models"]
    with pytest.raises(ValueError, match="DOORSTEP_FILE_DIRS"):
        _clean_path("/etc/passwd")
    with pytest.raises(ValueError, match="DOORSTEP_FILE_DIRS"):
        _clean_path("/srv/doorstep/models/../../../etc/passwd")
    assert _clean_path("/srv/doorstep/models/churn.joblib") == "/srv/doorstep/models/churn.joblib"
