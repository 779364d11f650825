"""The audit trail narrowed by time and object, exported as CSV or JSON Lines; every export is recorded."""

import csv
import datetime as dt
import io
import json

import pytest
from django.urls import reverse

from apps.accounts.models import AccessEvent
from apps.core import clock

pytestmark = pytest.mark.django_db


def _body(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_filters_by_day_and_object(client, world, queued_recommendation):
    recommendation = queued_recommendation()
    client.force_login(world.admin)
    today = clock.now().date()
    page = client.get(reverse("audit:trail"), {"type": "event", "object_id": recommendation.pk, "since": today})
    entries = page.context["entries"]
    assert entries and {entry.object_id for entry in entries} == {recommendation.pk}
    later = client.get(reverse("audit:trail"), {"since": today + dt.timedelta(days=1)}).context["entries"]
    assert later == []
    bad = client.get(reverse("audit:trail"), {"since": today, "until": today - dt.timedelta(days=1)})
    assert bad.status_code == 400 and "To: The end is before the start." in bad.content.decode()


def test_csv_and_json_lines_exports_are_what_the_user_may_see_and_are_recorded(client, world, queued_recommendation):
    recommendation = queued_recommendation()
    client.force_login(world.reviewer)
    response = client.get(reverse("audit:trail-export", args=["csv"]), {"type": "event"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert rows and {row["object_id"] for row in rows} == {str(recommendation.pk)}
    lines = _body(client.get(reverse("audit:trail-export", args=["jsonl"]), {"object_id": recommendation.pk}))
    assert all(json.loads(line)["object_id"] == recommendation.pk for line in lines.splitlines())
    exports = AccessEvent.objects.filter(kind=AccessEvent.Kind.EXPORT, user=world.reviewer)
    assert exports.count() == 2 and "audit trail as csv" in exports.order_by("pk").first().detail
    client.force_login(world.outsider)
    rows = list(csv.DictReader(io.StringIO(_body(client.get(reverse("audit:trail-export", args=["csv"]))))))
    assert {(row["source"], row["actor"]) for row in rows} == {("Access event", "outsider")}  # their own only


def test_a_formula_in_a_cell_is_exported_as_text(client, world):
    from apps.core.actors import Actor
    from apps.workflows.services import use_case_settings_update

    use_case_settings_update(
        actor=Actor(user=world.governance), use_case=world.churn, values={"purpose": "x"}, reason="=HYPERLINK(1)"
    )
    client.force_login(world.admin)
    body = _body(client.get(reverse("audit:trail-export", args=["csv"]), {"type": "usecase"}))
    assert "'=HYPERLINK(1)" in body and ",=HYPERLINK" not in body


def test_bad_filters_are_named(client, world):
    client.force_login(world.admin)
    response = client.get(reverse("audit:trail-export", args=["csv"]), {"object_id": "abc"})
    assert response.status_code == 400 and "object_id" in response.json()["errors"]
    assert client.get("/audit/export/xml").status_code == 404


def test_logins_failed_logins_and_grants_are_in_the_trail(client, world):
    from django.contrib.auth.models import Group

    from apps.permissions.services import object_permission_grant

    client.post(reverse("login"), {"username": "reviewer", "password": "wrong"})
    client.post(reverse("login"), {"username": "reviewer", "password": world.password})
    object_permission_grant(group=Group.objects.create(name="Auditors"), codename="view_usecase", obj=world.churn)
    client.force_login(world.admin)
    entries = client.get(reverse("audit:trail"), {"type": "access"}).context["entries"]
    kinds = [(entry.actor, entry.event_type) for entry in entries]
    assert ("reviewer", "login_failed") in kinds and ("reviewer", "login") in kinds
    grant = next(entry for entry in entries if entry.event_type == "grant")
    assert grant.subject == f"view_usecase on use case #{world.churn.pk} to group Auditors"
    client.force_login(world.reviewer)
    own = client.get(reverse("audit:trail"), {"type": "access"}).context["entries"]
    assert own and {entry.actor for entry in own} == {"reviewer"}  # not the admin's or anyone else's
