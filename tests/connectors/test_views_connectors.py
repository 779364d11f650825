"""The integrator's pages: connectors with health and a connection test, one connector's page (settings, browse,
grants, history), datasets and destinations; the user's own API keys."""

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from apps.connectors.models import Connector
from apps.core.permissions import has_object_permission
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


@pytest.fixture
def viewer(world):
    """A user whose group may only view the CRM connector."""
    from django.contrib.auth.models import Group

    from apps.permissions.services import object_permission_grant

    group = Group.objects.create(name="Connector viewers")
    object_permission_grant(group=group, codename="view_connector", obj=world.crm_connector)
    world.outsider.groups.add(group)
    return world.outsider


def test_a_view_only_user_cannot_test(client, world, viewer):
    c = _login(client, viewer)
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
    assert response.status_code == 200 and "Connected to SQLite" in response.content.decode()


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


# --- list: filter, new button, alerts ---------------------------------------------------------------------------


def test_list_filters_by_kind_links_to_pages_and_counts_open_alerts(client, world):
    from apps.monitoring.services import alert_raise

    alert_raise(key="dataset-sync:x", kind="dataset_sync", title="Sync failed", connector=world.crm_connector)
    c = _login(client, world.integrator)
    body = c.get(reverse("connectors:connector-list")).content.decode()
    assert reverse("connectors:connector-create") in body
    assert reverse("connectors:connector-detail", args=[world.crm_connector.pk]) in body
    assert "1 open" in body
    response = c.get(reverse("connectors:connector-list") + "?kind=model_sklearn", **HTMX)
    body = response.content.decode()
    assert "<html" not in body and world.churn_model.name in body and escape(world.crm_connector.name) not in body
    assert "HX-Request" in response["Vary"]
    body = c.get(reverse("connectors:connector-list") + "?kind=bogus").content.decode()
    assert escape(world.crm_connector.name) in body  # an unknown kind is no filter, not an error


def test_governance_sees_no_new_connector_button(client, world):
    body = _login(client, world.governance).get(reverse("connectors:connector-list")).content.decode()
    assert reverse("connectors:connector-create") not in body


# --- detail ----------------------------------------------------------------------------------------------------


def test_detail_shows_settings_health_datasets_destinations_grants_and_history(client, world):
    body = _login(client, world.integrator).get(reverse("connectors:connector-detail", args=[world.crm_connector.pk]))
    body = body.content.decode()
    assert "Database URL" in body and "set (version 1)" in body
    assert str(world.source_db) not in body and world.crm_connector.secrets_ciphertext not in body
    assert reverse("connectors:dataset-detail", args=[world.crm_connector.pk, world.accounts.pk]) in body
    assert reverse("connectors:destination-detail", args=[world.crm_connector.pk, world.crm_tasks.pk]) in body
    assert "1 day" in body  # the Accounts freshness SLA
    assert "Group Integrator" in body and "Group Governance officer" in body
    assert "Test connection" in body and "List tables and objects" in body and "Edit settings" in body
    assert "History" in body and "Ada Admin" in body  # the demo was built by the admin


def test_view_only_user_sees_the_page_but_no_actions(client, world, viewer):
    body = _login(client, viewer).get(reverse("connectors:connector-detail", args=[world.crm_connector.pk]))
    body = body.content.decode()
    assert escape(world.crm_connector.name) in body
    for action in ("Test connection", "List tables and objects", "Edit settings", "New dataset", ">Grant<"):
        assert action not in body, action


def test_anonymous_is_sent_to_log_in(client, world):
    for url in (
        reverse("connectors:connector-detail", args=[world.crm_connector.pk]),
        reverse("connectors:connector-create") + "?kind=sql",
        reverse("connectors:dataset-detail", args=[world.crm_connector.pk, world.accounts.pk]),
    ):
        response = client.get(url, **HTMX)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_outsider_gets_404_on_every_connector_page(client, world, outsider):
    c = _login(client, outsider)
    pk = world.crm_connector.pk
    for name, args in (
        ("connectors:connector-detail", [pk]),
        ("connectors:connector-edit", [pk]),
        ("connectors:connector-browse", [pk]),
        ("connectors:dataset-detail", [pk, world.accounts.pk]),
        ("connectors:destination-detail", [pk, world.crm_tasks.pk]),
        ("connectors:dataset-create", [pk]),
    ):
        assert c.get(reverse(name, args=args), **HTMX).status_code == 404, name


def test_test_from_the_detail_page_swaps_the_health_panel(client, world):
    response = _login(client, world.integrator).post(
        reverse("connectors:connector-test", args=[world.crm_connector.pk]), HTTP_HX_TARGET="connector-health", **HTMX
    )
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<section id="connector-health"')
    assert "Test passed" in body and "Healthy" in body


# --- use-only and change permissions -----------------------------------------------------------------------------


@pytest.fixture
def operator(world):
    """A user whose group may view and use the CRM connector, not edit it."""
    from django.contrib.auth.models import Group

    from apps.permissions.services import object_permission_grant

    group = Group.objects.create(name="Operators")
    for codename in ("view_connector", "use_connector"):
        object_permission_grant(group=group, codename=codename, obj=world.crm_connector)
    world.outsider.groups.add(group)
    return world.outsider


def test_use_only_user_can_test_and_browse_but_not_edit(client, world, operator):
    c = _login(client, operator)
    pk = world.crm_connector.pk
    body = c.get(reverse("connectors:connector-detail", args=[pk])).content.decode()
    assert "Test connection" in body and "Edit settings" not in body
    assert "Test passed" in c.post(reverse("connectors:connector-test", args=[pk]), **HTMX).content.decode()
    assert "accounts" in c.get(reverse("connectors:connector-browse", args=[pk]), **HTMX).content.decode()
    assert c.get(reverse("connectors:connector-edit", args=[pk])).status_code == 403
    assert c.post(reverse("connectors:connector-edit", args=[pk]), {"name": "Mine"}, **HTMX).status_code == 403
    assert c.get(reverse("connectors:dataset-create", args=[pk])).status_code == 403
    response = c.post(
        reverse("connectors:connector-access", args=[pk]),
        {"group": operator.groups.get().pk, "codename": "change_connector", "action": "grant"},
        **HTMX,
    )
    assert response.status_code == 403
    world.crm_connector.refresh_from_db()
    assert world.crm_connector.name == "Northwind CRM & helpdesk"


def test_change_user_edits_and_the_history_says_who_and_what(client, world):
    c = _login(client, world.integrator)
    url = reverse("connectors:connector-edit", args=[world.crm_connector.pk])
    body = c.get(url).content.decode()
    assert "Set (version 1) — leave blank to keep." in body and str(world.source_db) not in body
    response = c.post(url, {"name": "Northwind CRM", "description": "Demo copy", "sec_url": ""})
    assert response.status_code == 302
    body = c.get(reverse("connectors:connector-detail", args=[world.crm_connector.pk])).content.decode()
    assert "Ian Integrator</strong> changed: Changed name; description" in body
    assert "<del>Northwind CRM &amp; helpdesk</del> → <ins>Northwind CRM</ins>" in body
    world.crm_connector.refresh_from_db()
    assert world.crm_connector.secrets_version == 1 and world.crm_connector.secrets["url"].endswith("sources.sqlite3")


# --- browse ----------------------------------------------------------------------------------------------------


def test_browse_lists_tables_then_fields(client, world):
    c = _login(client, world.integrator)
    url = reverse("connectors:connector-browse", args=[world.crm_connector.pk])
    body = c.get(url, **HTMX).content.decode()
    assert body.lstrip().startswith('<div id="browse">') and "accounts" in body and "tickets" in body
    body = c.get(url + "?object=accounts", **HTMX).content.decode()
    assert body.lstrip().startswith('<div id="browse-fields"') and "account_id" in body and "nps" in body
    body = c.get(url + "?object=no_such_table", **HTMX).content.decode()
    assert "Cannot list fields" in body and "no_such_table" in body


def test_browse_of_a_broken_source_is_an_inline_error(client, world):
    from apps.connectors import services
    from apps.core.actors import Actor

    services.connector_update(
        actor=Actor(user=world.integrator),
        connector=world.crm_connector,
        name=world.crm_connector.name,
        description=world.crm_connector.description,
        config={},
        secrets={"url": f"sqlite:///{world.demo_dir}/gone.sqlite3"},
    )
    response = _login(client, world.integrator).get(
        reverse("connectors:connector-browse", args=[world.crm_connector.pk]), **HTMX
    )
    body = response.content.decode()
    assert response.status_code == 200 and "Cannot list tables:" in body and "missing or unreadable" in body
    assert f"sqlite:///{world.demo_dir}/gone.sqlite3" not in body


# --- who may use or edit it -------------------------------------------------------------------------------------


def test_grant_and_revoke_from_the_page(client, world):
    from django.contrib.auth.models import Group

    reviewers = Group.objects.get(name="Reviewer")
    c = _login(client, world.integrator)
    url = reverse("connectors:connector-access", args=[world.crm_connector.pk])
    body = c.post(url, {"group": reviewers.pk, "codename": "use_connector", "action": "grant"}, **HTMX).content.decode()
    assert body.lstrip().startswith('<section id="access"') and "Use granted to Reviewer." in body
    assert "Group Reviewer" in body
    assert has_object_permission(world.reviewer, "use_connector", world.crm_connector)
    body = c.post(
        url, {"group": reviewers.pk, "codename": "view_connector", "action": "revoke"}, **HTMX
    ).content.decode()
    assert "View revoked from Reviewer." in body and "Group Reviewer" not in body
    assert not has_object_permission(world.reviewer, "view_connector", world.crm_connector)
    body = c.post(url, {"group": 99999, "codename": "use_connector", "action": "grant"}, **HTMX).content.decode()
    assert "Group: Select a valid choice." in body
    history = c.get(reverse("connectors:connector-detail", args=[world.crm_connector.pk])).content.decode()
    assert "Granted use to group Reviewer" in history and "Revoked view to group Reviewer" in history


# --- datasets ---------------------------------------------------------------------------------------------------


def test_dataset_create_with_a_table_select_and_clear_errors(client, world):
    c = _login(client, world.integrator)
    url = reverse("connectors:dataset-create", args=[world.crm_connector.pk])
    body = c.get(url).content.decode()
    assert '<select name="table"' in body and '<option value="accounts">accounts</option>' in body
    data = {
        "name": "Fresh accounts",
        "table": "accounts",
        "key_field": "account_id",
        "updated_at_field": "updated_at",
        "freshness_sla": "a while",
        "stale_action": "block",
        "quality_rules": '{"required": ["arr"',
        "mode": "live",
    }
    body = c.post(url, data, **HTMX).content.decode()
    assert "Freshness SLA: Enter a duration like 24h, 3d, 90m or HH:MM:SS." in body
    assert "Quality rules: Not valid JSON" in body
    body = c.post(url, {**data, "table": "nope", "freshness_sla": "3d", "quality_rules": ""}, **HTMX).content.decode()
    assert "Table or object: Choose one of the source&#x27;s tables." in body
    response = c.post(
        url, {**data, "freshness_sla": "36h", "quality_rules": '{"required": ["arr"]}', "store_values": "on"}, **HTMX
    )
    dataset = world.crm_connector.datasets.get(name="Fresh accounts")
    assert response["HX-Redirect"] == reverse("connectors:dataset-detail", args=[world.crm_connector.pk, dataset.pk])
    assert dataset.freshness_sla.total_seconds() == 36 * 3600 and dataset.stale_action == "block"
    assert dataset.quality_rules == {"required": ["arr"]} and dataset.store_values
    body = c.get(reverse("connectors:dataset-detail", args=[world.crm_connector.pk, dataset.pk])).content.decode()
    assert 'value="36h"' in body and "Ian Integrator</strong> created" in body


def test_dataset_page_for_a_viewer_and_a_change(client, world):
    url = reverse("connectors:dataset-detail", args=[world.crm_connector.pk, world.accounts.pk])
    body = _login(client, world.governance).get(url).content.decode()
    assert "Contract" in body and "<form" not in body.split('id="dataset-form"')[1].split("</section>")[0]
    assert client.post(url, {"name": "X"}, **HTMX).status_code == 403
    c = _login(client, world.integrator)
    data = {
        "name": "Accounts",
        "table": "accounts",
        "key_field": "account_id",
        "updated_at_field": "updated_at",
        "freshness_sla": "12:00:00",
        "stale_action": "review",
        "quality_rules": '{"required": ["arr", "nps"]}',
        "mode": "live",
        "store_values": "on",
    }
    assert "HX-Redirect" in c.post(url, data, **HTMX)
    world.accounts.refresh_from_db()
    assert world.accounts.freshness_sla.total_seconds() == 12 * 3600
    assert "Changed freshness_sla" in c.get(url).content.decode()


def test_cached_dataset_syncs_now_from_its_page(client, world):
    c = _login(client, world.integrator)
    world.accounts.mode = "cached"
    world.accounts.save()
    url = reverse("connectors:dataset-sync", args=[world.crm_connector.pk, world.accounts.pk])
    body = c.post(url, **HTMX).content.decode()
    assert body.lstrip().startswith('<section id="syncs"') and "Synced:" in body and "Succeeded" in body
    world.accounts.refresh_from_db()
    assert world.accounts.last_synced_at is not None and world.accounts.records.exists()


def test_file_dataset_upload_shows_row_errors_and_writes_nothing(client, world):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.connectors import services
    from apps.core.actors import Actor

    actor = Actor(user=world.integrator)
    files = services.connector_create(actor=actor, kind="file", name="Uploads", config={"format": "csv"}, secrets={})
    dataset = services.dataset_create(
        actor=actor,
        connector=files,
        name="Leads",
        table="leads",
        key_field="lead_id",
        quality_rules={"required": ["score"]},
    )
    c = _login(client, world.integrator)
    url = reverse("connectors:dataset-upload", args=[files.pk, dataset.pk])
    bad = SimpleUploadedFile("leads.csv", b"lead_id,score\nL1,5\nL2,\n", content_type="text/csv")
    body = c.post(url, {"file": bad}, **HTMX).content.decode()
    assert "Nothing was written" in body and "Rows that failed the checks" in body and "score" in body
    assert not dataset.records.exists()
    good = SimpleUploadedFile("leads.csv", b"lead_id,score\nL1,5\nL2,7\n", content_type="text/csv")
    body = c.post(url, {"file": good}, **HTMX).content.decode()
    assert "Uploaded: 2 rows read, 2 written." in body and dataset.records.count() == 2
    body = c.post(url, {}, **HTMX).content.decode()
    assert "File: This field is required." in body


# --- destinations -----------------------------------------------------------------------------------------------


def test_destination_create_and_edit(client, world):
    c = _login(client, world.integrator)
    url = reverse("connectors:destination-create", args=[world.crm_connector.pk])
    body = c.get(url).content.decode()
    assert "subject_column" in body and '<option value="webhook"' not in body  # only kinds this connector serves
    body = c.post(
        url, {"name": "Notes", "kind": "writeback", "table": "crm_tasks", "config": "[1, 2]"}, **HTMX
    ).content.decode()
    assert "Mapping: The mapping must be a JSON object." in body
    body = c.post(
        url,
        {"name": "Notes", "kind": "writeback", "table": "crm_tasks", "config": '{"subject_column": "account_id"}'},
        **HTMX,
    )
    assert "Mapping: text_column is required" in body.content.decode()
    response = c.post(
        url,
        {
            "name": "Notes",
            "kind": "writeback",
            "table": "crm_tasks",
            "config": '{"subject_column": "account_id", "text_column": "body"}',
        },
        **HTMX,
    )
    destination = world.crm_connector.destinations.get(name="Notes")
    assert response["HX-Redirect"] == reverse(
        "connectors:destination-detail", args=[world.crm_connector.pk, destination.pk]
    )
    detail = reverse("connectors:destination-detail", args=[world.crm_connector.pk, destination.pk])
    response = c.post(
        detail,
        {
            "name": "Task notes",
            "kind": "writeback",
            "table": "crm_tasks",
            "config": '{"subject_column": "account_id", "text_column": "body"}',
        },
    )
    assert response.status_code == 302
    body = c.get(detail).content.decode()
    assert "Changed name" in body and "<del>Notes</del> → <ins>Task notes</ins>" in body
    assert _login(client, world.governance).post(detail, {"name": "X"}, **HTMX).status_code == 403
