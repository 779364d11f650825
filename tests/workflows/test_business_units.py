"""Business units: an officer granted on unit A's use cases and policies sees and changes those, and nothing
of unit B's, by page, htmx fragment, API or a guessed id. The grants are per-unit officer groups."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework.test import APIClient

from apps.permissions.services import object_permission_grant
from apps.policies.models import PolicyVersion
from apps.workflows.models import UseCase
from tests.factories import UserFactory


@pytest.fixture
def officers(world):
    """Sales (churn use case and policy) and Customer support (replies use case and policy), one officer each."""
    units = {}
    for unit, use_case, policy in (
        ("Sales", world.churn, world.churn_policy),
        ("Customer support", world.replies, world.replies_policy),
    ):
        group = Group.objects.create(name=f"{unit} governance")
        for codename in ("view_usecase", "change_usecase"):
            object_permission_grant(group=group, codename=codename, obj=use_case)
        for codename in ("view_policy", "change_policy", "approve_policy"):
            object_permission_grant(group=group, codename=codename, obj=policy)
        officer = UserFactory(username=f"officer-{use_case.slug}")
        officer.groups.add(group)
        units[unit] = officer
    return units


def test_the_demo_use_cases_and_policies_are_in_different_units(world):
    assert world.churn.business_unit != world.replies.business_unit
    assert world.churn_policy.business_unit != world.replies_policy.business_unit


def test_lists_show_only_the_officers_unit(client, world, officers):
    client.force_login(officers["Sales"])
    for url in (reverse("workflows:use-case-list"), reverse("policies:policy-list")):
        for extra in ({}, {"HTTP_HX_REQUEST": "true"}):
            body = client.get(url, **extra).content.decode()
            assert world.churn.name in body or world.churn_policy.name in body, url
            assert world.replies.name not in body and world.replies_policy.name not in body, url
    api = APIClient()
    api.force_authenticate(officers["Sales"])
    assert [row["slug"] for row in api.get(reverse("api-use-case-list")).json()["results"]] == ["churn-risk"]


def test_the_other_units_objects_are_not_found_by_page_fragment_or_api(client, world, officers):
    client.force_login(officers["Sales"])
    pages = [
        reverse("workflows:use-case-detail", args=[world.replies.slug]),
        reverse("policies:policy-detail", args=[world.replies_policy.pk]),
    ]
    for url in pages:
        assert client.get(url).status_code == 404, url
        assert client.get(url, HTTP_HX_REQUEST="true").status_code == 404, url
    writes = [
        (reverse("workflows:use-case-transition", args=[world.replies.slug]), {"to": "paused", "reason": "x"}),
        (reverse("workflows:use-case-sampling", args=[world.replies.slug]), {"percent": "100", "reason": "x"}),
        (
            reverse("policies:policy-version-review", args=[world.replies_policy.pk, world.pending_version.pk]),
            {"decision": "approve", "comment": "Looks fine"},
        ),
        (reverse("policies:rule-test", args=[world.replies_policy.pk]), {"sample": "{}"}),
    ]
    for url, data in writes:
        assert client.post(url, data).status_code == 404, url
        assert client.post(url, data, HTTP_HX_REQUEST="true").status_code == 404, url
    api = APIClient()
    api.force_authenticate(officers["Sales"])
    response = api.post(
        reverse("api-use-case-transitions", args=[world.replies.slug]), {"to": "paused", "reason": "x"}, format="json"
    )
    assert response.status_code == 404
    world.replies.refresh_from_db()
    world.pending_version.refresh_from_db()
    assert world.replies.status == UseCase.Status.PILOT and world.replies.review_sample_rate is not None
    assert world.pending_version.state == PolicyVersion.State.IN_REVIEW
    assert not world.pending_version.approvals.exists()


def test_a_guessed_id_answers_like_a_missing_one(client, world, officers):
    client.force_login(officers["Sales"])
    missing = client.get(reverse("policies:policy-detail", args=[999999]))
    hidden = client.get(reverse("policies:policy-detail", args=[world.replies_policy.pk]))
    assert missing.status_code == hidden.status_code == 404
    assert client.get(reverse("workflows:use-case-detail", args=["no-such-thing"])).status_code == 404


def test_each_officer_governs_their_own_unit(client, world, officers):
    for unit, use_case in (("Sales", world.churn), ("Customer support", world.replies)):
        client.force_login(officers[unit])
        response = client.post(
            reverse("workflows:use-case-transition", args=[use_case.slug]), {"to": "paused", "reason": "Audit"}
        )
        assert response.status_code == 302, unit
        use_case.refresh_from_db()
        assert use_case.status == UseCase.Status.PAUSED
        assert use_case.history.first().history_user == officers[unit]
