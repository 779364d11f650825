"""The author of a version never approves it, whichever door they use: page (test_views_policies), API, command."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.actors import Actor
from apps.permissions.services import api_key_create
from apps.policies.models import PolicyVersion


def _reviews_url(version):
    return reverse("api-policy-version-review", args=[version.policy_id, version.pk])


def _api(user):
    client = APIClient()
    client.force_login(user)
    return client


def test_author_cannot_approve_through_the_api(world, replayed):
    version = world.pending_version  # written by the admin
    replayed(version, world.governance)
    response = _api(world.admin).post(_reviews_url(version), {"decision": "approve", "comment": "Mine."}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert "cannot approve or reject it (maker-checker)" in response.json()["detail"]
    version.refresh_from_db()
    assert version.state == PolicyVersion.State.IN_REVIEW and not version.approvals.exists()


def test_another_officer_approves_through_the_api(world, replayed):
    version = world.pending_version
    replayed(version, world.admin)
    response = _api(world.governance).post(
        _reviews_url(version), {"decision": "approve", "comment": "Replay checked."}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "approved"
    assert body["approvals"] == [
        {
            "approver": "governance",
            "decision": "approve",
            "comment": "Replay checked.",
            "at": body["approvals"][0]["at"],
        }
    ]


def test_api_refuses_bad_input_and_unreplayed_approval_with_json(world):
    client = _api(world.governance)
    response = client.post(_reviews_url(world.pending_version), {"decision": "maybe"}, format="json")
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"decision", "comment"}
    response = client.post(_reviews_url(world.pending_version), {"decision": "approve", "comment": "ok"}, format="json")
    assert response.status_code == 400 and response.json()["error"] == "replay_required"
    assert not world.pending_version.approvals.exists()


def test_api_reads_are_limited_to_visible_policies(world, outsider):
    version_url = reverse("api-policy-version-detail", args=[world.replies_policy.pk, world.pending_version.pk])
    body = _api(world.executive).get(version_url).json()
    assert body["number"] == 2 and body["state"] == "in_review"
    assert [r["condition"] for r in body["rules"]][1] == "signals.confidence < 0.25"
    assert world.replies_policy.name in str(_api(world.executive).get(reverse("api-policy-list")).json())
    client = _api(outsider)
    assert client.get(version_url).status_code == 404
    assert client.get(reverse("api-policy-detail", args=[world.replies_policy.pk])).status_code == 404
    assert client.get(reverse("api-policy-list")).json()["results"] == []
    response = client.post(_reviews_url(world.pending_version), {"decision": "reject", "comment": "x"}, format="json")
    assert response.status_code == 404 and not world.pending_version.approvals.exists()


def test_a_key_limited_to_scopes_cannot_review(world, replayed):
    replayed(world.pending_version, world.admin)
    _, raw = api_key_create(actor=Actor(user=world.governance), user=world.governance, name="ro", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get(reverse("api-policy-list")).status_code == 200
    response = client.post(_reviews_url(world.pending_version), {"decision": "approve", "comment": "ok"}, format="json")
    assert response.status_code == 403 and not world.pending_version.approvals.exists()


def test_author_cannot_approve_through_the_command(world, replayed):
    version = world.pending_version
    replayed(version, world.governance)
    with pytest.raises(CommandError, match="maker-checker"):
        call_command(
            "policy_version_review",
            "--version",
            str(version.pk),
            "--user",
            "admin",
            "--decision",
            "approve",
            "--comment",
            "Mine.",
        )
    version.refresh_from_db()
    assert version.state == PolicyVersion.State.IN_REVIEW and not version.approvals.exists()


def test_the_command_goes_through_the_same_rules(world, replayed):
    version = world.pending_version
    args = ["policy_version_review", "--version", str(version.pk), "--decision", "approve", "--comment", "ok"]
    with pytest.raises(CommandError, match="Replay this version"):
        call_command(*args, "--user", "governance")
    with pytest.raises(CommandError, match="No active user"):
        call_command(*args, "--user", "nobody")
    replayed(version, world.admin)
    out = io.StringIO()
    call_command(*args, "--user", "governance", stdout=out)
    assert out.getvalue().strip() == "Support reply policy v2: Approved"
    assert version.history.first().history_user == world.governance
