"""List mode of the review desk: filters, sort orders with keyset pages, the live fragment, bulk decisions and
similar past items, as a reviewer (and a reviewer without the grant) sees them."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.reviews import services
from apps.reviews.models import ReviewTask, ReviewVerdict
from apps.workflows.models import Recommendation, RecommendationEvent, UseCase

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _task_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-task-id="(\d+)"', response.content.decode())]


def _tasks(queued_recommendation, world, n, use_case=None, **extra):
    use_case = use_case or world.churn
    prefix = "ACC" if use_case == world.churn else "TCK"
    return [queued_recommendation(use_case, subject_key=f"{prefix}-{i:04d}", **extra).review_task for i in range(n)]


def _set(task, **fields):
    ReviewTask.objects.filter(pk=task.pk).update(**fields)


@pytest.fixture
def url(world):
    return reverse("reviews:queue-detail", args=[world.churn_queue.pk])


@pytest.fixture
def bulk_url(world):
    return reverse("reviews:queue-bulk-decide", args=[world.churn_queue.pk])


# --- filters ------------------------------------------------------------------------------------------


def test_filter_by_rule_that_fired(reviewer_client, world, queued_recommendation, url):
    low, discount, both = _tasks(queued_recommendation, world, 3)
    _set(discount, reasons=[{"rule_id": None, "name": "Big discount", "effect": "review"}])
    _set(
        both,
        reasons=[{"rule_id": 1, "name": "Low confidence", "effect": "review"}, {"name": "Big discount"}],
    )

    assert sorted(_task_ids(reviewer_client.get(url, {"rule": "Big discount"}))) == sorted([discount.pk, both.pk])
    assert sorted(_task_ids(reviewer_client.get(url, {"rule": "Low confidence"}))) == sorted([low.pk, both.pk])
    assert _task_ids(reviewer_client.get(url, {"rule": "Low"})) == []  # the whole name, not a part of it


def test_filter_by_use_case(reviewer_client, world, queued_recommendation, url):
    churn = queued_recommendation(world.churn).review_task
    reply = queued_recommendation(world.replies).review_task
    # The replies use case now sends its items to the churn queue too.
    _set(reply, queue=world.churn_queue)
    UseCase.objects.filter(pk=world.replies.pk).update(review_queue=world.churn_queue)

    assert _task_ids(reviewer_client.get(url, {"use_case": world.churn.pk})) == [churn.pk]
    assert _task_ids(reviewer_client.get(url, {"use_case": world.replies.pk})) == [reply.pk]
    assert sorted(_task_ids(reviewer_client.get(url))) == sorted([churn.pk, reply.pk])


def test_filter_by_age_sla_sample_and_status(reviewer_client, world, queued_recommendation, url):
    now = clock.now()
    old, due_soon, breached, sample, escalated = _tasks(queued_recommendation, world, 5)
    _set(old, created_at=now - dt.timedelta(hours=2))
    _set(due_soon, due_at=now + dt.timedelta(minutes=30))  # the queue's SLA is 4 h: the last quarter
    _set(breached, due_at=now - dt.timedelta(minutes=1))
    _set(sample, is_sample=True)
    _set(escalated, status=ReviewTask.Status.ESCALATED, escalated_at=now)

    assert _task_ids(reviewer_client.get(url, {"older_than": "1h"})) == [old.pk]
    assert _task_ids(reviewer_client.get(url, {"sla": "breached"})) == [breached.pk]
    assert _task_ids(reviewer_client.get(url, {"sla": "at_risk"})) == [due_soon.pk]
    assert sorted(_task_ids(reviewer_client.get(url, {"sla": "ok"}))) == sorted([old.pk, sample.pk])
    assert _task_ids(reviewer_client.get(url, {"sample": "yes"})) == [sample.pk]
    assert sample.pk not in _task_ids(reviewer_client.get(url, {"sample": "no"}))
    # Pending by default; escalated items on their own.
    assert escalated.pk not in _task_ids(reviewer_client.get(url))
    assert _task_ids(reviewer_client.get(url, {"status": "escalated"})) == [escalated.pk]


def test_filter_by_assignee(reviewer_client, world, queued_recommendation, url, second_reviewer):
    now = clock.now()
    mine, theirs, expired, free = _tasks(queued_recommendation, world, 4)
    lease = {"status": ReviewTask.Status.CLAIMED, "claimed_at": now, "lease_expires_at": now + dt.timedelta(minutes=5)}
    _set(mine, claimed_by=world.reviewer, **lease)
    _set(theirs, claimed_by=second_reviewer, **lease)
    _set(expired, **(lease | {"claimed_by": second_reviewer, "lease_expires_at": now - dt.timedelta(minutes=1)}))

    assert _task_ids(reviewer_client.get(url, {"assignee": "me"})) == [mine.pk]
    assert sorted(_task_ids(reviewer_client.get(url, {"assignee": "anyone"}))) == sorted([mine.pk, theirs.pk])
    assert sorted(_task_ids(reviewer_client.get(url, {"assignee": "nobody"}))) == sorted([expired.pk, free.pk])


def test_a_bad_filter_names_the_field_and_lists_nothing(reviewer_client, world, queued_recommendation, url):
    queued_recommendation(world.churn)

    response = reviewer_client.get(url, {"older_than": "forever", "sort": "random"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Select a valid choice. forever is not one of the available choices." in html
    assert "Select a valid choice. random is not one of the available choices." in html
    assert _task_ids(response) == []
    # htmx does not swap a 4xx: the fragment answers 200 with the same message.
    response = reviewer_client.get(url, {"older_than": "forever"}, **HTMX)
    assert response.status_code == 200 and "Correct the filter" in response.content.decode()
    # A use case that does not send items to this queue is not a choice.
    assert reviewer_client.get(url, {"use_case": world.replies.pk}).status_code == 400


# --- sort and keyset pages ----------------------------------------------------------------------------

ORDERS = {
    "priority": ("-priority", "created_at", "pk"),
    "oldest": ("created_at", "pk"),
    "newest": ("-created_at", "-pk"),
    "due": ("due_at", "pk"),
}


@pytest.mark.parametrize("sort", ORDERS)
def test_every_sort_order_pages_without_repeats_or_gaps(reviewer_client, world, queued_recommendation, url, sort):
    tasks = _tasks(queued_recommendation, world, 53)
    now = clock.now()
    for n, task in enumerate(tasks):
        # Ties on every sort key (same priority, same creation time, same due time) must still page cleanly.
        _set(
            task,
            priority=n % 3,
            created_at=now - dt.timedelta(minutes=n % 7),
            due_at=now + dt.timedelta(minutes=n % 5),
            is_sample=n % 4 == 0,
        )
    sample_filter = {"sample": "no"}
    expected = list(
        ReviewTask.objects.filter(queue=world.churn_queue, is_sample=False)
        .order_by(*ORDERS[sort])
        .values_list("pk", flat=True)
    )

    seen, response = [], reviewer_client.get(url, {"sort": sort, **sample_filter}, **HTMX)
    while True:
        ids = _task_ids(response)
        assert len(ids) <= 25
        seen += ids
        link = re.search(r'hx-get="([^"]+)"[^>]*>Next page', response.content.decode())
        if not link:
            break
        next_url = link.group(1).replace("&amp;", "&")
        assert f"sort={sort}" in next_url and "sample=no" in next_url  # the filters go with the cursor
        response = reviewer_client.get(next_url, **HTMX)

    assert seen == expected
    assert len(set(seen)) == len(seen)


def test_a_cursor_made_for_another_sort_order_is_the_first_page(reviewer_client, world, queued_recommendation, url):
    _tasks(queued_recommendation, world, 27)
    html = reviewer_client.get(url).content.decode()
    cursor = re.search(r'href="\?after=([^"]+)"', html).group(1)
    first_oldest = _task_ids(reviewer_client.get(url, {"sort": "oldest"}))

    assert _task_ids(reviewer_client.get(url, {"sort": "oldest", "after": cursor})) == first_oldest
    assert _task_ids(reviewer_client.get(url, {"sort": "oldest", "after": "bm90LWpzb24"})) == first_oldest


def test_filtered_fragment_runs_a_bounded_number_of_queries(
    reviewer_client, world, queued_recommendation, url, django_assert_max_num_queries
):
    _tasks(queued_recommendation, world, 30)
    params = {"use_case": world.churn.pk, "rule": "Low confidence", "sla": "ok", "assignee": "nobody", "sort": "due"}

    with django_assert_max_num_queries(10):
        response = reviewer_client.get(url, params, **HTMX)

    assert response.status_code == 200
    assert len(_task_ids(response)) == 25


# --- live refresh -------------------------------------------------------------------------------------


def test_the_live_fragment_brings_new_items_and_the_counters(reviewer_client, world, queued_recommendation, url):
    first = queued_recommendation(world.churn, subject_key="ACC-0001").review_task
    page = reviewer_client.get(url, {"sample": "no"}).content.decode()
    # The list polls itself with its own filters; the poll is held by review_desk.js while boxes are ticked.
    assert re.search(r'id="task-list" hx-get="[^"]*sample=no[^"]*" hx-trigger="every 10s"', page)
    assert "data-live-poll" in page and 'hx-trigger="review-tasks-changed from:body"' in page
    assert 'hx-swap-oob="true"' not in page

    second = queued_recommendation(world.churn, subject_key="ACC-0002").review_task
    response = reviewer_client.get(url, {"sample": "no"}, **HTMX)

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="task-list"')
    assert sorted(_task_ids(response)) == sorted([first.pk, second.pk])
    counters = re.search(r'<p id="queue-counters"[^>]*hx-swap-oob="true"[^>]*>(.*?)</p>', html, re.S).group(1)
    assert re.search(r'data-counter="pending">2<', counters)
    assert "HX-Request" in response["Vary"]


def test_the_queue_list_counters_refresh(reviewer_client, world, queued_recommendation):
    queued_recommendation(world.churn)
    response = reviewer_client.get(reverse("reviews:queue-list"), **HTMX)
    assert re.search(r'data-counter="pending">\s*1\s*<', response.content.decode())
    queued_recommendation(world.churn, subject_key="ACC-0002")
    response = reviewer_client.get(reverse("reviews:queue-list"), **HTMX)
    assert re.search(r'data-counter="pending">\s*2\s*<', response.content.decode())


# --- bulk decisions -----------------------------------------------------------------------------------


def test_rows_not_allowed_in_bulk_have_no_usable_box(reviewer_client, world, queued_recommendation, url):
    low, consensus = _tasks(queued_recommendation, world, 2)
    _set(consensus, required_reviews=2)

    html = reviewer_client.get(url).content.decode()

    low_box = re.search(rf'<input[^>]*value="{low.pk}" form="bulk-form"[^>]*>', html).group(0)
    consensus_box = re.search(rf'<input[^>]*value="{consensus.pk}" form="bulk-form"[^>]*>', html).group(0)
    assert "disabled" not in low_box
    assert "disabled" in consensus_box and "Needs 2 independent reviews" in consensus_box


def test_bulk_reject_decides_each_item_with_its_own_verdict_and_events(
    reviewer_client, world, queued_recommendation, url, bulk_url
):
    tasks = _tasks(queued_recommendation, world, 3)
    kept = queued_recommendation(world.churn, subject_key="ACC-9999").review_task

    response = reviewer_client.post(
        bulk_url,
        {
            "tasks": [t.pk for t in tasks],
            "decision": "reject",
            "reason_code": "stale_data",
            "comment": "Old CRM export",
        },
        **HTMX,
    )

    assert response.status_code == 200
    assert response["HX-Trigger"] == "review-tasks-changed"
    assert "Rejected: 3 items." in response.content.decode()
    for task in tasks:
        task.refresh_from_db()
        verdict = task.verdicts.get()
        assert task.status == ReviewTask.Status.DECIDED
        assert (verdict.reviewer, verdict.decision, verdict.reason_code, verdict.comment) == (
            world.reviewer,
            ReviewVerdict.Decision.REJECT,
            "stale_data",
            "Old CRM export",
        )
        recommendation = Recommendation.objects.get(pk=task.recommendation_id)
        assert recommendation.status == Recommendation.Status.REJECTED
        event = recommendation.events.get(type=RecommendationEvent.Type.REJECTED)
        assert event.actor_user_id == world.reviewer.pk and event.payload["reason"] == "stale_data"
    # The rows are gone from the list; the untouched item stays.
    assert _task_ids(reviewer_client.get(url, **HTMX)) == [kept.pk]


def test_bulk_approve_releases_each_item(reviewer_client, world, queued_recommendation, bulk_url):
    tasks = _tasks(queued_recommendation, world, 2)

    reviewer_client.post(
        bulk_url, {"tasks": [t.pk for t in tasks], "decision": "approve", "comment": "Checked"}, **HTMX
    )

    for task in tasks:
        assert ReviewVerdict.objects.get(task=task).decision == ReviewVerdict.Decision.APPROVE
        assert Recommendation.objects.get(pk=task.recommendation_id).events.filter(
            type=RecommendationEvent.Type.APPROVED
        )


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"decision": "reject", "reason_code": "stale_data"}, "Reason", "Give the reason for this bulk decision."),
        ({"decision": "reject", "comment": "Old"}, "Reason code (to reject)", "Choose a reason code to reject."),
        ({"decision": "approve", "comment": "Fine", "tasks": []}, "Items", "Tick at least one item."),
        ({"decision": "edit", "comment": "Fine"}, "Decision", "Select a valid choice."),
    ],
)
def test_bulk_needs_a_reason_and_decides_nothing_without(
    reviewer_client, world, queued_recommendation, bulk_url, data, field, message
):
    tasks = _tasks(queued_recommendation, world, 2)

    response = reviewer_client.post(bulk_url, {"tasks": [t.pk for t in tasks]} | data, **HTMX)

    html = response.content.decode()
    assert response.status_code == 200 and "HX-Trigger" not in response
    assert f"{field}: {message}" in html
    assert html.lstrip().startswith('<form id="bulk-form"')
    assert not ReviewVerdict.objects.exists()


def test_bulk_refuses_items_that_are_not_low_risk_and_lists_why(
    reviewer_client, world, queued_recommendation, bulk_url, second_reviewer
):
    low, consensus, escalated, held = _tasks(queued_recommendation, world, 4)
    high = queued_recommendation(world.churn, subject_key="ACC-HIGH").review_task
    _set(consensus, required_reviews=3)
    _set(escalated, status=ReviewTask.Status.ESCALATED)
    now = clock.now()
    _set(
        held,
        status=ReviewTask.Status.CLAIMED,
        claimed_by=second_reviewer,
        claimed_at=now,
        lease_expires_at=now + dt.timedelta(minutes=5),
    )
    UseCase.objects.filter(pk=world.churn.pk).update(risk_tier=UseCase.RiskTier.HIGH)
    ids = [low.pk, consensus.pk, escalated.pk, held.pk, high.pk]

    # Every churn item is now high risk: none goes.
    response = reviewer_client.post(
        bulk_url, {"tasks": ids, "decision": "approve", "comment": "Looks fine"}, **HTMX
    ).content.decode()
    assert "High-risk use case: decide it on its own page." in response
    assert not ReviewVerdict.objects.exists()

    UseCase.objects.filter(pk=world.churn.pk).update(risk_tier=UseCase.RiskTier.MINIMAL)
    response = reviewer_client.post(bulk_url, {"tasks": ids, "decision": "approve", "comment": "Looks fine"}, **HTMX)

    html = response.content.decode()
    assert "Approved: 2 items." in html  # low and high (now minimal risk)
    assert "Needs 3 independent reviews: decide it on its own page." in html
    assert "Waiting for a lead: decide it on its own page." in html
    assert "claimed by reviewer-two" in html
    assert set(ReviewVerdict.objects.values_list("task_id", flat=True)) == {low.pk, high.pk}


def test_bulk_on_a_queue_not_granted_is_a_404(reviewer_client, world, queued_recommendation):
    task = queued_recommendation(world.replies).review_task
    url = reverse("reviews:queue-bulk-decide", args=[world.replies_queue.pk])
    data = {"tasks": [task.pk], "decision": "approve", "comment": "Fine"}

    assert reviewer_client.post(url, data).status_code == 404
    assert reviewer_client.post(url, data, **HTMX).status_code == 404
    assert not ReviewVerdict.objects.exists()


def test_guessed_ids_of_another_queue_are_refused(reviewer_client, world, queued_recommendation, bulk_url):
    mine = queued_recommendation(world.churn).review_task
    other = queued_recommendation(world.replies).review_task

    response = reviewer_client.post(
        bulk_url, {"tasks": [mine.pk, other.pk, 999_999], "decision": "approve", "comment": "Fine"}, **HTMX
    )

    html = response.content.decode()
    assert "Approved: 1 item." in html
    assert f"#{other.pk}: Not an item of this queue." in html and "#999999: Not an item of this queue." in html
    assert "TCK-0001" not in html  # nothing about the other queue's item leaks
    other.refresh_from_db()
    assert other.status == ReviewTask.Status.OPEN and not other.verdicts.exists()


def test_bulk_without_htmx_redirects_with_messages(reviewer_client, world, queued_recommendation, bulk_url, url):
    task = queued_recommendation(world.churn).review_task

    response = reviewer_client.post(
        bulk_url, {"tasks": [task.pk, 999_999], "decision": "approve", "comment": "Fine"}, follow=True
    )

    assert response.redirect_chain[-1][0] == url
    html = response.content.decode()
    assert "Approved: 1 item." in html and "Not decided: #999999: Not an item of this queue." in html


def test_anonymous_bulk_goes_to_login(client, world, queued_recommendation, bulk_url):
    task = queued_recommendation(world.churn).review_task
    response = client.post(bulk_url, {"tasks": [task.pk], "decision": "approve", "comment": "Fine"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not ReviewVerdict.objects.exists()


def test_bulk_service_checks_the_grant_and_the_reason(world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    with pytest.raises(PermissionDenied):
        services.review_tasks_bulk_decide(
            actor=Actor(user=world.executive),
            queue=world.churn_queue,
            task_ids=[task.pk],
            decision="approve",
            comment="x",
        )
    with pytest.raises(ServiceError) as error:
        services.review_tasks_bulk_decide(
            actor=Actor(user=world.reviewer),
            queue=world.churn_queue,
            task_ids=[task.pk],
            decision="approve",
            comment=" ",
        )
    assert error.value.field == "comment"
    assert not ReviewVerdict.objects.exists()


# --- similar past items -------------------------------------------------------------------------------


def _decide(world, task, decision="approve", **kwargs):
    return services.review_task_decide(actor=Actor(user=world.reviewer), task=task, decision=decision, **kwargs)


def test_similar_items_show_decided_items_with_the_same_rules_or_subject(reviewer_client, world, queued_recommendation):
    current, same_rules, same_subject, other_rules, pending = _tasks(queued_recommendation, world, 5)
    _set(current, reasons=[{"name": "Low confidence"}, {"name": "Big discount"}])
    _set(same_rules, reasons=[{"name": "Big discount"}, {"name": "Low confidence"}, {"name": "Other"}])
    _set(other_rules, reasons=[{"name": "Low confidence"}])
    Recommendation.objects.filter(pk=same_subject.recommendation_id).update(
        subject_key=current.recommendation.subject_key
    )
    _set(same_subject, reasons=[{"name": "Unrelated"}])
    for task in (same_rules, same_subject, other_rules):
        task.refresh_from_db()
    _decide(world, same_rules, "reject", reason_code="inaccurate")
    _decide(world, same_subject)
    _decide(world, other_rules)

    response = reviewer_client.get(reverse("reviews:task-similar", args=[current.pk]), **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    ids = [int(pk) for pk in re.findall(r'data-similar-task-id="(\d+)"', html)]
    assert ids == [same_subject.pk, same_rules.pk]  # newest decision first; pending and other rules left out
    assert "Rejected</span>" in html and "Approved</span>" in html and "by reviewer" in html
    assert pending.pk not in ids


def test_similar_items_are_at_most_five_and_only_from_granted_queues(reviewer_client, world, queued_recommendation):
    current, *others = _tasks(queued_recommendation, world, 8)
    for task in others:
        _decide(world, task)
    # One decided item of the same use case sits in a queue the reviewer may not review.
    hidden = others[-1]
    _set(hidden, queue=world.replies_queue)

    html = reviewer_client.get(reverse("reviews:task-similar", args=[current.pk]), **HTMX).content.decode()

    ids = [int(pk) for pk in re.findall(r'data-similar-task-id="(\d+)"', html)]
    assert len(ids) == 5 and hidden.pk not in ids


def test_similar_items_fragment_is_404_without_the_grant(client, world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    url = reverse("reviews:task-similar", args=[task.pk])
    client.force_login(world.executive)
    assert client.get(url, **HTMX).status_code == 404
    client.force_login(world.reviewer)
    other = queued_recommendation(world.replies).review_task
    assert client.get(reverse("reviews:task-similar", args=[other.pk]), **HTMX).status_code == 404
    assert client.get(url, **HTMX).status_code == 200


def test_item_page_loads_similar_items(reviewer_client, world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    html = reviewer_client.get(reverse("reviews:task-detail", args=[task.pk])).content.decode()
    assert f'hx-get="{reverse("reviews:task-similar", args=[task.pk])}" hx-trigger="load"' in html
