"""Consensus reviews, escalation by a reviewer and adjudication by a lead: services, pages, permissions."""

import pytest
from django.core import mail
from django.urls import reverse

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied, ServiceError
from apps.reviews import services
from apps.reviews.models import ReviewTask, ReviewVerdict
from apps.workflows.models import Recommendation, RecommendationEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def reviewers(world):
    """Three reviewers of the churn queue (the demo reviewer and two more)."""
    extra = [UserFactory(username=f"churn-reviewer-{n}") for n in (2, 3)]
    for user in extra:
        user.groups.add(world.churn_reviewers)
    return [world.reviewer, *extra]


@pytest.fixture
def consensus_task(world, queued_recommendation):
    def make(required=2, **kwargs):
        task = queued_recommendation(world.churn, **kwargs).review_task
        ReviewTask.objects.filter(pk=task.pk).update(required_reviews=required)
        task.refresh_from_db()
        return task

    return make


def _decide(user, task, decision="approve", **kwargs):
    if decision == "reject":
        kwargs.setdefault("reason_code", "inaccurate")
    return services.review_task_decide(actor=Actor(user=user), task=task, decision=decision, **kwargs)


def _events(task) -> list[str]:
    return list(task.recommendation.events.order_by("sequence").values_list("type", flat=True))


# --- consensus ----------------------------------------------------------------------------------------


def test_a_vote_keeps_the_item_open_for_another_reviewer(world, reviewers, consensus_task):
    task = consensus_task(required=2)
    services.review_task_claim(actor=Actor(user=reviewers[0]), task=task)

    verdict = _decide(reviewers[0], task)

    task.refresh_from_db()
    assert verdict.decision == "approve" and not verdict.is_adjudication
    assert task.status == ReviewTask.Status.OPEN and task.claimed_by is None and task.agreed is None
    assert task.recommendation.status == Recommendation.Status.QUEUED
    event = task.recommendation.events.get(type=RecommendationEvent.Type.REVIEW_RECORDED)
    assert event.payload["votes"] == 1 and event.payload["required"] == 2
    assert "decision" not in event.payload  # the trail does not tell the next reviewer how others voted


def test_the_same_reviewer_cannot_vote_twice(world, reviewers, consensus_task):
    task = consensus_task(required=2)
    _decide(reviewers[0], task)

    with pytest.raises(Conflict, match="already reviewed"):
        _decide(reviewers[0], task, "reject")

    assert task.verdicts.count() == 1


def test_agreeing_votes_apply_the_decision(world, reviewers, consensus_task):
    task = consensus_task(required=3)
    for reviewer in reviewers:
        _decide(reviewer, task)

    task.refresh_from_db()
    recommendation = Recommendation.objects.get(pk=task.recommendation_id)
    assert task.status == ReviewTask.Status.DECIDED and task.agreed is True
    assert recommendation.status in (Recommendation.Status.APPROVED, Recommendation.Status.DELIVERING)
    assert _events(task).count(RecommendationEvent.Type.REVIEW_RECORDED) == 3
    approved = recommendation.events.get(type=RecommendationEvent.Type.APPROVED)
    assert approved.payload["consensus"] == 3 and approved.actor_user == reviewers[2]


def test_identical_edits_agree_and_deliver_the_edited_text(world, reviewers, consensus_task):
    task = consensus_task(required=2)
    _decide(reviewers[0], task, "edit", edited_text="Call the sponsor about renewal.")
    _decide(reviewers[1], task, "edit", edited_text="Call the sponsor  about renewal.\n")

    task.refresh_from_db()
    recommendation = Recommendation.objects.get(pk=task.recommendation_id)
    assert task.agreed is True and task.status == ReviewTask.Status.DECIDED
    assert recommendation.final_content["text"] == "Call the sponsor  about renewal.\n"


def test_rejections_agree_whatever_their_reasons(world, reviewers, consensus_task):
    task = consensus_task(required=2)
    _decide(reviewers[0], task, "reject", reason_code="inaccurate")
    _decide(reviewers[1], task, "reject", reason_code="tone")

    task.refresh_from_db()
    assert task.agreed is True
    assert Recommendation.objects.get(pk=task.recommendation_id).status == Recommendation.Status.REJECTED


@pytest.mark.parametrize(
    "second",
    [
        {"decision": "reject"},
        {"decision": "edit", "edited_text": "Another text."},
    ],
)
def test_disagreement_goes_to_adjudication_and_tells_the_leads(
    world, reviewers, lead, consensus_task, django_capture_on_commit_callbacks, second
):
    task = consensus_task(required=2)
    _decide(reviewers[0], task, "edit", edited_text="One text.")
    with django_capture_on_commit_callbacks(execute=True):
        _decide(reviewers[1], task, **second)

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ADJUDICATION and task.agreed is False
    assert Recommendation.objects.get(pk=task.recommendation_id).status == Recommendation.Status.QUEUED
    assert [message.to for message in mail.outbox] == [[lead.email]]
    assert "disagree" in mail.outbox[0].subject


def test_only_a_lead_adjudicates_and_the_adjudication_applies(world, reviewers, lead, consensus_task):
    task = consensus_task(required=2)
    _decide(reviewers[0], task)
    _decide(reviewers[1], task, "reject")

    with pytest.raises(PermissionDenied):
        _decide(reviewers[2], task)
    verdict = _decide(lead, task, "reject", reason_code="policy")

    task.refresh_from_db()
    assert verdict.is_adjudication
    assert task.status == ReviewTask.Status.DECIDED and task.agreed is False
    rejected = task.recommendation.events.get(type=RecommendationEvent.Type.REJECTED)
    assert rejected.payload["adjudication"] is True and rejected.actor_user == lead


def test_agreement_rate_is_readable_from_agreed(world, reviewers, lead, consensus_task):
    agreeing, disagreeing = consensus_task(required=2), consensus_task(required=2, subject_key="ACC-0002")
    for reviewer in reviewers[:2]:
        _decide(reviewer, agreeing)
    _decide(reviewers[0], disagreeing)
    _decide(reviewers[1], disagreeing, "reject")

    assert dict(ReviewTask.objects.filter(agreed__isnull=False).values_list("pk", "agreed")) == {
        agreeing.pk: True,
        disagreeing.pk: False,
    }


def test_single_review_items_apply_at_once(world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task

    _decide(world.reviewer, task)

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.DECIDED and task.agreed is None
    assert RecommendationEvent.Type.REVIEW_RECORDED not in _events(task)


# --- escalation by a reviewer -------------------------------------------------------------------------


def test_escalate_needs_a_comment(world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task

    with pytest.raises(ServiceError) as caught:
        _decide(world.reviewer, task, "escalate")

    assert caught.value.field == "comment"
    assert not task.verdicts.exists()


def test_escalate_hands_the_item_to_the_leads(world, lead, queued_recommendation, django_capture_on_commit_callbacks):
    task = queued_recommendation(world.churn).review_task
    services.review_task_claim(actor=Actor(user=world.reviewer), task=task)

    with django_capture_on_commit_callbacks(execute=True):
        _decide(world.reviewer, task, "escalate", comment="Legal should see this offer.")

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ESCALATED and task.escalated_at is not None
    assert task.claimed_by is None
    event = task.recommendation.events.get(type=RecommendationEvent.Type.ESCALATED)
    assert event.actor_user == world.reviewer
    assert event.payload["reason"] == "reviewer" and event.payload["comment"] == "Legal should see this offer."
    assert event.payload["notified"] == 1
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [lead.email]
    assert "Legal should see this offer." in mail.outbox[0].body
    assert reverse("reviews:task-detail", args=[task.pk]) in mail.outbox[0].body


def test_only_a_lead_decides_an_escalated_item(world, lead, reviewers, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    _decide(world.reviewer, task, "escalate", comment="Not sure.")

    for reviewer in reviewers:
        with pytest.raises(PermissionDenied):
            _decide(reviewer, task)
    with pytest.raises(Conflict, match="already with a lead"):
        _decide(lead, task, "escalate", comment="Again")
    _decide(lead, task, "edit", edited_text="A safer offer.")

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.DECIDED
    assert Recommendation.objects.get(pk=task.recommendation_id).final_content["text"] == "A safer offer."


def test_a_lead_decides_an_escalated_consensus_item_alone(world, reviewers, lead, consensus_task):
    task = consensus_task(required=3)
    _decide(reviewers[0], task)
    _decide(reviewers[1], task, "escalate", comment="Odd data.")

    _decide(lead, task)

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.DECIDED and task.agreed is None


# --- pages --------------------------------------------------------------------------------------------


def _post(client, task, htmx=False, **data):
    payload = {"opened_at": str(clock.now().timestamp() - 5), **data}
    return client.post(reverse("reviews:task-decide", args=[task.pk]), payload, **(HTMX if htmx else {}))


def test_page_hides_other_votes_until_decided(client, world, reviewers, consensus_task):
    task = consensus_task(required=2)
    _decide(reviewers[1], task, "reject", comment="A secret opinion")
    client.force_login(reviewers[0])

    html = client.get(reverse("reviews:task-detail", args=[task.pk])).content.decode()

    assert "1 of 2 reviews" in html
    assert "A secret opinion" not in html and "Reject" not in html.split("data-consensus")[1].split("<form")[0]

    assert _post(client, task, decision="reject", reason_code="tone").status_code == 302
    html = client.get(reverse("reviews:task-detail", args=[task.pk])).content.decode()
    assert "A secret opinion" in html  # decided: now every vote shows


def test_voter_page_says_the_vote_is_in_and_offers_no_second_vote(client, world, reviewers, consensus_task):
    task = consensus_task(required=2)
    services.review_task_claim(actor=Actor(user=reviewers[0]), task=task)
    _decide(reviewers[0], task)
    client.force_login(reviewers[0])

    response = client.get(reverse("reviews:task-detail", args=[task.pk]))

    html = response.content.decode()
    task.refresh_from_db()
    assert "You approved this item" in html
    assert task.claimed_by is None  # opening it again does not claim it from the other reviewers
    response = _post(client, task, htmx=True, decision="reject", reason_code="tone")
    assert response.status_code == 200 and "already reviewed" in response.content.decode()
    assert task.verdicts.count() == 1


def test_escalate_from_the_page_requires_a_comment(client, world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    client.force_login(world.reviewer)

    response = _post(client, task, htmx=True, decision="escalate", comment="")

    assert response.status_code == 200
    assert "Say why" in response.content.decode()
    task.refresh_from_db()
    assert task.status != ReviewTask.Status.ESCALATED

    response = _post(client, task, decision="escalate", comment="Needs legal")
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ESCALATED


def test_a_reviewer_sees_an_escalated_item_but_gets_403_deciding_it(client, world, lead, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    _decide(world.reviewer, task, "escalate", comment="Needs a lead")
    client.force_login(world.reviewer)

    page = client.get(reverse("reviews:task-detail", args=[task.pk]))
    assert page.status_code == 200
    assert "Only a lead" in page.content.decode()
    assert _post(client, task, decision="approve").status_code == 403
    assert _post(client, task, htmx=True, decision="approve").status_code == 403

    client.force_login(lead)
    page = client.get(reverse("reviews:task-detail", args=[task.pk])).content.decode()
    assert "Needs a lead" in page
    assert _post(client, task, decision="approve").status_code == 302
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.DECIDED


def test_an_outsider_gets_404_for_an_escalated_item(client, world, outsider, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    _decide(world.reviewer, task, "escalate", comment="Needs a lead")
    client.force_login(outsider)

    assert client.get(reverse("reviews:task-detail", args=[task.pk])).status_code == 404
    assert _post(client, task, decision="approve").status_code == 404
    assert _post(client, task, htmx=True, decision="approve").status_code == 404


def test_a_lead_adjudicates_from_the_page_seeing_the_votes(client, world, reviewers, lead, consensus_task):
    task = consensus_task(required=2)
    _decide(reviewers[0], task, comment="Looks right")
    _decide(reviewers[1], task, "reject", comment="Too generous")
    client.force_login(lead)

    html = client.get(reverse("reviews:task-detail", args=[task.pk])).content.decode()
    assert "Looks right" in html and "Too generous" in html and "Reviewers disagree" in html

    assert _post(client, task, decision="approve").status_code == 302
    verdict = ReviewVerdict.objects.filter(task=task).latest("pk")
    assert verdict.is_adjudication and verdict.reviewer == lead


def test_after_a_vote_the_page_moves_on_and_leaves_the_item_to_others(
    client, world, reviewers, consensus_task, queued_recommendation
):
    task = consensus_task(required=2)
    other = queued_recommendation(world.churn, subject_key="ACC-0002").review_task
    client.force_login(reviewers[0])
    client.get(reverse("reviews:task-detail", args=[task.pk]))

    response = _post(client, task, decision="approve")

    assert response.status_code == 302 and response["Location"] == reverse("reviews:task-detail", args=[other.pk])
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN and task.claimed_by is None
    # Should claim-next hand the item back to the voter, opening it gives the claim back.
    services.review_task_claim(actor=Actor(user=reviewers[0]), task=task)
    client.get(reverse("reviews:task-detail", args=[task.pk]))
    task.refresh_from_db()
    assert task.claimed_by is None
    client.force_login(reviewers[1])
    client.get(reverse("reviews:task-detail", args=[task.pk]))
    task.refresh_from_db()
    assert task.claimed_by == reviewers[1]
