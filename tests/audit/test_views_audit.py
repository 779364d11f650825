"""Audit pages: the unified trail (history + events, keyset pages) and the one-page trace of an output."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.selectors import audit_trail
from apps.core.actors import Actor
from apps.delivery.services import feedback_record
from apps.reviews.services import review_task_decide
from apps.workflows.models import RecommendationEvent, Run
from apps.workflows.services import run_request

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def _login(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def delivered(world, queued_recommendation, django_capture_on_commit_callbacks):
    """A churn recommendation edited by the reviewer, delivered to the CRM, and accepted there."""
    recommendation = queued_recommendation(world.churn, text="Offer a 20% renewal discount and call the sponsor.")
    with django_capture_on_commit_callbacks(execute=True):
        review_task_decide(
            actor=Actor(user=world.reviewer),
            task=recommendation.review_task,
            decision="edit",
            edited_text="Call the sponsor this week.",
            seconds_spent=42,
        )
    feedback_record(
        actor=Actor(user=world.integrator), event_id="evt-1", recommendation_id=recommendation.pk, type="accepted"
    )
    recommendation.refresh_from_db()
    assert recommendation.status == "delivered"
    return recommendation


def test_trace_shows_every_stage_and_a_verified_chain(client, world, delivered):
    response = _login(client, world.governance).get(reverse("audit:trace", args=[delivered.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    for stage in ("1. Source record", "2. Model", "3. Policy verdict", "4. Review", "5. Delivery", "6. Feedback"):
        assert stage in body
    assert "trace-step" in body and "Chain verified ✓" in body
    assert "Low confidence" in body and "Large discount" not in body  # only the rule that fired
    assert "Edit and approve" in body and "42 s spent" in body and "reviewer" in body
    assert '<span class="diff-add">+Call the sponsor this week.</span>' in body
    assert 'class="diff-del">-Offer a 20% renewal discount' in body
    assert world.crm_tasks.name in body and "Delivered" in body
    assert "Accepted by integrator" in body


def test_tampered_event_breaks_the_chain_badge(client, world, delivered):
    event = delivered.events.get(sequence=2)
    RecommendationEvent.objects.filter(pk=event.pk).update(payload={"forged": True})
    body = _login(client, world.governance).get(reverse("audit:trace", args=[delivered.pk])).content.decode()
    assert "Chain broken at event 2" in body and "Chain verified" not in body


def test_trace_htmx_fragment_is_the_chain(client, world, delivered):
    response = _login(client, world.governance).get(reverse("audit:trace", args=[delivered.pk]), **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="chain"' in body
    assert "HX-Request" in response["Vary"]


def test_trace_is_404_for_whoever_cannot_see_the_use_case(client, world, outsider, queued_recommendation):
    recommendation = queued_recommendation(world.replies)
    url = reverse("audit:trace", args=[recommendation.pk])
    assert _login(client, outsider).get(url).status_code == 404
    assert _login(client, outsider).get(url, **HTMX).status_code == 404
    assert _login(client, world.reviewer).get(url).status_code == 404  # the reviewer has the churn queue only
    assert _login(client, world.executive).get(url).status_code == 200


def test_trail_merges_history_and_events(client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)
    world.churn.purpose = "Flag accounts at risk."
    world.churn._history_user = world.governance
    world.churn._change_reason = "Clearer purpose"
    world.churn.save()
    response = _login(client, world.governance).get(reverse("audit:trail"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Clearer purpose" in body and "<code>purpose</code>" in body and "Flag accounts at risk." in body
    assert "Queued for review" in body and reverse("audit:trace", args=[recommendation.pk]) in body
    assert world.churn_policy.name in body


def test_trail_filters_by_actor_and_type(client, world, queued_recommendation):
    queued_recommendation(world.churn)
    c = _login(client, world.admin)
    body = c.get(reverse("audit:trail"), {"type": "event:queued"}, **HTMX).content.decode()
    assert "<html" not in body and "Queued for review" in body and "Policy evaluated" not in body
    body = c.get(reverse("audit:trail"), {"type": "policyversion", "actor": "governance"}, **HTMX).content.decode()
    assert "Churn retention policy v1" in body and "Policy evaluated" not in body and "Nothing to show." not in body
    body = c.get(reverse("audit:trail"), {"type": "policyversion", "actor": "reviewer"}, **HTMX).content.decode()
    assert "Nothing to show." in body
    entries, _ = audit_trail(user=world.admin, actor="governance", type="policyversion")
    assert entries and {e.actor for e in entries} == {"governance"} and {e.source for e in entries} == {"policyversion"}


def test_outsider_sees_only_their_own_access_events(client, world, outsider, queued_recommendation):
    queued_recommendation(world.churn)
    _login(client, outsider).get(reverse("audit:trail"))
    entries, _ = audit_trail(user=outsider)
    assert entries and {(entry.source, entry.actor) for entry in entries} == {("access", outsider.username)}


def test_api_key_history_is_private_and_never_shows_the_digest(client, world):
    c = _login(client, world.integrator)
    c.post(reverse("connectors:api-key-create"), {"name": "Widget"})
    c.post(reverse("connectors:api-key-revoke", args=[world.integrator.api_keys.get().pk]))
    entries, _ = audit_trail(user=world.integrator, type="apikey")
    assert [e.action for e in entries] == ["changed", "created"]
    assert all(change["field"] != "key_digest" or change["new"] == "(hidden)" for e in entries for change in e.changes)
    assert audit_trail(user=world.governance, type="apikey")[0] == []


def test_keyset_pages_cover_the_trail_without_gaps_or_count(world, queued_recommendation):
    for _ in range(3):
        queued_recommendation(world.churn)
    everything, end = audit_trail(user=world.admin, limit=10_000)
    assert end is None and len(everything) > 30
    seen, cursor = [], ""
    with CaptureQueriesContext(connection) as queries:
        while True:
            page, cursor = audit_trail(user=world.admin, cursor=cursor, limit=7)
            seen += page
            if cursor is None:
                break
    assert [(e.source, e.pk) for e in seen] == [(e.source, e.pk) for e in everything]
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)


def test_trail_next_page_link(client, world, queued_recommendation):
    for _ in range(5):
        queued_recommendation(world.churn)
    c = _login(client, world.admin)
    body = c.get(reverse("audit:trail")).content.decode()
    assert "Older entries" in body and "cursor=" in body
    _, cursor = audit_trail(user=world.admin)
    response = c.get(reverse("audit:trail"), {"cursor": cursor}, **HTMX)
    assert response.status_code == 200 and 'id="trail-page"' in response.content.decode()
    assert c.get(reverse("audit:trail"), {"cursor": "garbage"}).status_code == 200


def test_trace_of_a_run_shows_source_record_and_model(client, world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = run_request(
            actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-0007", trigger=Run.Trigger.API
        )
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    c = _login(client, world.governance)
    body = c.get(reverse("audit:trace", args=[run.recommendation.pk])).content.decode()
    assert "Northwind CRM &amp; helpdesk / accounts" in body and "records ACC-0007" in body
    assert "data as of" in body and ("Fresh" in body or "Stale" in body)
    assert world.churn_model.name in body and "1 attempt" in body and "tokens in" in body
    assert "Context gathered" in body and "Chain verified ✓" in body
    detail = c.get(reverse("workflows:use-case-detail", args=[world.churn.slug])).content.decode()
    assert f"<td>{run.pk}</td>" in detail and " ms</td>" in detail and "Succeeded" in detail


def test_checklist_and_approval_requirement_changes_are_in_the_trail(world, outsider):
    from django.contrib.auth.models import Group

    from apps.governance.models import UseCaseControlItem
    from apps.governance.services import control_pack_load, use_case_checklist_apply, use_case_control_item_set
    from apps.policies.services import policy_approval_requirements_set

    officer = Actor(user=world.governance)
    pack = control_pack_load(actor=Actor(user=world.admin), slug="nist-ai-rmf").pack
    use_case_checklist_apply(actor=officer, use_case=world.replies, pack=pack)
    item = UseCaseControlItem.objects.filter(use_case=world.replies).first()
    use_case_control_item_set(actor=officer, item=item, status="met", note="Documented in the runbook")
    policy_approval_requirements_set(
        actor=officer, policy=world.replies_policy, requirements=[(Group.objects.get(name="Governance officer"), 1)]
    )
    checklist, _ = audit_trail(user=world.governance, type="usecasecontrolitem")
    assert checklist[0].subject.startswith(world.replies.name) and checklist[0].actor == "governance"
    assert {"field": "status", "old": "open", "new": "met"} in checklist[0].changes
    requirements, _ = audit_trail(user=world.governance, type="approvalrequirement")
    assert requirements[0].subject == f"{world.replies_policy.name}: 1 approval(s) from Governance officer"
    assert audit_trail(user=outsider, type="usecasecontrolitem") == ([], None)


def test_the_trace_as_json_through_the_api(world, delivered, outsider):
    from tests.factories import key_client

    url = reverse("api-recommendation-trace", args=[delivered.pk])
    body = key_client(world.governance, scopes=["read"]).get(url).json()
    assert body["id"] == delivered.pk and body["chain_intact"] is True
    assert body["policy"]["effect"] == "review" and [r["name"] for r in body["policy"]["rules_fired"]] == [
        "Low confidence"
    ]
    (verdict,) = body["review"]["verdicts"]
    assert (verdict["decision"], verdict["reviewer"], verdict["seconds_spent"]) == ("edit", "reviewer", 42)
    assert "+Call the sponsor this week." in verdict["diff"]
    assert body["deliveries"][0]["destination"] == world.crm_tasks.name and body["deliveries"][0]["external_id"]
    assert [e["type"] for e in body["events"]][-1] == "accepted"
    assert key_client(outsider).get(url).status_code == 404
    assert key_client(world.governance, scopes=["feedback:write"]).get(url).status_code == 403
