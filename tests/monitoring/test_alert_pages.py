"""The alerts page: alerts the user may see, acknowledge and resolve by whoever may change what they are about,
with who did it in the alert's history."""

import pytest
from django.urls import reverse

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied
from apps.monitoring import services
from apps.monitoring.models import Alert

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def alerts(world):
    crm = services.alert_raise(
        key="dataset-sync:accounts", kind="dataset_sync", title="Accounts sync failed", connector=world.crm_connector
    )
    churn = services.alert_raise(
        key="budget:churn", kind="budget", title="Churn budget reached", severity="critical", use_case=world.churn
    )
    system = services.alert_raise(key="broker", kind="broker", title="Broker unreachable")
    return crm, churn, system


def test_each_user_sees_the_alerts_about_what_they_may_see(client, world, alerts, outsider):
    crm, churn, system = alerts
    for user, seen in (
        (world.admin, {crm, churn, system}),
        (world.integrator, {crm, churn}),  # views the connector and the use case
        (world.executive, {churn}),
        (outsider, set()),
    ):
        client.force_login(user)
        body = client.get(reverse("monitoring:alert-list")).content.decode()
        for alert in alerts:
            assert (alert.title in body) == (alert in seen), (user, alert)


def test_acknowledge_and_resolve_by_htmx_with_history(client, world, alerts):
    crm = alerts[0]
    client.force_login(world.integrator)
    response = client.post(reverse("monitoring:alert-acknowledge", args=[crm.pk]), **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith(f'<tr id="alert-{crm.pk}"')
    assert "Acknowledged" in body and "by integrator" in body and ">Acknowledge<" not in body
    crm.refresh_from_db()
    assert crm.status == Alert.Status.ACKNOWLEDGED and crm.acknowledged_by == world.integrator
    body = client.post(reverse("monitoring:alert-resolve", args=[crm.pk]), **HTMX).content.decode()
    assert "Resolved" in body and "Resolved by hand" in body and ">Resolve<" not in body
    crm.refresh_from_db()
    assert crm.status == Alert.Status.RESOLVED and crm.resolved_at is not None
    reasons = list(crm.history.order_by("history_date").values_list("history_change_reason", "history_user"))
    assert reasons == [
        ("Raised", None),
        ("Acknowledged", world.integrator.pk),
        ("Resolved by hand", world.integrator.pk),
    ]
    open_page = client.get(reverse("monitoring:alert-list")).content.decode()
    resolved_page = client.get(reverse("monitoring:alert-list") + "?status=resolved").content.decode()
    assert crm.title not in open_page and crm.title in resolved_page


def test_viewer_without_change_cannot_act(client, world, alerts):
    crm, churn, _ = alerts
    client.force_login(world.executive)  # views the churn use case, may not change it
    body = client.get(reverse("monitoring:alert-list")).content.decode()
    assert churn.title in body and ">Acknowledge<" not in body
    assert client.post(reverse("monitoring:alert-acknowledge", args=[churn.pk]), **HTMX).status_code == 403
    assert client.post(reverse("monitoring:alert-resolve", args=[crm.pk]), **HTMX).status_code == 404  # not visible
    churn.refresh_from_db()
    assert churn.status == Alert.Status.OPEN
    with pytest.raises(PermissionDenied):
        services.alert_acknowledge(actor=Actor(user=world.executive), alert=churn)


def test_governance_acts_on_use_case_alerts(client, world, alerts):
    churn = alerts[1]
    client.force_login(world.governance)
    assert client.post(reverse("monitoring:alert-resolve", args=[churn.pk])).status_code == 302
    churn.refresh_from_db()
    assert churn.status == Alert.Status.RESOLVED


def test_acknowledging_twice_changes_nothing(world, alerts):
    crm = alerts[0]
    actor = Actor(user=world.integrator)
    services.alert_acknowledge(actor=actor, alert=crm)
    services.alert_acknowledge(actor=Actor(user=world.admin), alert=crm)
    crm.refresh_from_db()
    assert crm.acknowledged_by == world.integrator and crm.history.count() == 2


def test_anonymous_and_outsider_get_nothing(client, world, alerts, outsider):
    crm = alerts[0]
    assert client.get(reverse("monitoring:alert-list")).status_code == 302
    client.force_login(outsider)
    for name in ("monitoring:alert-acknowledge", "monitoring:alert-resolve"):
        assert client.post(reverse(name, args=[crm.pk]), **HTMX).status_code == 404
    crm.refresh_from_db()
    assert crm.status == Alert.Status.OPEN
