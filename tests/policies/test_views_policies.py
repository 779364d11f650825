"""Policy pages: list, detail with versions and rules, maker-checker review and the rule tester."""

import json

import pytest
from django.urls import reverse

from apps.core.actors import Actor
from apps.policies.models import Approval, PolicyVersion
from apps.policies.services import policy_version_create, policy_version_submit

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def _login(client, user):
    client.force_login(user)
    return client


def _review_url(version):
    return reverse("policies:policy-version-review", args=[version.policy_id, version.pk])


def test_list_shows_active_version_and_versions_in_review(client, world):
    response = _login(client, world.executive).get(reverse("policies:policy-list"))
    assert response.status_code == 200
    body = response.content.decode()
    assert world.churn_policy.name in body and world.replies_policy.name in body
    assert "v1" in body and "1 in review" in body


def test_outsider_sees_no_policy_and_404s(client, world, outsider):
    c = _login(client, outsider)
    assert world.churn_policy.name not in c.get(reverse("policies:policy-list")).content.decode()
    detail = reverse("policies:policy-detail", args=[world.churn_policy.pk])
    assert c.get(detail).status_code == 404
    assert c.get(detail, **HTMX).status_code == 404
    assert c.post(reverse("policies:rule-test", args=[world.churn_policy.pk]), {"sample": "{}"}).status_code == 404
    assert c.post(_review_url(world.pending_version), {"decision": "approve", "comment": "x"}).status_code == 404


def test_detail_shows_versions_rules_and_approvals(client, world):
    response = _login(client, world.executive).get(reverse("policies:policy-detail", args=[world.replies_policy.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "In review" in body and "Active" in body
    assert "<code>signals.confidence &lt; 0.25</code>" in body  # the pending version's rule, in <code>
    assert "Require review" in body and "Block" in body
    assert "Matches the use-case risk assessment." in body  # governance's approval comment on v1


def test_executive_gets_no_approve_form(client, world):
    body = (
        _login(client, world.executive)
        .get(reverse("policies:policy-detail", args=[world.replies_policy.pk]))
        .content.decode()
    )
    assert _review_url(world.pending_version) not in body
    response = client.post(_review_url(world.pending_version), {"decision": "approve", "comment": "Looks fine"})
    assert response.status_code == 403
    assert "You do not have permission" in response.content.decode()
    assert not Approval.objects.filter(version=world.pending_version, approver=world.executive).exists()


def test_governance_approves_a_version_in_review(client, world, replayed):
    replayed(world.pending_version, world.admin)
    c = _login(client, world.governance)
    body = c.get(reverse("policies:policy-detail", args=[world.replies_policy.pk])).content.decode()
    assert _review_url(world.pending_version) in body
    response = c.post(
        _review_url(world.pending_version), {"decision": "approve", "comment": "Checked the replay."}, **HTMX
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and "You approved v2." in body and "Checked the replay." in body
    world.pending_version.refresh_from_db()
    assert world.pending_version.state == PolicyVersion.State.APPROVED


def test_comment_is_required(client, world):
    response = _login(client, world.governance).post(
        _review_url(world.pending_version), {"decision": "reject", "comment": "  "}, **HTMX
    )
    assert response.status_code == 200
    assert "Comment:" in response.content.decode()
    world.pending_version.refresh_from_db()
    assert world.pending_version.state == PolicyVersion.State.IN_REVIEW


def test_author_cannot_approve_own_version_through_the_page(client, world):
    governance = Actor(user=world.governance)
    version = policy_version_create(
        actor=governance,
        policy=world.churn_policy,
        rules=[{"name": "Everything to review", "condition": "true", "effect": "review"}],
    )
    policy_version_submit(actor=governance, version=version)
    c = _login(client, world.governance)
    body = c.get(reverse("policies:policy-detail", args=[world.churn_policy.pk])).content.decode()
    assert "You wrote this version; another approver must review it" in body
    assert _review_url(version) not in body

    response = c.post(_review_url(version), {"decision": "approve", "comment": "Mine, fine."}, **HTMX)
    assert response.status_code == 200
    assert "cannot approve or reject it" in response.content.decode()
    version.refresh_from_db()
    assert version.state == PolicyVersion.State.IN_REVIEW
    assert not version.approvals.exists()


def test_rule_test_shows_fired_rules_and_verdict(client, world):
    active = world.churn_policy.versions.get(state="active")
    sample = {"output": {"text": "Offer 20%"}, "context": {}, "action": {"discount_pct": 20}, "confidence": 0.5}
    response = _login(client, world.executive).post(
        reverse("policies:rule-test", args=[world.churn_policy.pk]),
        {"version": active.pk, "sample": json.dumps(sample)},
        **HTMX,
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and 'id="rule-test"' in body
    assert "Low confidence" in body and "Large discount" in body and "Stale account data" not in body
    assert "Verdict of v1" in body and "Review" in body


def test_rule_test_bad_json_is_a_field_error(client, world):
    response = _login(client, world.governance).post(
        reverse("policies:rule-test", args=[world.churn_policy.pk]), {"sample": "{not json"}, **HTMX
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "Sample: Not valid JSON" in body and "is-invalid" in body


def test_rule_test_without_htmx_renders_the_page(client, world):
    response = _login(client, world.governance).post(
        reverse("policies:rule-test", args=[world.churn_policy.pk]), {"sample": '{"output": []}'}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" in body and "&quot;output&quot; must be an object." in body
