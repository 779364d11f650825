"""Claims in a real Chromium: a second reviewer sees who holds an item and cannot decide it; a lead takes it
over with a reason, and the first reviewer's page learns at its next lease renewal that it is gone."""

import pytest
from django.urls import reverse

from apps.reviews.models import ReviewTask, ReviewVerdict
from apps.workflows.models import RecommendationEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_second_reviewer_sees_the_claim_and_a_lead_takes_it_over(
    login, live_server, world, queued_recommendation, second_reviewer, lead
):
    task = queued_recommendation(world.churn).review_task
    url = live_server.url + reverse("reviews:task-detail", args=[task.pk])

    first = login(world.reviewer, world.password)
    first.goto(url)
    first.get_by_text("Claimed by you until").wait_for()

    second = login(second_reviewer, world.password)
    second.goto(url)
    claim = second.locator("#claim-state")
    assert "Claimed by reviewer until" in claim.inner_text()
    assert claim.inner_text().strip().endswith("0 min")
    assert second.get_by_text("Another reviewer holds this item").is_visible()
    assert second.locator("[data-review-action=approve]").is_disabled()
    second.keyboard.press("a")  # the shortcut does nothing either
    assert second.locator("[data-take-over-form]").count() == 0  # not a lead
    assert not ReviewVerdict.objects.exists()

    lead_page = login(lead, world.password)
    lead_page.goto(url)
    lead_page.get_by_label("Reason to take over from reviewer").fill("Reviewer is out sick")
    lead_page.get_by_role("button", name="Take over").click()
    lead_page.get_by_text("Claimed by you until").wait_for()
    task.refresh_from_db()
    assert task.claimed_by == lead and task.status == ReviewTask.Status.CLAIMED
    event = RecommendationEvent.objects.get(
        recommendation_id=task.recommendation_id, type=RecommendationEvent.Type.CLAIM_TAKEN_OVER
    )
    assert event.payload["previous_holder"] == "reviewer" and event.payload["reason"] == "Reviewer is out sick"

    # The first reviewer's page renews its lease every minute; run that renewal now instead of waiting.
    first.evaluate(
        """() => {
            const renew = document.querySelector("[data-lease-renew]");
            const url = renew.getAttribute("hx-post");
            htmx.ajax("POST", url, {source: renew, target: "#claim-state", swap: "outerHTML"});
        }"""
    )
    first.get_by_text("This item is now claimed by churn-lead.").wait_for()
    assert first.locator("[data-review-action=approve]").is_disabled()
    # The 409 is the only error: the browser and htmx each log it too.
    assert first.errors and all("409" in error for error in first.errors), first.errors
    for page in (second, lead_page):
        assert page.errors == [], page.errors
