import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from apps.workflows.models import Recommendation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reviewer_approves_one_item_and_edits_another(world, queued_recommendation, login, live_server):
    first = queued_recommendation(text="Offer a 20% renewal discount.", subject_key="ACC-0003")
    second = queued_recommendation(text="Call the sponsor this week.", subject_key="ACC-0004")
    queued_recommendation(world.replies, text="We will refund you.")  # another queue's item: never shown

    page = login(world.reviewer, world.password)
    expect(page).to_have_url(re.compile(r"/reviews/$"))
    expect(page.get_by_role("link", name="Churn review")).to_be_visible()
    expect(page.get_by_text("Support replies review")).to_have_count(0)

    page.get_by_role("link", name="Churn review").click()
    expect(page.get_by_role("link", name="ACC-0003")).to_be_visible()
    page.get_by_role("button", name=re.compile("Start reviewing|Next item")).first.click()
    expect(page.locator("[data-review-output]")).to_contain_text("renewal discount")
    page.locator("[data-review-action=approve]").click()

    expect(page.locator("[data-review-output]")).to_contain_text("Call the sponsor", timeout=10_000)
    page.get_by_label(re.compile("Edited text|Edit", re.I)).first.fill("Call the sponsor today and confirm renewal.")
    page.locator("[data-review-action=edit]").click()
    expect(page).to_have_url(re.compile(r"/reviews/queues/\d+/$"), timeout=10_000)  # the queue is clear

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Recommendation.Status.DELIVERED
    assert first.events.get(type="approved").actor_user == world.reviewer
    assert second.status == Recommendation.Status.DELIVERED
    assert second.final_content["text"] == "Call the sponsor today and confirm renewal."
    assert second.review_task.verdicts.get().edit_distance > 0
    assert page.errors == [], page.errors


def test_governance_sees_the_policy_that_routed_an_item(world, queued_recommendation, login, live_server):
    recommendation = queued_recommendation(confidence=0.3)
    page = login(world.governance, world.password)
    expect(page).to_have_url(re.compile(r"/use-cases/$"))
    page.goto(f"{live_server.url}/audit/recommendations/{recommendation.pk}/")
    expect(page.get_by_text("Churn retention policy").first).to_be_visible()
    expect(page.get_by_text("Low confidence").first).to_be_visible()
    page.get_by_role("link", name=re.compile("Churn retention policy")).first.click()
    expect(page.get_by_text("signals.confidence < 0.7").first).to_be_visible()
    assert page.errors == [], page.errors


def test_executive_opens_the_roi_page_and_sees_charts(world, queued_recommendation, login, live_server):
    for subject in ("ACC-0005", "ACC-0006"):
        queued_recommendation(subject_key=subject)
    call_command("rollup_rebuild", days=2)
    page = login(world.executive, world.password)
    expect(page).to_have_url(re.compile(r"/roi/"))
    charts = page.locator(".chart")
    expect(charts.first).to_be_visible()
    expect(page.locator(".chart .main-svg").first).to_be_attached(timeout=10_000)
    assert charts.count() >= 3
    assert page.errors == [], page.errors
