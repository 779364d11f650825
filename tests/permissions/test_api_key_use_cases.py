"""An API key limited to some use cases: every other use case, and everything of it, does not exist for the
key — for reads, writes and guessed ids, whoever owns the key (an admin's too)."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.core.actors import Actor
from apps.core.exceptions import ServiceError
from apps.permissions.models import ApiKey
from apps.permissions.services import api_key_create
from apps.workflows.models import Recommendation, Run
from tests.factories import key_client


def _recommendation(use_case, subject="ACC-0001"):
    return Recommendation.objects.create(
        use_case=use_case, subject_key=subject, producer="doorstep", content={"text": "x"}, confidence=0.5
    )


@pytest.mark.parametrize("owner", ["integrator", "admin"])
def test_a_key_limited_to_one_use_case_sees_nothing_of_the_other(world, owner):
    user = getattr(world, owner)
    client = key_client(user, use_cases=[world.churn])
    churn_output, reply_output = _recommendation(world.churn), _recommendation(world.replies, "T-1")
    reply_run = Run.objects.create(use_case=world.replies, subject_key="T-1", trigger="api")

    assert [row["slug"] for row in client.get("/api/v1/use-cases").json()["results"]] == [world.churn.slug]
    listed = {row["id"] for row in client.get("/api/v1/recommendations").json()["results"]}
    assert churn_output.pk in listed and reply_output.pk not in listed
    assert client.get(f"/api/v1/recommendations/{churn_output.pk}").status_code == 200
    for url in (
        f"/api/v1/recommendations/{reply_output.pk}",
        f"/api/v1/recommendations/{reply_output.pk}/trace",
        f"/api/v1/runs/{reply_run.pk}",
    ):
        assert client.get(url).status_code == 404, url

    submitted = client.post(
        "/api/v1/recommendations",
        {"use_case": world.replies.slug, "subject": "T-2", "content": {"text": "Refund"}, "confidence": 0.9},
        format="json",
    )
    assert submitted.status_code == 400
    assert [error["field"] for error in submitted.json()["errors"]] == ["use_case"]
    assert not Recommendation.objects.filter(subject_key="T-2").exists()


def test_the_same_owner_without_a_limit_still_sees_both(world):
    client = key_client(world.integrator)
    slugs = {row["slug"] for row in client.get("/api/v1/use-cases").json()["results"]}
    assert slugs == {world.churn.slug, world.replies.slug}


def test_a_key_cannot_be_limited_to_a_use_case_its_owner_may_not_see(world):
    with pytest.raises(ServiceError) as refused:
        api_key_create(actor=Actor(user=world.reviewer), user=world.reviewer, name="k", use_cases=[world.replies])
    assert refused.value.field == "use_cases"
    assert not ApiKey.objects.filter(user=world.reviewer).exists()


def test_review_tasks_of_other_use_cases_are_hidden_from_a_limited_key(world, queued_recommendation):
    task = queued_recommendation().review_task  # a churn task
    world.reviewer.groups.add(world.support_reviewers)
    limited = key_client(world.reviewer, use_cases=[world.replies])
    assert limited.get(f"/api/v1/review-tasks/{task.pk}").status_code == 404
    assert task.pk not in {row["id"] for row in limited.get("/api/v1/review-tasks").json()["results"]}
    assert key_client(world.reviewer).get(f"/api/v1/review-tasks/{task.pk}").status_code == 200


def test_the_key_page_offers_only_visible_use_cases_and_records_the_limit(client, world):
    client.force_login(world.reviewer)
    page = client.get("/connectors/").content.decode()
    assert world.churn.name in page and world.replies.name not in page
    response = client.post(
        "/connectors/api-keys/", {"name": "limited", "use_cases": [world.replies.pk]}, HTTP_HX_REQUEST="true"
    )
    assert "Use cases:" in response.content.decode()  # the field is named in the error
    assert not ApiKey.objects.filter(name="limited").exists()
    client.post("/connectors/api-keys/", {"name": "limited", "use_cases": [world.churn.pk]}, HTTP_HX_REQUEST="true")
    key = ApiKey.objects.get(name="limited")
    assert list(key.use_cases.all()) == [world.churn]
    recorded = key.history.order_by("-history_date", "-history_id").first()
    assert [row.usecase_id for row in recorded.use_cases.all()] == [world.churn.pk]


def test_the_command_limits_a_key_by_slug(world, capsys):
    call_command("create_api_key", user=world.integrator.username, name="cli", use_cases=[world.churn.slug])
    assert list(ApiKey.objects.get(name="cli").use_cases.all()) == [world.churn]
    with pytest.raises(CommandError, match="use_cases: no use case with the slug"):
        call_command("create_api_key", user=world.integrator.username, name="cli-2", use_cases=["nope"])


def test_key_use_and_refusal_are_access_events(world):
    from apps.accounts.models import AccessEvent

    client = key_client(world.integrator, name="crm")
    client.get("/api/v1/use-cases")
    client.get("/api/v1/use-cases")  # within the minute: no second record
    used = AccessEvent.objects.filter(kind=AccessEvent.Kind.API_KEY_USED)
    assert used.count() == 1
    assert used.get().user == world.integrator and "crm" in used.get().detail
    key = ApiKey.objects.get(name="crm")
    key.revoked_at = key.created_at
    key.save()
    assert client.get("/api/v1/use-cases").status_code == 401
    refused = AccessEvent.objects.get(kind=AccessEvent.Kind.API_KEY_REFUSED)
    assert refused.user == world.integrator and "revoked" in refused.detail


def test_granted_ids_agrees_with_restrict_for_every_user_and_key_limit(world):
    from apps.connectors.models import Connector
    from apps.core.permissions import granted_ids, restrict
    from apps.policies.models import Policy
    from apps.reviews.models import ReviewQueue
    from apps.workflows.models import UseCase

    checks = [(UseCase, "view_usecase"), (Policy, "view_policy"), (Connector, "view_connector")]
    checks.append((ReviewQueue, "review_reviewqueue"))
    for user in (world.admin, world.governance, world.reviewer, world.executive, world.integrator, world.outsider):
        for limit in (None, frozenset({world.churn.pk})):
            user.api_key_use_cases = limit
            for model, codename in checks:
                expected = sorted(restrict(model.objects.all(), user, codename).values_list("pk", flat=True))
                found = granted_ids(model, user, codename)
                assert (found if found is not None else sorted(model.objects.values_list("pk", flat=True))) == (
                    expected
                ), (user, limit, model)
