"""List mode in a real Chromium: filter the queue, tick items and reject them in bulk with a reason."""

import pytest
from django.urls import reverse

from apps.reviews.models import ReviewTask, ReviewVerdict
from apps.workflows.models import Recommendation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(login, world):
    return login(world.reviewer, world.password)


def test_reviewer_ticks_items_and_rejects_them_in_bulk(page, live_server, world, queued_recommendation):
    first, second, kept = (
        queued_recommendation(world.churn, subject_key=key).review_task for key in ("ACC-0001", "ACC-0002", "ACC-0003")
    )
    ReviewTask.objects.filter(pk=kept.pk).update(is_sample=True)

    page.goto(live_server.url + reverse("reviews:queue-detail", args=[world.churn_queue.pk]))
    rows = page.locator("#task-rows tr[data-task-id]")
    assert rows.count() == 3

    # A filter narrows the list in place and goes into the URL.
    page.get_by_label("Sample").select_option("no")
    page.wait_for_url("**sample=no**")
    page.locator(f'#task-rows tr[data-task-id="{kept.pk}"]').wait_for(state="detached")
    assert rows.count() == 2

    # Nothing ticked: the bulk buttons are off. Tick all on the page.
    reject = page.get_by_role("button", name="Reject ticked")
    assert reject.is_disabled()
    page.get_by_label("Tick all low-risk items on this page").check()
    page.get_by_text("2 items ticked").wait_for()

    # Without a reason the browser holds the form; without a reason code the server says so. Nothing is decided.
    reason = page.get_by_label("Reason", exact=True)
    reject.click()
    assert reason.evaluate("field => field.validity.valueMissing")
    reason.fill("Based on last year's export")
    reject.click()
    page.get_by_text("Reason code (to reject): Choose a reason code to reject.").wait_for()
    assert not ReviewVerdict.objects.exists()
    # The ticks survived (the bar was re-rendered, not the list).
    assert page.locator("[data-bulk-item]:checked").count() == 2

    page.get_by_label("Reason", exact=True).fill("Based on last year's export")
    page.get_by_label("Reason code (to reject)").select_option("stale_data")
    page.get_by_role("button", name="Reject ticked").click()

    page.get_by_text("Rejected: 2 items.").wait_for()
    page.get_by_text("No item matches these filters.").wait_for()
    assert rows.count() == 0
    for task in (first, second):
        verdict = ReviewVerdict.objects.get(task=task)
        assert (verdict.decision, verdict.reason_code, verdict.comment) == (
            "reject",
            "stale_data",
            "Based on last year's export",
        )
        assert Recommendation.objects.get(pk=task.recommendation_id).status == Recommendation.Status.REJECTED
    assert ReviewTask.objects.get(pk=kept.pk).status == ReviewTask.Status.OPEN
    # The counters came along out of band.
    assert page.locator('#queue-counters [data-counter="pending"]').inner_text() == "1"
    assert page.errors == [], page.errors


def test_the_list_refreshes_itself_but_not_while_items_are_ticked(page, live_server, world, queued_recommendation):
    first = queued_recommendation(world.churn, subject_key="ACC-0001").review_task
    page.goto(live_server.url + reverse("reviews:queue-detail", args=[world.churn_queue.pk]))
    box = page.locator(f'[data-bulk-item][value="{first.pk}"]')
    box.check()

    queued_recommendation(world.churn, subject_key="ACC-0002")
    page.wait_for_timeout(11_000)  # one poll period: held, so the tick stays and the new row waits
    assert box.is_checked()
    assert page.locator("#task-rows tr[data-task-id]").count() == 1

    box.uncheck()
    page.get_by_role("link", name="ACC-0002").wait_for(timeout=15_000)
    assert page.locator('#queue-counters [data-counter="pending"]').inner_text() == "2"
    assert page.errors == [], page.errors
