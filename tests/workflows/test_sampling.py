"""Risk-tier review sampling: a share of the outputs the policy allows still goes to a person, picked
deterministically, marked as a sample in the queue; the officer may override the tier's default."""

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.reviews.models import ReviewTask
from apps.workflows.models import Recommendation, RecommendationEvent, UseCase
from apps.workflows.services import (
    Draft,
    recommendation_submit,
    review_sampled,
    run_execute,
    run_request,
    use_case_sample_rate_set,
)

N = 1000


def _allowed_drafts(prefix: str = "ACC") -> list[Draft]:
    """Outputs the churn policy lets through (confident, small discount, no stale data)."""
    return [
        Draft(
            subject_key=f"{prefix}-{i:05d}",
            content={"text": f"Call the sponsor about renewal #{i}."},
            confidence=0.95,
            proposed_action={"type": "crm_task", "discount_pct": 5},
        )
        for i in range(N)
    ]


def _use(world, *, tier=UseCase.RiskTier.LIMITED, rate=None) -> UseCase:
    UseCase.objects.filter(pk=world.churn.pk).update(risk_tier=tier, review_sample_rate=rate)
    world.churn.refresh_from_db()
    return world.churn


def _submit(world, drafts) -> list[Recommendation]:
    return recommendation_submit(actor=Actor(user=world.integrator), use_case=world.churn, drafts=drafts)


@pytest.mark.parametrize(
    ("tier", "rate", "low", "high"),
    [
        (UseCase.RiskTier.HIGH, None, 1000, 1000),
        (UseCase.RiskTier.LIMITED, None, 150, 250),  # 20 % ± 4 standard deviations
        (UseCase.RiskTier.MINIMAL, None, 5, 40),  # 2 %
        (UseCase.RiskTier.MINIMAL, Decimal("0.5"), 430, 570),  # the officer's override wins
        (UseCase.RiskTier.HIGH, Decimal("0"), 0, 0),
    ],
)
def test_the_share_sent_to_review_follows_the_tier_or_the_override(world, tier, rate, low, high):
    _use(world, tier=tier, rate=rate)
    recommendations = _submit(world, _allowed_drafts())
    sampled = ReviewTask.objects.filter(recommendation__in=recommendations, is_sample=True).count()
    assert low <= sampled <= high, sampled
    queued = sum(r.status == Recommendation.Status.QUEUED for r in recommendations)
    assert queued == sampled  # every other output went on to delivery
    assert sum(r.status == Recommendation.Status.DELIVERING for r in recommendations) == N - sampled


def test_sampling_is_reproducible(world):
    _use(world)
    drafts = _allowed_drafts()
    picks = [review_sampled(use_case=world.churn, draft=d, rate=Decimal("0.2")) for d in drafts]
    assert picks == [review_sampled(use_case=world.churn, draft=d, rate=Decimal("0.2")) for d in drafts]
    first = _submit(world, drafts)
    again = _submit(world, _allowed_drafts())
    assert [r.status == "queued_for_review" for r in first] == [r.status == "queued_for_review" for r in again]
    assert [r.status == "queued_for_review" for r in first] == picks


def test_a_sample_is_marked_in_its_task_and_its_event(world):
    _use(world, tier=UseCase.RiskTier.HIGH)
    (recommendation,) = _submit(world, _allowed_drafts()[:1])
    assert recommendation.review_task.is_sample and recommendation.review_task.reasons == []
    queued = recommendation.events.get(type=RecommendationEvent.Type.QUEUED)
    assert queued.payload == {
        "queue": "Churn review",
        "rules": [],
        "sample": True,
        "sample_rate": "1",
        "effect": "allow",
    }


def test_an_output_the_policy_sends_to_review_is_not_a_sample(world, queued_recommendation):
    _use(world, tier=UseCase.RiskTier.HIGH)
    recommendation = queued_recommendation()  # low confidence: the rule decides, not the sampling
    assert not recommendation.review_task.is_sample
    assert "sample" not in recommendation.events.get(type=RecommendationEvent.Type.QUEUED).payload


def test_a_sample_without_a_queue_is_blocked_not_delivered(world):
    UseCase.objects.filter(pk=world.churn.pk).update(review_queue=None)
    _use(world, tier=UseCase.RiskTier.HIGH)
    (recommendation,) = _submit(world, _allowed_drafts()[:1])
    assert recommendation.status == Recommendation.Status.BLOCKED
    blocked = recommendation.events.get(type=RecommendationEvent.Type.BLOCKED)
    assert blocked.payload["reason"] == "sampled for review but the use case has no review queue"


def test_a_prohibited_use_case_takes_no_output(world):
    _use(world, tier=UseCase.RiskTier.PROHIBITED)
    before = Recommendation.objects.count()
    with pytest.raises(ServiceError, match="prohibited risk tier"):
        _submit(world, _allowed_drafts()[:5])
    assert Recommendation.objects.count() == before


def test_a_run_whose_use_case_became_prohibited_meanwhile_is_blocked(world):
    """The tier may change between a run's request and its execution: routing blocks what the door let in."""
    run = run_request(actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-0001", trigger="api")
    UseCase.objects.filter(pk=world.churn.pk).update(risk_tier=UseCase.RiskTier.PROHIBITED)
    run = run_execute(run_id=run.pk)
    blocked = run.recommendation.events.get(type=RecommendationEvent.Type.BLOCKED)
    assert run.recommendation.status == Recommendation.Status.BLOCKED
    assert blocked.payload["reason"] == "the use case's risk tier is prohibited"


def test_queue_and_item_pages_show_the_sample_badge(client, world):
    _use(world, tier=UseCase.RiskTier.HIGH)
    (recommendation,) = _submit(world, _allowed_drafts()[:1])
    client.force_login(world.reviewer)
    queue_page = client.get(reverse("reviews:queue-detail", args=[world.churn_queue.pk])).content.decode()
    assert ">Sample</span>" in queue_page
    item_page = client.get(reverse("reviews:task-detail", args=[recommendation.review_task.pk])).content.decode()
    assert ">Sample</span>" in item_page


def test_item_page_of_a_rule_review_has_no_badge(client, world, queued_recommendation):
    recommendation = queued_recommendation()
    client.force_login(world.reviewer)
    item_page = client.get(reverse("reviews:task-detail", args=[recommendation.review_task.pk])).content.decode()
    assert ">Sample</span>" not in item_page


# --- the override ---------------------------------------------------------------------------------------


def test_the_override_is_set_with_a_reason_by_someone_who_may_change(world, outsider):
    use_case_sample_rate_set(
        actor=Actor(user=world.governance), use_case=world.churn, rate=Decimal("0.35"), reason="New model"
    )
    world.churn.refresh_from_db()
    assert world.churn.effective_review_sample_rate == Decimal("0.35")
    assert world.churn.history.first().history_change_reason == "New model"
    with pytest.raises(ServiceError) as refused:
        use_case_sample_rate_set(
            actor=Actor(user=world.governance), use_case=world.churn, rate=Decimal("1.5"), reason="x"
        )
    assert refused.value.field == "rate"
    with pytest.raises(PermissionDenied):
        use_case_sample_rate_set(actor=Actor(user=world.executive), use_case=world.churn, rate=None, reason="x")
    use_case_sample_rate_set(actor=Actor(user=world.governance), use_case=world.churn, rate=None, reason="Default")
    world.churn.refresh_from_db()
    assert world.churn.effective_review_sample_rate == Decimal("0.2")  # limited tier


def test_the_page_sets_the_override_and_explains_errors(client, world):
    client.force_login(world.governance)
    url = reverse("workflows:use-case-sampling", args=[world.churn.slug])
    response = client.post(url, {"percent": "150", "reason": "x"}, HTTP_HX_REQUEST="true")
    assert "less than or equal to 100" in response.content.decode()
    response = client.post(url, {"percent": "12.5", "reason": "Pilot feedback"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and 'id="sampling"' in body
    assert "12.5 % of the outputs the policy allows" in body and "default is 20 %" in body
    world.churn.refresh_from_db()
    assert world.churn.review_sample_rate == Decimal("0.125")
    assert client.post(url, {"percent": "", "reason": "Back to default"}).status_code == 302
    world.churn.refresh_from_db()
    assert world.churn.review_sample_rate is None
    client.force_login(world.executive)
    assert client.post(url, {"percent": "50", "reason": "x"}).status_code == 403
