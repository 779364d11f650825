"""Connector services: who may create and change, credentials versions and history, connection tests of the
kinds that are not systems of record (against real local servers), grants, datasets and destinations."""

import datetime as dt
import socket

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from django.contrib.auth.models import Group
from django.test import override_settings

from apps.connectors import services
from apps.connectors.models import Connector, SourceDataset
from apps.connectors.selectors import connector_access, history_entries
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied
from apps.core.permissions import has_object_permission
from apps.permissions import roles
from standins.server import Response, StandIn

pytestmark = pytest.mark.django_db
LOOPBACK = override_settings(DOORSTEP_OUTBOUND_ALLOWLIST=["127.0.0.1"])


def _actor(user):
    return Actor(user=user)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hook(world, url="http://127.0.0.1:9/in", **extra):
    with LOOPBACK:
        return services.connector_create(
            actor=_actor(world.integrator),
            kind="webhook",
            name=extra.pop("name", "Hook"),
            config={"url": url},
            secrets={"signing_secret": extra.pop("secret", "whsec-one")},
        )


# --- create and update -------------------------------------------------------------------------------------------


def test_create_needs_a_creator_role_and_grants_the_creators_group(world):
    with pytest.raises(PermissionDenied):
        services.connector_create(
            actor=_actor(world.governance), kind="file", name="F", config={"format": "csv"}, secrets={}
        )
    connector = services.connector_create(
        actor=_actor(world.integrator), kind="file", name="F", config={"format": "csv"}, secrets={}
    )
    for codename in ("view_connector", "use_connector", "change_connector"):
        assert has_object_permission(world.integrator, codename, connector)
    assert not has_object_permission(world.governance, "view_connector", connector)
    (group, codenames), *_ = connector_access(connector=connector).groups
    assert group.name == roles.INTEGRATOR and set(codenames) == set(services.ACCESS_CODENAMES)
    record = connector.history.get()
    assert record.history_user == world.integrator and record.history_change_reason == "Created"


def test_settings_are_typed_and_checked_per_kind(world):
    with pytest.raises(services.SettingsInvalid) as error:
        services.connector_create(
            actor=_actor(world.integrator),
            kind="email",
            name="Mail",
            config={"host": "", "port": "twenty-five", "to": ""},
            secrets={},
        )
    assert error.value.errors == {
        "config.host": "This setting is required.",
        "config.port": "Enter a whole number.",
        "config.from_address": "This setting is required.",
        "config.to": "This setting is required.",
    }
    connector = services.connector_create(
        actor=_actor(world.integrator),
        kind="email",
        name="Mail",
        config={"host": "smtp.example.com", "port": "587", "use_tls": "on", "from_address": "a@b.c", "to": "x@y, z@w"},
        secrets={"username": "", "password": ""},
    )
    assert connector.config == {
        "host": "smtp.example.com",
        "port": 587,
        "use_tls": True,
        "from_address": "a@b.c",
        "to": ["x@y", "z@w"],
    }
    assert connector.secrets_version == 0 and connector.secrets_ciphertext == ""
    with pytest.raises(services.SettingsInvalid) as error:
        services.connector_create(
            actor=_actor(world.integrator),
            kind="rest",
            name="R",
            config={"base_url": "https://api.example.com", "auth_type": "none", "field_map": "{not json"},
            secrets={},
        )
    assert error.value.errors["config.field_map"].startswith("Not valid JSON")
    with pytest.raises(services.SettingsInvalid) as error:
        services.connector_create(
            actor=_actor(world.integrator), kind="model_sklearn", name="M", config={"artifact": "m.joblib"}, secrets={}
        )
    assert "absolute path" in error.value.errors["config.artifact"]


@LOOPBACK
def test_a_clients_own_config_check_lands_on_the_setting_it_names(world):
    with pytest.raises(services.SettingsInvalid) as error:
        services.connector_create(
            actor=_actor(world.integrator),
            kind="rest",
            name="Portal",
            config={"base_url": "http://127.0.0.1:9", "auth_type": "bearer", "read_path": "customers/{key}"},
            secrets={"token": "t"},
        )
    assert "must start with /" in error.value.errors["config.read_path"]


def test_duplicate_name_is_an_error_on_the_name(world):
    with pytest.raises(services.SettingsInvalid) as error:
        services.connector_create(
            actor=_actor(world.integrator),
            kind="file",
            name=world.crm_connector.name,
            config={"format": "csv"},
            secrets={},
        )
    assert error.value.errors == {"name": f"A connector named {world.crm_connector.name!r} already exists."}


def test_credentials_keep_rotate_and_clear_with_versions_in_the_history(world):
    hook = _hook(world)
    actor = _actor(world.integrator)

    def update(**kwargs):
        with LOOPBACK:
            return services.connector_update(
                actor=actor,
                connector=hook,
                name=kwargs.pop("name", "Hook"),
                config=kwargs.pop("config", {"url": "http://127.0.0.1:9/in"}),
                **kwargs,
            )

    update(secrets={"signing_secret": ""})  # a blank keeps the stored secret: nothing changed, no history row
    hook.refresh_from_db()
    assert hook.secrets == {"signing_secret": "whsec-one"} and hook.secrets_version == 1
    assert hook.history.count() == 1
    update(secrets={"signing_secret": "whsec-two"}, description="Ops receiver")
    hook.refresh_from_db()
    assert hook.secrets == {"signing_secret": "whsec-two"} and hook.secrets_version == 2
    with pytest.raises(services.SettingsInvalid) as error:
        update(secrets={}, clear_secrets=("signing_secret",))
    assert "cannot be cleared" in error.value.errors["secrets.signing_secret"]
    update(name="Hook v2", secrets={}, config={"url": "http://127.0.0.1:9/v2"}, description="Ops receiver")

    latest, credentials, created = history_entries(hook)
    assert latest.who == "Ian Integrator" and latest.reason == "Changed name; settings (url)"
    assert ("name", "Hook", "Hook v2") in latest.changes
    assert ("setting url", "http://127.0.0.1:9/in", "http://127.0.0.1:9/v2") in latest.changes
    assert credentials.reason == "Changed description; credentials changed (version 2)"
    assert ("credentials", "", "credentials changed (version 2)") in credentials.changes
    assert created.action == "created"
    # Neither a secret nor its ciphertext is in any history row.
    for record in hook.history.values():
        assert "whsec" not in str(record)


@LOOPBACK
def test_an_optional_credential_is_cleared(world):
    actor = _actor(world.integrator)
    config = {"base_url": "http://127.0.0.1:9", "model": "llama3.1"}
    model = services.connector_create(
        actor=actor, kind="model_openai", name="LLM", config=config, secrets={"api_key": "sk-1"}
    )
    services.connector_update(
        actor=actor, connector=model, name="LLM", config=config, secrets={"api_key": ""}, clear_secrets=("api_key",)
    )
    model.refresh_from_db()
    assert model.secrets == {} and model.secrets_version == 2
    assert model.history.first().history_change_reason == "Credentials changed (version 2)"


def test_update_needs_change_permission(world):
    with pytest.raises(PermissionDenied):
        services.connector_update(
            actor=_actor(world.governance), connector=world.crm_connector, name="X", config={}, secrets={}
        )


# --- connection tests of the kinds that are not systems of record -----------------------------------------------------


def test_webhook_test_reaches_a_local_receiver_only_when_allow_listed(world):
    with StandIn([("POST", r"/hook", lambda s, r: Response(204, ""))]) as receiver:
        hook = _hook(world, url=f"{receiver.url}/hook")
        result = services.connector_test(actor=_actor(world.integrator), connector=hook)
        assert not result.ok and "127.0.0.1 resolves to a private address" in result.message
        with LOOPBACK:
            result = services.connector_test(actor=_actor(world.integrator), connector=hook)
    assert result.ok and "is reachable" in result.message
    hook.refresh_from_db()
    assert hook.health == Connector.Health.OK and hook.history.first().history_change_reason == "Connection test: ok"


def test_webhook_receiver_that_is_down_fails_the_test_with_a_clear_message(world):
    hook = _hook(world, url=f"http://127.0.0.1:{_closed_port()}/hook")
    with LOOPBACK:
        result = services.connector_test(actor=_actor(world.integrator), connector=hook)
    assert not result.ok and result.message.startswith("Cannot reach The webhook receiver at 127.0.0.1")
    hook.refresh_from_db()
    assert hook.health == Connector.Health.FAILING and hook.last_error == result.message


@LOOPBACK
def test_slack_webhook_url_is_a_secret_checked_like_a_url(world):
    with pytest.raises(services.SettingsInvalid) as error:
        services.connector_create(
            actor=_actor(world.integrator), kind="slack", name="Chat", config={}, secrets={"webhook_url": "hooks/x"}
        )
    assert error.value.errors == {"secrets.webhook_url": "Enter an http:// or https:// URL."}
    with StandIn([("POST", r"/services/T/B/secret-path", lambda s, r: Response(200, "ok"))]) as slack:
        url = f"{slack.url}/services/T/B/secret-path"
        chat = services.connector_create(
            actor=_actor(world.integrator), kind="slack", name="Chat", config={}, secrets={"webhook_url": url}
        )
        result = services.connector_test(actor=_actor(world.integrator), connector=chat)
    assert result.ok and "secret-path" not in result.message


def test_slack_private_webhook_url_is_refused_without_echoing_it(world):
    with pytest.raises(services.SettingsInvalid) as error:
        services.connector_create(
            actor=_actor(world.integrator),
            kind="slack",
            name="Chat",
            config={},
            secrets={"webhook_url": "http://127.0.0.1/services/T/B/secret-path"},
        )
    message = error.value.errors["secrets.webhook_url"]
    assert "private address" in message and "secret-path" not in message


class _Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


def _smtp_login(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"mailer" and auth_data.password == b"right-password"
    return AuthResult(success=ok, handled=False)  # not handled: the server answers 535 itself


@pytest.fixture
def smtp_server():
    controller = Controller(
        _Sink(), hostname="127.0.0.1", port=_closed_port(), authenticator=_smtp_login, auth_require_tls=False
    )
    controller.start()
    yield controller
    controller.stop()


@LOOPBACK
def test_email_test_connects_logs_in_and_sends_noop(world, smtp_server):
    config = {"host": "127.0.0.1", "port": smtp_server.port, "from_address": "doorstep@example.com", "to": "ops@x"}
    mail = services.connector_create(
        actor=_actor(world.integrator),
        kind="email",
        name="Mail",
        config=config,
        secrets={"username": "mailer", "password": "wrong-password"},
    )
    result = services.connector_test(actor=_actor(world.integrator), connector=mail)
    assert not result.ok and "refused the user name or password" in result.message
    assert "wrong-password" not in result.message
    services.connector_update(
        actor=_actor(world.integrator),
        connector=mail,
        name="Mail",
        config=config,
        secrets={"password": "right-password"},
    )
    mail.refresh_from_db()
    result = services.connector_test(actor=_actor(world.integrator), connector=mail)
    assert result.ok and "answered (NOOP 250)" in result.message


def test_email_to_a_private_smtp_host_is_refused_unless_allow_listed(world, smtp_server):
    mail = services.connector_create(
        actor=_actor(world.integrator),
        kind="email",
        name="Mail",
        config={"host": "127.0.0.1", "port": smtp_server.port, "from_address": "a@b.c", "to": "x@y"},
        secrets={},
    )
    result = services.connector_test(actor=_actor(world.integrator), connector=mail)
    assert not result.ok and "private address" in result.message


@LOOPBACK
def test_model_http_endpoint_is_reachable_even_if_it_only_takes_post(world):
    with StandIn([("POST", r"/predict", lambda s, r: Response(200, {"prediction": {"text": "hi"}}))]) as endpoint:
        model = services.connector_create(
            actor=_actor(world.integrator),
            kind="model_http",
            name="Scorer",
            config={"url": f"{endpoint.url}/predict", "output_path": "$.prediction.text"},
            secrets={"token": ""},
        )
        result = services.connector_test(actor=_actor(world.integrator), connector=model)
    assert result.ok and "reachable" in result.message


def test_a_credential_quoted_in_an_error_is_redacted(world):
    hook = _hook(world, secret="super-secret-signing")
    assert services.redact("remote said: bad key super-secret-signing", hook) == "remote said: bad key •••"
    db = services.connector_create(
        actor=_actor(world.integrator),
        kind="sql",
        name="PG",
        config={},
        secrets={"url": "postgresql://app:pa55word-x@db.internal:5432/crm"},
    )
    assert services.redact('password "pa55word-x" rejected', db) == 'password "•••" rejected'


def test_undecryptable_credentials_fail_the_test_with_a_message(world):
    Connector.objects.filter(pk=world.crm_connector.pk).update(secrets_ciphertext="gAAAAABnot-a-valid-token")
    world.crm_connector.refresh_from_db()
    result = services.connector_test(actor=_actor(world.integrator), connector=world.crm_connector)
    assert not result.ok and "cannot be decrypted" in result.message


# --- grants ----------------------------------------------------------------------------------------------------


def test_grant_and_revoke_to_a_group_with_history(world):
    hook = _hook(world)
    ops = Group.objects.create(name="Ops")
    world.outsider.groups.add(ops)
    actor = _actor(world.integrator)
    services.connector_access_grant(actor=actor, connector=hook, group=ops, codename="use_connector")
    assert has_object_permission(world.outsider, "view_connector", hook)  # use includes view
    assert has_object_permission(world.outsider, "use_connector", hook)
    assert not has_object_permission(world.outsider, "change_connector", hook)
    assert hook.history.first().history_change_reason == "Granted use to group Ops"
    services.connector_access_revoke(actor=actor, connector=hook, group=ops, codename="view_connector")
    assert not has_object_permission(world.outsider, "use_connector", hook)  # no view, no access at all
    assert not has_object_permission(world.outsider, "view_connector", hook)
    assert hook.history.first().history_user == world.integrator
    with pytest.raises(PermissionDenied):
        services.connector_access_grant(
            actor=_actor(world.governance), connector=world.crm_connector, group=ops, codename="change_connector"
        )


# --- datasets and destinations -----------------------------------------------------------------------------------


def _dataset(world, **values):
    base = {"name": "Contacts", "table": "accounts", "key_field": "account_id", "updated_at_field": "updated_at"}
    return services.dataset_create(actor=_actor(world.integrator), connector=world.crm_connector, **(base | values))


def test_dataset_fields_are_checked_against_the_live_source(world):
    with pytest.raises(services.SettingsInvalid) as error:
        _dataset(world, key_field="acount_id", mode="cached", updated_at_field="", cursor_field="")
    assert error.value.errors == {
        "cursor_field": "A cached dataset reads incrementally: name a cursor field or an as-of field."
    }
    with pytest.raises(services.SettingsInvalid) as error:
        _dataset(world, key_field="acount_id")
    assert error.value.errors == {"key_field": "'acount_id' is not a field of accounts."}
    with pytest.raises(services.SettingsInvalid) as error:
        _dataset(world, name="Accounts", quality_rules={"ranges": {"nps": {"min": 10, "max": 1}}})
    assert set(error.value.errors) == {"name", "quality_rules"}
    dataset = _dataset(world, freshness_sla=dt.timedelta(hours=12), quality_rules={"required": ["arr"]})
    assert dataset.stale_action == "review" and dataset.mode == "live" and dataset.store_values
    assert dataset.history.get().history_user == world.integrator
    services.dataset_update(
        actor=_actor(world.integrator),
        dataset=dataset,
        **{f: getattr(dataset, f) for f in services.DATASET_FIELDS} | {"stale_action": "block"},
    )
    assert dataset.history.first().history_change_reason == "Changed stale_action"
    with pytest.raises(PermissionDenied):
        services.dataset_update(actor=_actor(world.governance), dataset=dataset, name="X")


def test_dataset_on_a_connector_without_datasets_is_refused(world):
    with pytest.raises(services.SettingsInvalid) as error:
        services.dataset_create(
            actor=_actor(world.integrator), connector=world.churn_model, name="X", table="t", key_field="k"
        )
    assert "has no datasets" in error.value.errors["connector"]
    assert not SourceDataset.objects.filter(name="X").exists()


def test_destination_kind_needs_a_matching_connector_and_mapping(world):
    actor = _actor(world.integrator)
    with pytest.raises(services.SettingsInvalid) as error:
        services.destination_create(actor=actor, connector=world.crm_connector, name="Hooked", kind="webhook")
    assert "needs a connector of kind: Signed webhook" in error.value.errors["kind"]
    with pytest.raises(services.SettingsInvalid) as error:
        services.destination_create(
            actor=actor,
            connector=world.crm_connector,
            name="Tasks",
            kind="writeback",
            table="crm_tasks",
            config={"subject_column": "account_id", "colour": "red"},
        )
    assert (
        "Unknown key 'colour'" in error.value.errors["config"]
        and "text_column is required" in error.value.errors["config"]
    )
    with pytest.raises(services.SettingsInvalid) as error:
        services.destination_create(
            actor=actor, connector=world.crm_connector, name="BI", kind="bi_table", table="x; drop"
        )
    assert error.value.errors == {"table": "Letters, digits, _ and . only, starting with a letter."}
    bi = services.destination_create(
        actor=actor, connector=world.crm_connector, name="BI", kind="bi_table", table="doorstep_outputs"
    )
    assert bi.history.get().history_change_reason == "Created"
    services.destination_update(actor=actor, destination=bi, name="BI table", kind="bi_table", table="doorstep_outputs")
    assert bi.history.first().history_change_reason == "Changed name"
    hook = _hook(world)
    assert services.destination_kinds_for(hook) == ["webhook"]
    with pytest.raises(PermissionDenied):
        services.destination_create(
            actor=_actor(world.governance), connector=world.crm_connector, name="Y", kind="bi_table", table="y"
        )


def test_successes_are_stamped_at_most_every_30_seconds_and_failures_always(world, django_assert_num_queries):
    from datetime import timedelta

    from apps.connectors.services import connector_outcome_record
    from apps.core import clock

    connector = world.churn_model
    connector_outcome_record(connector=connector, ok=True)
    with django_assert_num_queries(0):
        connector_outcome_record(connector=connector, ok=True)
    connector_outcome_record(connector=connector, ok=False, error="boom")
    connector.refresh_from_db()
    assert connector.health == "failing" and connector.last_error == "boom"
    connector_outcome_record(connector=connector, ok=True)  # recovery is saved at once, with history
    connector.refresh_from_db()
    assert connector.health == "ok" and connector.last_error == ""
    with clock.simulated(clock.now() + timedelta(seconds=31)):
        connector_outcome_record(connector=connector, ok=True)
        stamped = clock.now()
    connector.refresh_from_db()
    assert connector.last_success_at == stamped
