"""The review desk UI: what a reviewer sees and can do, and what a reviewer without the grant cannot."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from apps.core import clock
from apps.policies.models import Rule
from apps.reviews.models import ReviewTask, ReviewVerdict
from apps.workflows.models import ContextSnapshot, Recommendation, RecommendationEvent, Run

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _task_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-task-id="(\d+)"', response.content.decode())]


def _decide(client, task, htmx=False, **data):
    payload = {"opened_at": str(clock.now().timestamp() - 12), **data}
    return client.post(reverse("reviews:task-decide", args=[task.pk]), payload, **(HTMX if htmx else {}))


# --- access -------------------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_login(client, world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    for url in (
        reverse("reviews:queue-list"),
        reverse("reviews:queue-detail", args=[world.churn_queue.pk]),
        reverse("reviews:task-detail", args=[task.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
    response = client.post(reverse("reviews:task-decide", args=[task.pk]), {"decision": "approve"})
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN


def test_queue_list_shows_only_the_queues_granted_to_the_user(reviewer_client, world, queued_recommendation):
    queued_recommendation(world.churn)
    queued_recommendation(world.replies)

    response = reviewer_client.get(reverse("reviews:queue-list"))

    assert response.status_code == 200
    html = response.content.decode()
    assert world.churn_queue.name in html
    assert world.replies_queue.name not in html
    assert reverse("reviews:claim-next", args=[world.churn_queue.pk]) in html
    assert reverse("reviews:claim-next", args=[world.replies_queue.pk]) not in html
    assert 'hx-trigger="every 10s"' in html
    assert "Start reviewing" in html


def test_queue_list_fragment_carries_the_counters_and_varies_on_htmx(reviewer_client, world, queued_recommendation):
    queued_recommendation(world.churn)
    queued_recommendation(world.churn, subject_key="ACC-0002")

    response = reviewer_client.get(reverse("reviews:queue-list"), **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and html.lstrip().startswith('<tbody id="queue-rows"')
    assert re.search(r'data-counter="pending">\s*2\s*<', html)
    assert re.search(r'data-counter="overdue">\s*0\s*<', html)
    assert "HX-Request" in response["Vary"]


def test_queue_list_marks_a_breached_sla(reviewer_client, world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    ReviewTask.objects.filter(pk=task.pk).update(due_at=clock.now() - dt.timedelta(minutes=5))

    html = reviewer_client.get(reverse("reviews:queue-list"), **HTMX).content.decode()

    assert re.search(r'data-counter="overdue">\s*1\s*<', html)
    assert "Breached" in html


def test_reviewer_gets_404_for_a_queue_not_granted(reviewer_client, world, queued_recommendation):
    queued_recommendation(world.replies)
    url = reverse("reviews:queue-detail", args=[world.replies_queue.pk])

    assert reviewer_client.get(url).status_code == 404
    assert reviewer_client.get(url, **HTMX).status_code == 404
    assert reviewer_client.post(reverse("reviews:claim-next", args=[world.replies_queue.pk])).status_code == 404
    assert reviewer_client.get(reverse("reviews:queue-detail", args=[999_999])).status_code == 404
    assert not ReviewTask.objects.filter(claimed_by=world.reviewer).exists()


def test_reviewer_gets_404_for_a_task_of_a_queue_not_granted(reviewer_client, world, queued_recommendation):
    recommendation = queued_recommendation(world.replies)
    task = recommendation.review_task
    url = reverse("reviews:task-detail", args=[task.pk])

    assert reviewer_client.get(url).status_code == 404
    assert reviewer_client.get(url, **HTMX).status_code == 404
    assert _decide(reviewer_client, task, decision="approve").status_code == 404
    assert _decide(reviewer_client, task, htmx=True, decision="approve").status_code == 404

    task.refresh_from_db()
    recommendation.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN and task.claimed_by is None
    assert not task.verdicts.exists()
    assert recommendation.status == Recommendation.Status.QUEUED


@pytest.mark.parametrize("who", ["executive", "governance", "integrator"])
def test_users_without_a_review_grant_cannot_open_or_decide(client, world, queued_recommendation, who):
    task = queued_recommendation(world.churn).review_task
    client.force_login(getattr(world, who))

    assert client.get(reverse("reviews:queue-detail", args=[world.churn_queue.pk])).status_code == 404
    assert client.get(reverse("reviews:task-detail", args=[task.pk])).status_code == 404
    assert _decide(client, task, decision="approve").status_code == 404
    assert world.churn_queue.name not in client.get(reverse("reviews:queue-list")).content.decode()
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN


# --- queue page ---------------------------------------------------------------------------------------


def test_queue_detail_lists_pending_items_with_rules_and_claims(
    reviewer_client, world, queued_recommendation, second_reviewer
):
    first = queued_recommendation(world.churn, subject_key="ACC-0001").review_task
    queued_recommendation(world.churn, subject_key="ACC-0002")
    ReviewTask.objects.filter(pk=first.pk).update(
        status=ReviewTask.Status.CLAIMED,
        claimed_by=second_reviewer,
        claimed_at=clock.now() - dt.timedelta(minutes=3),
        lease_expires_at=clock.now() + dt.timedelta(minutes=7),
    )

    response = reviewer_client.get(reverse("reviews:queue-detail", args=[world.churn_queue.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "ACC-0001" in html and "ACC-0002" in html
    assert world.churn.name in html
    for reason in first.reasons:
        assert reason["name"] in html
    assert "Claimed by reviewer-two" in html and "3\xa0minutes" in html
    assert 'hx-trigger="every 10s"' in html


def test_queue_detail_paginates_by_cursor_without_repeats(reviewer_client, world, queued_recommendation):
    for n in range(27):
        queued_recommendation(world.churn, subject_key=f"ACC-{n:04d}")
    url = reverse("reviews:queue-detail", args=[world.churn_queue.pk])

    first = reviewer_client.get(url)
    first_ids = _task_ids(first)
    cursor = re.search(r'href="\?after=([^"]+)"', first.content.decode()).group(1)
    second_ids = _task_ids(reviewer_client.get(url, {"after": cursor}))

    expected = list(
        ReviewTask.objects.filter(queue=world.churn_queue)
        .order_by("-priority", "created_at", "pk")
        .values_list("pk", flat=True)
    )
    assert len(first_ids) == 25
    assert first_ids + second_ids == expected
    # A broken cursor is the first page, not an error.
    assert _task_ids(reviewer_client.get(url, {"after": "not-a-cursor"})) == first_ids


def test_queue_detail_fragment_runs_a_bounded_number_of_queries(
    reviewer_client, world, queued_recommendation, django_assert_max_num_queries
):
    for n in range(30):
        queued_recommendation(world.churn, subject_key=f"ACC-{n:04d}")
    url = reverse("reviews:queue-detail", args=[world.churn_queue.pk])

    with django_assert_max_num_queries(10):
        response = reviewer_client.get(url, **HTMX)

    assert response.status_code == 200
    assert "<html" not in response.content.decode()
    assert len(_task_ids(response)) == 25
    assert "HX-Request" in response["Vary"]


# --- claiming -----------------------------------------------------------------------------------------


def test_claim_next_claims_and_opens_the_first_item(reviewer_client, world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task

    response = reviewer_client.post(reverse("reviews:claim-next", args=[world.churn_queue.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("reviews:task-detail", args=[task.pk])
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED and task.claimed_by == world.reviewer


def test_claim_next_with_htmx_answers_a_client_redirect(reviewer_client, world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task

    response = reviewer_client.post(reverse("reviews:claim-next", args=[world.churn_queue.pk]), **HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("reviews:task-detail", args=[task.pk])


def test_claim_next_on_a_queue_not_granted_or_not_there_is_a_404(reviewer_client, world, queued_recommendation):
    task = queued_recommendation(world.replies).review_task
    not_granted, not_there = (
        reviewer_client.post(reverse("reviews:claim-next", args=[pk])) for pk in (world.replies_queue.pk, 999_999)
    )
    assert not_granted.status_code == not_there.status_code == 404
    assert not_granted.content == not_there.content  # nothing tells a queue that exists from one that does not
    task.refresh_from_db()
    assert task.claimed_by is None


def test_claim_next_on_a_clear_queue_goes_back_with_a_message(reviewer_client, world):
    response = reviewer_client.post(reverse("reviews:claim-next", args=[world.churn_queue.pk]), follow=True)

    assert response.redirect_chain[-1][0] == reverse("reviews:queue-detail", args=[world.churn_queue.pk])
    assert "Queue is clear" in response.content.decode()


# --- item page ----------------------------------------------------------------------------------------


def test_task_page_claims_the_item_and_shows_why_it_is_here(reviewer_client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn, text="Offer a 20% renewal discount and call the sponsor.")
    task = recommendation.review_task

    response = reviewer_client.get(reverse("reviews:task-detail", args=[task.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Offer a 20% renewal discount and call the sponsor." in html
    assert str(recommendation.policy_version) in html
    rules = Rule.objects.filter(pk__in=[reason["rule_id"] for reason in task.reasons])
    assert rules.exists()
    for rule in rules:
        assert rule.name in html
        assert str(rule.condition).replace('"', "&quot;").replace("'", "&#x27;").replace("<", "&lt;") in html
    assert "0.40" in html and "crm_task" in html
    assert 'name="opened_at"' in html and 'type="hidden"' in html
    assert "Claimed by you until" in html
    assert 'src="/static/js/review_desk.js"' in html
    for key in (
        'data-review-action="approve"',
        'data-review-action="reject"',
        'data-review-action="skip"',
        "data-review-edit",
        "data-review-reason",
    ):
        assert key in html
    assert "<script>" not in html  # CSP: no inline script
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED and task.claimed_by == world.reviewer
    assert recommendation.events.filter(type=RecommendationEvent.Type.CLAIMED, actor_user=world.reviewer).count() == 1
    # Reopening renews the reviewer's own lease without a second claim event.
    reviewer_client.get(reverse("reviews:task-detail", args=[task.pk]))
    assert recommendation.events.filter(type=RecommendationEvent.Type.CLAIMED).count() == 1


def test_task_page_shows_the_context_snapshot(reviewer_client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)
    run = Run.objects.create(use_case=world.churn, subject_key="ACC-0001", trigger=Run.Trigger.API)
    ContextSnapshot.objects.create(
        run=run,
        dataset=world.accounts,
        source="Northwind CRM & helpdesk / accounts",
        record_ids=["ACC-0001"],
        records=[{"account_id": "ACC-0001", "arr": 52000, "nps": -12}],
        content_hash="0" * 64,
        data_as_of=dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.UTC),
        freshness=ContextSnapshot.Freshness.STALE,
    )
    Recommendation.objects.filter(pk=recommendation.pk).update(run=run)

    html = reviewer_client.get(reverse("reviews:task-detail", args=[recommendation.review_task.pk])).content.decode()

    assert "Northwind CRM &amp; helpdesk / accounts" in html
    assert "Mar 1 2024, 09:30" in html
    assert "Stale" in html and "text-bg-danger" in html
    assert "52000" in html and "arr" in html and "-12" in html


def test_task_page_shows_the_original_of_a_redacted_output(reviewer_client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn, text="Call the sponsor; customer wrote from jane@acme.example.")

    html = reviewer_client.get(reverse("reviews:task-detail", args=[recommendation.review_task.pk])).content.decode()

    assert "[email redacted]" in html
    assert "Original, before redaction" in html and "jane@acme.example" in html


def test_a_second_reviewer_sees_who_holds_the_item_and_cannot_decide(
    client, world, queued_recommendation, second_reviewer
):
    recommendation = queued_recommendation(world.churn)
    task = recommendation.review_task
    client.force_login(world.reviewer)
    client.get(reverse("reviews:task-detail", args=[task.pk]))
    task.refresh_from_db()

    client.force_login(second_reviewer)
    response = client.get(reverse("reviews:task-detail", args=[task.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert f"Claimed by reviewer until {task.lease_expires_at:%H:%M}" in html
    assert re.search(r"<fieldset\s+disabled>", html)
    task.refresh_from_db()
    assert task.claimed_by == world.reviewer

    response = _decide(client, task, htmx=True, decision="approve")
    assert response.status_code == 200
    assert "claimed by reviewer" in response.content.decode()
    assert not task.verdicts.exists()
    recommendation.refresh_from_db()
    assert recommendation.status == Recommendation.Status.QUEUED


# --- decisions ----------------------------------------------------------------------------------------


def test_approve_releases_the_output_and_records_the_reviewer(reviewer_client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)
    task = recommendation.review_task
    reviewer_client.get(reverse("reviews:task-detail", args=[task.pk]))

    response = _decide(reviewer_client, task, decision="approve")

    assert response.status_code == 302
    assert response["Location"] == reverse("reviews:queue-detail", args=[world.churn_queue.pk])
    recommendation.refresh_from_db()
    assert recommendation.status in {"approved", "delivering", "delivered"}
    event = recommendation.events.get(type=RecommendationEvent.Type.APPROVED)
    assert event.actor_user == world.reviewer
    verdict = task.verdicts.get()
    assert verdict.decision == ReviewVerdict.Decision.APPROVE and verdict.reviewer == world.reviewer
    assert 10 <= verdict.seconds_spent < 60


def test_approve_with_htmx_claims_and_opens_the_next_item(reviewer_client, world, queued_recommendation):
    first = queued_recommendation(world.churn, subject_key="ACC-0001").review_task
    second = queued_recommendation(world.churn, subject_key="ACC-0002").review_task
    reviewer_client.get(reverse("reviews:task-detail", args=[first.pk]))

    response = _decide(reviewer_client, first, htmx=True, decision="approve")

    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("reviews:task-detail", args=[second.pk])
    second.refresh_from_db()
    assert second.status == ReviewTask.Status.CLAIMED and second.claimed_by == world.reviewer

    response = _decide(reviewer_client, second, htmx=True, decision="approve")
    assert response["HX-Redirect"] == reverse("reviews:queue-detail", args=[world.churn_queue.pk])
    follow = reviewer_client.get(response["HX-Redirect"])
    assert "Queue is clear" in follow.content.decode()


def test_edit_stores_the_diff_and_delivers_the_edited_text(reviewer_client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn, text="Offer a 20% renewal discount and call the sponsor.")
    task = recommendation.review_task

    response = _decide(
        reviewer_client, task, decision="edit", edited_text="Offer a 10% renewal discount and call the sponsor."
    )

    assert response.status_code == 302
    verdict = task.verdicts.get()
    assert verdict.decision == ReviewVerdict.Decision.EDIT
    assert "-Offer a 20% renewal discount" in verdict.diff and "+Offer a 10% renewal discount" in verdict.diff
    assert verdict.edit_distance == 1
    recommendation.refresh_from_db()
    assert recommendation.final_content["text"] == "Offer a 10% renewal discount and call the sponsor."
    assert recommendation.status in {"edited", "delivering", "delivered"}
    assert recommendation.events.get(type=RecommendationEvent.Type.EDITED).actor_user == world.reviewer


def test_edit_without_a_change_is_refused(reviewer_client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)

    response = _decide(
        reviewer_client, recommendation.review_task, htmx=True, decision="edit", edited_text=recommendation.text
    )

    assert response.status_code == 200
    assert "The text is unchanged" in response.content.decode()
    assert not ReviewVerdict.objects.exists()


def test_reject_without_a_reason_shows_the_field_error_and_saves_nothing(reviewer_client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)
    task = recommendation.review_task

    response = _decide(reviewer_client, task, htmx=True, decision="reject", comment="Not like this")

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and 'id="decision-panel"' in html
    assert "Choose a reason to reject." in html
    assert re.search(r'<select[^>]*name="reason_code"[^>]*aria-invalid="true"', html)
    assert "Not like this" in html  # what the reviewer typed is kept
    assert not task.verdicts.exists()
    recommendation.refresh_from_db()
    assert recommendation.status == Recommendation.Status.QUEUED

    # Without htmx the whole page comes back, still 200, with the same error.
    response = _decide(reviewer_client, task, decision="reject")
    assert response.status_code == 200
    assert "<html" in response.content.decode() and "Choose a reason to reject." in response.content.decode()


def test_reject_with_a_reason_rejects(reviewer_client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)

    response = _decide(
        reviewer_client, recommendation.review_task, decision="reject", reason_code="stale_data", comment="Old ARR"
    )

    assert response.status_code == 302
    recommendation.refresh_from_db()
    assert recommendation.status == Recommendation.Status.REJECTED
    verdict = recommendation.review_task.verdicts.get()
    assert verdict.reason_code == "stale_data" and verdict.comment == "Old ARR"
    event = recommendation.events.get(type=RecommendationEvent.Type.REJECTED)
    assert event.actor_user == world.reviewer and event.payload["reason"] == "stale_data"


def test_a_decided_item_cannot_be_decided_twice(reviewer_client, world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task
    _decide(reviewer_client, task, decision="approve")

    response = _decide(reviewer_client, task, htmx=True, decision="reject", reason_code="other")

    assert response.status_code == 200
    assert "already been decided" in response.content.decode()
    assert task.verdicts.count() == 1
    page = reviewer_client.get(reverse("reviews:task-detail", args=[task.pk])).content.decode()
    assert "Approved by reviewer" in page and "data-review-form" not in page


def test_skip_opens_another_item_and_decides_nothing(reviewer_client, world, queued_recommendation):
    first = queued_recommendation(world.churn, subject_key="ACC-0001").review_task
    second = queued_recommendation(world.churn, subject_key="ACC-0002").review_task
    reviewer_client.get(reverse("reviews:task-detail", args=[first.pk]))  # opening claims it
    first.refresh_from_db()
    assert first.claimed_by == world.reviewer

    response = _decide(reviewer_client, first, htmx=True, decision="skip")

    assert response["HX-Redirect"] == reverse("reviews:task-detail", args=[second.pk])
    assert not ReviewVerdict.objects.exists()
    first.refresh_from_db()
    assert first.status == "open" and first.claimed_by is None  # given back for someone else
    response = _decide(reviewer_client, second, decision="skip")
    assert response["Location"] == reverse("reviews:task-detail", args=[first.pk])


def test_unknown_decision_is_a_field_error(reviewer_client, world, queued_recommendation):
    task = queued_recommendation(world.churn).review_task

    response = _decide(reviewer_client, task, htmx=True, decision="delete")

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not task.verdicts.exists()


def test_queue_counters_stop_counting_at_the_cap(reviewer_client, world, queued_recommendation, monkeypatch):
    """A big queue shows "N+" instead of a count of every pending row (PITFALLS #4)."""
    from apps.reviews import selectors

    for n in range(3):
        queued_recommendation(subject_key=f"ACC-{n:04d}")
    monkeypatch.setattr(selectors, "COUNT_CAP", 2)
    body = reviewer_client.get(reverse("reviews:queue-list")).content.decode()
    assert '<td class="text-end" data-counter="pending">2+</td>' in body
    monkeypatch.setattr(selectors, "COUNT_CAP", 10_000)
    body = reviewer_client.get(reverse("reviews:queue-list")).content.decode()
    assert '<td class="text-end" data-counter="pending">3</td>' in body
