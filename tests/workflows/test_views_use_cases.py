"""Use-case pages: the list with its AI controls scorecard, one use case, and what each persona sees."""

import pytest
from django.urls import reverse

from apps.connectors.models import Connector
from apps.core.actors import Actor
from apps.policies.services import policy_version_create, policy_version_submit
from apps.workflows.controls import use_case_controls, with_control_data
from apps.workflows.models import UseCase

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def _client(client, user):
    client.force_login(user)
    return client


def _controls(use_case):
    return {c.key: c for c in use_case_controls(with_control_data(UseCase.objects.filter(pk=use_case.pk)).get())}


def test_anonymous_is_sent_to_login(client, world):
    response = client.get(reverse("workflows:use-case-list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_governance_sees_use_cases_with_scorecard_and_awaiting_panel(client, world):
    response = _client(client, world.governance).get(reverse("workflows:use-case-list"))
    assert response.status_code == 200
    body = response.content.decode()
    assert world.churn.name in body and world.replies.name in body
    assert "AI controls" in body and "Systems of record" in body
    # The demo has a replies-policy version by the admin waiting for governance.
    assert "Policy versions awaiting your approval" in body
    assert f"{world.replies_policy.name} v{world.pending_version.number}" in body
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_list_htmx_returns_only_the_table(client, world):
    response = _client(client, world.governance).get(reverse("workflows:use-case-list"), {"status": "pilot"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="use-case-table"' in body
    assert world.replies.name in body and world.churn.name not in body


def test_outsider_sees_nothing_and_gets_404s(client, world, outsider):
    c = _client(client, outsider)
    response = c.get(reverse("workflows:use-case-list"))
    assert response.status_code == 200
    assert world.churn.name not in response.content.decode()
    assert "Nothing waits for you" in response.content.decode()
    assert c.get(reverse("workflows:use-case-detail", args=[world.churn.slug])).status_code == 404
    assert c.get(reverse("workflows:use-case-detail", args=[world.churn.slug]), **HTMX).status_code == 404


def test_reviewer_sees_only_their_use_case(client, world):
    c = _client(client, world.reviewer)
    body = c.get(reverse("workflows:use-case-list")).content.decode()
    assert world.churn.name in body and world.replies.name not in body
    assert c.get(reverse("workflows:use-case-detail", args=[world.replies.slug])).status_code == 404


def test_executive_views_detail_with_configuration_and_activity(client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)
    response = _client(client, world.executive).get(reverse("workflows:use-case-detail", args=[world.churn.slug]))
    assert response.status_code == 200
    body = response.content.decode()
    assert world.accounts.name in body and "freshness SLA 1 day" in body  # dataset and its freshness SLA
    assert world.churn_model.name in body and world.churn_fallback.name in body
    assert world.churn_policy.name in body and "v1 active" in body
    assert world.churn_queue.name in body and world.crm_tasks.name in body
    assert reverse("audit:trace", args=[recommendation.pk]) in body
    assert "7/7 in place" in body


def test_detail_htmx_fragment_is_the_activity(client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)
    response = _client(client, world.governance).get(
        reverse("workflows:use-case-detail", args=[world.churn.slug]), **HTMX
    )
    body = response.content.decode()
    assert 'id="activity"' in body and "<html" not in body and "scorecard" not in body
    assert recommendation.subject_key in body


def test_demo_use_cases_pass_all_controls(world):
    assert all(c.passed for c in _controls(world.churn).values())


def test_scorecard_reasons_name_what_is_missing(client, world):
    world.churn.fallback_endpoint = None
    world.churn.hourly_cost = 0
    world.churn.save()
    world.churn.destinations.clear()
    world.accounts.freshness_sla = None
    world.accounts.save()
    controls = _controls(world.churn)
    assert not controls["workflow"].passed and "No fallback model endpoint" in controls["workflow"].reason
    assert not controls["delivery"].passed and controls["delivery"].reason == "No destination"
    assert not controls["data"].passed and "No freshness SLA" in controls["data"].reason
    assert not controls["monitoring"].passed and "ROI baseline" in controls["monitoring"].reason
    assert controls["systems"].passed and controls["policy"].passed and controls["access"].passed

    body = (
        _client(client, world.governance)
        .get(reverse("workflows:use-case-detail", args=[world.churn.slug]))
        .content.decode()
    )
    assert "No fallback model endpoint" in body and "3/7 in place" in body


def test_failing_connector_queue_without_reviewers_and_policy_without_active_version(world):
    Connector.objects.filter(pk=world.crm_connector.pk).update(health=Connector.Health.FAILING)
    world.churn_queue.reviewqueuegroupobjectpermission_set.all().delete()
    world.churn.policy.versions.update(state="retired")
    controls = _controls(world.churn)
    assert "is failing" in controls["systems"].reason and not controls["systems"].passed
    assert "Nobody is granted review" in controls["access"].reason
    assert "has no active version" in controls["policy"].reason
    # Without the prefetched data the function queries and agrees.
    fresh = UseCase.objects.get(pk=world.churn.pk)
    assert [c.passed for c in use_case_controls(fresh)] == [c.passed for c in controls.values()]


def test_list_queries_do_not_grow_with_use_cases(client, world, django_assert_max_num_queries):
    for index in range(10):
        clone = UseCase.objects.create(
            slug=f"clone-{index}",
            name=f"Clone {index}",
            business_unit="Sales",
            owner=world.governance,
            source_dataset=world.accounts,
            model_endpoint=world.churn_model,
            policy=world.churn_policy,
            review_queue=world.churn_queue,
        )
        clone.destinations.add(world.crm_tasks)
    c = _client(client, world.admin)
    with django_assert_max_num_queries(8):
        response = c.get(reverse("workflows:use-case-list"))
    assert response.content.decode().count("Clone ") >= 10


def test_awaiting_panel_hides_own_versions(client, world):
    version = policy_version_create(
        actor=Actor(user=world.governance),
        policy=world.churn_policy,
        rules=[{"name": "All", "condition": "true", "effect": "review"}],
    )
    policy_version_submit(actor=Actor(user=world.governance), version=version)
    body = _client(client, world.governance).get(reverse("workflows:use-case-list")).content.decode()
    assert f"{world.churn_policy.name} v{version.number}" not in body
