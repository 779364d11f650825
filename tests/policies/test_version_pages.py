"""The version page (review, schedule, emergency), the diff page, approval requirements and history."""

import datetime as dt

from django.contrib.auth.models import Group
from django.urls import reverse

from apps.core import clock
from apps.core.actors import Actor
from apps.policies.models import ApprovalRequirement, PolicyVersion
from apps.policies.selectors import policy_version_diff
from apps.policies.services import policy_version_create, policy_version_review, policy_version_submit

HTMX = {"HTTP_HX_REQUEST": "true"}


def _url(name, version):
    return reverse(f"policies:{name}", args=[version.policy_id, version.pk])


def test_diff_names_rules_added_removed_and_changed(world):
    v1 = PolicyVersion.objects.get(policy=world.replies_policy, state="active")
    rules = list(v1.rules.order_by("order").values("name", "condition", "effect", "description"))
    rules = [
        {**rules[1], "condition": "signals.confidence < 0.3"},  # moved up and changed
        rules[0],
        *rules[3:],  # the privacy rule removed
        {"name": "Costly", "condition": "signals.cost > 1.0", "effect": "review"},
    ]
    v3 = policy_version_create(actor=Actor(user=world.admin), policy=world.replies_policy, rules=rules)
    changes = {c.name: (c.status, c.fields) for c in policy_version_diff(v3, v1)}
    assert changes == {
        "Weak match": ("changed", ["condition", "order"]),
        "Refund promise": ("changed", ["order"]),
        "Contact details in reply": ("unchanged", []),
        "Costly": ("added", []),
        "Privacy request": ("removed", []),
    }
    response = _client(world.executive).get(_url("policy-version-diff", v3), {"against": v1.pk})
    body = response.content.decode()
    assert response.status_code == 200 and "v3 against v1" in body
    assert "Changed: condition, order" in body and "Added" in body and "Removed" in body
    fragment = _client(world.executive).get(_url("policy-version-diff", v3), {"against": v1.pk}, **HTMX)
    assert "<html" not in fragment.content.decode() and 'id="diff"' in fragment.content.decode()


def _client(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def test_version_page_shows_changes_and_lets_an_approver_review(world, replayed):
    replayed(world.pending_version, world.admin)
    c = _client(world.governance)
    body = c.get(_url("policy-version-detail", world.pending_version)).content.decode()
    assert "Changes against v1 (active)" in body and "Weak match</strong>" not in body
    assert "Weak match (condition)" in body
    assert _url("policy-version-review", world.pending_version) in body
    response = c.post(_url("policy-version-review", world.pending_version), {"decision": "approve", "comment": "ok"})
    assert response.status_code == 302
    world.pending_version.refresh_from_db()
    assert world.pending_version.state == "approved"


def test_schedule_and_activate_from_the_page(world, replayed):
    version = world.pending_version
    replayed(version, world.admin)
    policy_version_review(actor=Actor(user=world.governance), version=version, decision="approve", comment="ok")
    c = _client(world.governance)
    response = c.post(_url("policy-version-schedule", version), {"effective_from": "2001-01-01T10:00"})
    assert response.status_code == 200 and "The effective date lies in the past" in response.content.decode()
    when = (clock.now() + dt.timedelta(days=1)).replace(second=0, microsecond=0)
    response = c.post(_url("policy-version-schedule", version), {"effective_from": when.strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.effective_from == when
    assert "effective from" in c.get(reverse("policies:policy-detail", args=[version.policy_id])).content.decode()
    assert c.post(_url("policy-version-activate", version)).status_code == 302
    version.refresh_from_db()
    assert version.state == "active"


def test_emergency_from_the_page_is_flagged_on_list_and_detail(world):
    draft = policy_version_create(
        actor=Actor(user=world.admin),
        policy=world.churn_policy,
        rules=[{"name": "Stop", "condition": "true", "effect": "block"}],
    )
    c = _client(world.governance)
    response = c.post(_url("policy-version-emergency", draft), {"reason": "", "hours": "200"})
    body = response.content.decode()
    assert response.status_code == 200 and "Reason: This field is required." in body and "Hours:" in body
    response = c.post(_url("policy-version-emergency", draft), {"reason": "Prices leaking", "hours": "2"})
    assert response.status_code == 302
    assert "Emergency change" in c.get(reverse("policies:policy-list")).content.decode()
    detail = c.get(reverse("policies:policy-detail", args=[world.churn_policy.pk])).content.decode()
    assert "Emergency change active:" in detail and "Prices leaking" in detail
    # The author gets no emergency form, and a post is refused.
    admin = _client(world.admin)
    assert "Activate as emergency" not in admin.get(_url("policy-version-detail", draft)).content.decode()


def test_submit_from_the_page(world):
    draft = policy_version_create(
        actor=Actor(user=world.governance),
        policy=world.churn_policy,
        rules=[{"name": "Stop", "condition": "true", "effect": "block"}],
    )
    c = _client(world.governance)
    assert c.post(_url("policy-version-submit", draft)).status_code == 302
    draft.refresh_from_db()
    assert draft.state == "in_review"
    response = c.post(_url("policy-version-submit", draft))
    assert response.status_code == 200 and "Only a draft can be submitted" in response.content.decode()


def test_viewers_cannot_act_on_versions(world):
    draft = policy_version_create(
        actor=Actor(user=world.admin),
        policy=world.churn_policy,
        rules=[{"name": "x", "condition": "true", "effect": "block"}],
    )
    c = _client(world.executive)
    body = c.get(_url("policy-version-detail", draft)).content.decode()
    assert "Submit for approval" not in body and "Activate as emergency" not in body
    assert c.post(_url("policy-version-submit", draft)).status_code == 403
    assert c.post(_url("policy-version-emergency", draft), {"reason": "x", "hours": "1"}).status_code == 403
    draft.refresh_from_db()
    assert draft.state == "draft" and not draft.emergency


def test_requirements_form(world):
    governance = world.governance.groups.get()
    security = Group.objects.create(name="Security")
    url = reverse("policies:policy-requirements", args=[world.churn_policy.pk])
    form = {"req-TOTAL_FORMS": "2", "req-INITIAL_FORMS": "0", "req-0-group": governance.pk, "req-0-count": "1"}
    c = _client(world.governance)
    response = c.post(url, {**form, "req-1-group": security.pk, "req-1-count": "1"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and 'id="requirements"' in body and "<html" not in body
    assert "Security has 0 active members; 1 approvals from it could never be given." in body
    world.executive.groups.add(security)
    response = c.post(url, {**form, "req-1-group": security.pk, "req-1-count": "1"})
    assert response.status_code == 302
    assert set(ApprovalRequirement.objects.filter(policy=world.churn_policy).values_list("group__name", "count")) == {
        (governance.name, 1),
        ("Security", 1),
    }
    detail = c.get(reverse("policies:policy-detail", args=[world.churn_policy.pk])).content.decode()
    assert f"1 of {governance.name} + 1 of Security" in detail
    assert "Approval requirements changed" in detail  # in the history table
    assert _client(world.executive).post(url, form).status_code == 403


def test_history_lists_version_changes_with_who(world):
    governance = Actor(user=world.governance)
    version = policy_version_create(
        actor=governance, policy=world.churn_policy, rules=[{"name": "x", "condition": "true", "effect": "block"}]
    )
    policy_version_submit(actor=governance, version=version)
    body = (
        _client(world.executive).get(reverse("policies:policy-detail", args=[world.churn_policy.pk])).content.decode()
    )
    history = body[body.index('id="history"') :]
    assert "Churn retention policy v2" in history and "governance" in history and "Changed" in history
