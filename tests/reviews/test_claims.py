"""Claims: claim-next order, leases (renewal, expiry), lead-only items, a lead's takeover, and permissions."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied, ServiceError
from apps.reviews import services
from apps.reviews.models import ReviewQueueUserObjectPermission, ReviewTask, ReviewVerdict
from apps.workflows.events import chain_verify
from apps.workflows.models import RecommendationEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
S = ReviewTask.Status


@pytest.fixture
def tasks(world, queued_recommendation):
    """Three churn tasks: ACC-1 and ACC-2 at priority 0 (ACC-1 older), ACC-3 at priority 5."""
    made = []
    for i in range(1, 4):
        task = queued_recommendation(world.churn, subject_key=f"ACC-{i}").review_task
        ReviewTask.objects.filter(pk=task.pk).update(
            created_at=clock.now() - dt.timedelta(minutes=10 - i), priority=5 if i == 3 else 0
        )
        made.append(task)
    return made


def _claim_next(user, queue):
    return services.review_task_claim_next(actor=Actor(user=user), queue=queue)


def _events(task, type):
    return list(RecommendationEvent.objects.filter(recommendation_id=task.recommendation_id, type=type))


def _hold(task, user, *, minutes_ago=3, status=S.CLAIMED):
    """`user` holds `task` since `minutes_ago`, with the queue's lease still running."""
    claimed_at = clock.now() - dt.timedelta(minutes=minutes_ago)
    ReviewTask.objects.filter(pk=task.pk).update(
        status=status, claimed_by=user, claimed_at=claimed_at, lease_expires_at=claimed_at + task.queue.lease
    )
    task.refresh_from_db()
    return task


# --- claim-next ---------------------------------------------------------------------------------------------


def test_claim_next_takes_the_highest_priority_then_the_oldest(world, tasks, second_reviewer):
    acc1, acc2, acc3 = tasks
    assert _claim_next(world.reviewer, world.churn_queue) == acc3
    assert _claim_next(second_reviewer, world.churn_queue) == acc1
    acc3.refresh_from_db()
    assert acc3.status == S.CLAIMED and acc3.claimed_by == world.reviewer
    assert acc3.lease_expires_at == acc3.claimed_at + world.churn_queue.lease
    assert len(_events(acc3, RecommendationEvent.Type.CLAIMED)) == 1


def test_claim_next_locks_with_skip_locked_on_postgresql_and_updates_conditionally_elsewhere(world, tasks):
    with CaptureQueriesContext(connection) as queries:
        _claim_next(world.reviewer, world.churn_queue)
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("PREPARE")]
    if connection.vendor == "postgresql":
        # One statement picks and claims; what it runs is the session's prepared statement.
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name = 'reviews_claim_next'")
            (claim,) = cursor.fetchone()
        assert claim.startswith("PREPARE reviews_claim_next AS WITH claimed AS (UPDATE reviews_reviewtask SET")
        assert claim.count("LIMIT 1 FOR UPDATE SKIP LOCKED") == 2  # expired leases, then open items
        assert claim.endswith("FOR UPDATE OF r")  # the recommendation, for its event chain
        assert [sql.split("(")[0] for sql in statements if sql.startswith("EXECUTE")] == [
            "EXECUTE reviews_claim_standing",
            "EXECUTE reviews_claim_next",
        ]
        assert not any("reviews_reviewtask" in sql for sql in statements)  # no other read or write of tasks
        # grants and own claim; BEGIN, claim, chain head, event, COMMIT
        assert len(statements) == 6, statements
    else:
        selects = [sql for sql in statements if sql.startswith("SELECT") and "ORDER BY" in sql]
        updates = [sql for sql in statements if sql.startswith('UPDATE "reviews_reviewtask"')]
        assert not any("FOR UPDATE" in sql for sql in selects)
        assert len(updates) == 1 and '"lease_expires_at" <' in updates[0]  # WHERE still claimable


def test_claim_next_returns_the_task_as_claimed_with_its_event_chained(world, tasks):
    task = _claim_next(world.reviewer, world.churn_queue)
    stored = ReviewTask.objects.get(pk=task.pk)
    assert (task.status, task.claimed_by_id, task.claimed_at, task.lease_expires_at, task.recommendation_id) == (
        stored.status,
        world.reviewer.pk,
        stored.claimed_at,
        stored.lease_expires_at,
        stored.recommendation_id,
    )
    if connection.vendor == "postgresql":
        assert task.queue is world.churn_queue  # not fetched again
    assert task.reasons == stored.reasons  # left out of the claim, read when asked for
    (event,) = _events(task, RecommendationEvent.Type.CLAIMED)
    assert event.actor_user == world.reviewer and event.at >= task.claimed_at
    assert event.payload == {"queue": world.churn_queue.name, "lease_until": task.lease_expires_at.isoformat(" ")}
    assert chain_verify(task.recommendation) is None


def test_claim_next_needs_the_grant_to_the_user_or_their_group_or_a_superuser(world, tasks):
    outsider = UserFactory()
    with pytest.raises(PermissionDenied):
        _claim_next(outsider, world.churn_queue)
    grant = Permission.objects.get(codename="review_reviewqueue")
    ReviewQueueUserObjectPermission.objects.create(user=outsider, permission=grant, content_object=world.churn_queue)
    assert _claim_next(outsider, world.churn_queue) == tasks[2]
    assert _claim_next(UserFactory(is_superuser=True), world.churn_queue) == tasks[0]
    inactive = UserFactory(is_active=False)
    inactive.groups.add(world.churn_reviewers)
    with pytest.raises(PermissionDenied):
        _claim_next(inactive, world.churn_queue)


def test_a_held_lead_item_is_no_own_claim_once_the_lead_grant_is_gone(world, tasks, lead):
    """A former lead still holding an escalated item is not sent back to it: they get the next open item."""
    _hold(tasks[2], lead, status=S.ESCALATED)
    assert _claim_next(lead, world.churn_queue) == tasks[2]  # a lead gets their own claim back
    lead.groups.clear()
    lead.groups.add(world.churn_reviewers)
    assert _claim_next(lead, world.churn_queue) == tasks[0]


@pytest.mark.django_db(transaction=True)  # SET LOCAL ends with the transaction, not a test's savepoint
def test_a_claim_commits_without_waiting_for_the_wal_flush_and_only_the_claim(world, tasks):
    """A lost claim only returns the item, so its transaction does not wait for the flush; the session's other
    writes still do."""
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    during = []

    def at_the_event_insert(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "workflows_recommendationevent"'):
            with connection.cursor() as cursor:
                cursor.execute("SHOW synchronous_commit")
                during.append(cursor.fetchone()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(at_the_event_insert):
        assert _claim_next(world.reviewer, world.churn_queue) == tasks[2]
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert (during, cursor.fetchone()[0]) == (["off"], "on")


@pytest.mark.django_db(transaction=True)
def test_a_new_database_session_prepares_the_claim_again(world, tasks, second_reviewer):
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    assert _claim_next(world.reviewer, world.churn_queue) == tasks[2]
    connection.close()  # the session and its prepared statements are gone
    assert _claim_next(second_reviewer, world.churn_queue) == tasks[0]


def test_without_server_side_cursors_claim_next_runs_plain_statements(world, tasks, settings):
    """DISABLE_SERVER_SIDE_CURSORS (a pooler in transaction mode) also means no session-prepared statements."""
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    try:
        with CaptureQueriesContext(connection) as queries:
            assert _claim_next(world.reviewer, world.churn_queue) == tasks[2]
    finally:
        del connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"]
    assert not any(q["sql"].startswith(("PREPARE", "EXECUTE")) for q in queries.captured_queries)
    if connection.vendor == "postgresql":
        assert any("FOR UPDATE SKIP LOCKED" in q["sql"] for q in queries.captured_queries)


def test_claim_next_returns_the_reviewers_own_live_claim(world, tasks):
    first = _claim_next(world.reviewer, world.churn_queue)
    assert _claim_next(world.reviewer, world.churn_queue) == first
    assert ReviewTask.objects.filter(claimed_by=world.reviewer).count() == 1
    assert len(_events(first, RecommendationEvent.Type.CLAIMED)) == 1


def test_an_expired_lease_returns_the_item_to_the_queue(world, tasks, second_reviewer):
    acc3 = _hold(tasks[2], world.reviewer, minutes_ago=30)  # the 10-minute lease ran out 20 minutes ago
    taken = _claim_next(second_reviewer, world.churn_queue)
    assert taken == acc3
    taken.refresh_from_db()
    assert taken.claimed_by == second_reviewer and taken.lease_expires_at > clock.now()


def test_claim_next_skips_consensus_items_the_reviewer_has_voted_on(world, tasks, second_reviewer):
    acc1, acc2, acc3 = tasks
    ReviewTask.objects.filter(pk=acc3.pk).update(required_reviews=2)
    ReviewVerdict.objects.create(task=acc3, reviewer=world.reviewer, decision=ReviewVerdict.Decision.APPROVE)
    assert _claim_next(world.reviewer, world.churn_queue) == acc1
    assert _claim_next(second_reviewer, world.churn_queue) == acc3  # the second vote is someone else's


def test_claim_next_on_a_clear_queue_is_none(world, tasks, second_reviewer):
    for task in tasks:
        _hold(task, second_reviewer)
    assert _claim_next(world.reviewer, world.churn_queue) is None


def test_the_beat_returns_expired_leases_and_leaves_lead_items_with_the_leads(world, tasks, lead):
    claimed = _hold(tasks[0], world.reviewer, minutes_ago=30)
    escalated = _hold(tasks[1], lead, minutes_ago=30, status=S.ESCALATED)
    live = _hold(tasks[2], world.reviewer, minutes_ago=1)

    assert services.queue_lease_release_expired() == 2

    for task in (claimed, escalated, live):
        task.refresh_from_db()
    assert (claimed.status, claimed.claimed_by, claimed.lease_expires_at) == (S.OPEN, None, None)
    assert (escalated.status, escalated.claimed_by) == (S.ESCALATED, None)
    assert live.status == S.CLAIMED and live.claimed_by == world.reviewer


# --- lead-only items ------------------------------------------------------------------------------------------


def test_escalated_and_disputed_items_go_to_leads_first_and_keep_their_status(world, tasks, lead):
    acc1, acc2, _ = tasks
    ReviewTask.objects.filter(pk=acc1.pk).update(status=S.ESCALATED)
    ReviewTask.objects.filter(pk=acc2.pk).update(status=S.ADJUDICATION)

    # A reviewer never gets them, by claim-next or by opening them.
    assert _claim_next(world.reviewer, world.churn_queue) == tasks[2]
    acc1.refresh_from_db()
    with pytest.raises(PermissionDenied):
        services.review_task_claim(actor=Actor(user=world.reviewer), task=acc1)

    first = _claim_next(lead, world.churn_queue)
    assert first == acc1  # lead items before the rest, oldest first
    first.refresh_from_db()
    assert first.status == S.ESCALATED and first.claimed_by == lead
    assert _claim_next(lead, world.churn_queue) == first  # the lead's own live claim
    services.review_task_release(actor=Actor(user=lead), task=first)
    first.refresh_from_db()
    assert (first.status, first.claimed_by) == (S.ESCALATED, None)


# --- renewal --------------------------------------------------------------------------------------------------


def test_renew_extends_ones_own_lease_without_a_new_claim_event(world, tasks):
    task = _hold(tasks[0], world.reviewer, minutes_ago=8)
    before = task.lease_expires_at
    renewed = services.review_task_lease_renew(actor=Actor(user=world.reviewer), task=task)
    assert renewed.lease_expires_at > before
    assert renewed.lease_expires_at == pytest.approx(clock.now() + world.churn_queue.lease, abs=dt.timedelta(seconds=5))
    assert renewed.claimed_by == world.reviewer and renewed.status == S.CLAIMED
    assert _events(task, RecommendationEvent.Type.CLAIMED) == []


def test_renew_is_a_conflict_once_the_claim_is_not_yours(world, tasks, second_reviewer):
    task = _hold(tasks[0], second_reviewer)
    with pytest.raises(Conflict, match="now claimed by reviewer-two"):
        services.review_task_lease_renew(actor=Actor(user=world.reviewer), task=task)
    services.review_task_release(actor=Actor(user=second_reviewer), task=task)
    with pytest.raises(Conflict, match="claim on this item has ended"):
        services.review_task_lease_renew(actor=Actor(user=second_reviewer), task=task)
    task.refresh_from_db()
    assert task.status == S.OPEN and task.lease_expires_at is None


def test_renew_view_answers_the_claim_state_fragment_or_409(client, world, tasks, second_reviewer):
    task = _hold(tasks[0], world.reviewer, minutes_ago=8)
    url = reverse("reviews:task-renew", args=[task.pk])
    client.force_login(world.reviewer)

    response = client.post(url, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<span id="claim-state">') and "Claimed by you until" in html
    assert "data-lease-renew" in html  # keeps renewing
    task.refresh_from_db()
    assert task.lease_expires_at > clock.now() + dt.timedelta(minutes=9)

    _hold(task, second_reviewer)
    response = client.post(url, **HTMX)
    assert response.status_code == 409
    assert response.content.decode() == "This item is now claimed by reviewer-two."
    task.refresh_from_db()
    assert task.claimed_by == second_reviewer


def test_the_item_page_renews_the_lease_from_a_static_script(client, world, tasks):
    client.force_login(world.reviewer)
    html = client.get(reverse("reviews:task-detail", args=[tasks[0].pk])).content.decode()
    assert f'hx-post="{reverse("reviews:task-renew", args=[tasks[0].pk])}"' in html
    assert 'hx-trigger="every 60s"' in html
    assert "js/review_desk.js" in html


# --- takeover -------------------------------------------------------------------------------------------------


def test_a_lead_takes_over_a_claim_with_a_reason(world, tasks, lead):
    task = _hold(tasks[0], world.reviewer)
    taken = services.review_task_take_over(actor=Actor(user=lead), task=task, reason="  Reviewer went home  ")
    assert taken.claimed_by == lead and taken.status == S.CLAIMED
    assert taken.lease_expires_at == pytest.approx(clock.now() + world.churn_queue.lease, abs=dt.timedelta(seconds=5))
    (event,) = _events(task, RecommendationEvent.Type.CLAIM_TAKEN_OVER)
    assert event.payload["previous_holder"] == "reviewer"
    assert event.payload["previous_holder_id"] == world.reviewer.pk
    assert event.payload["reason"] == "Reviewer went home"
    assert event.actor_user == lead and event.actor_label == "churn-lead"
    # The former holder can neither renew nor decide any more.
    with pytest.raises(Conflict):
        services.review_task_lease_renew(actor=Actor(user=world.reviewer), task=task)
    with pytest.raises(Conflict):
        services.review_task_decide(actor=Actor(user=world.reviewer), task=task, decision="approve")


def test_takeover_needs_a_reason_a_lead_and_someone_else_holding(world, tasks, lead, second_reviewer):
    task = _hold(tasks[0], world.reviewer)
    with pytest.raises(ServiceError) as error:
        services.review_task_take_over(actor=Actor(user=lead), task=task, reason="   ")
    assert error.value.field == "reason"
    with pytest.raises(PermissionDenied):
        services.review_task_take_over(actor=Actor(user=second_reviewer), task=task, reason="mine now")
    with pytest.raises(Conflict, match="Nobody else holds"):
        services.review_task_take_over(actor=Actor(user=lead), task=tasks[1], reason="open item")
    expired = _hold(tasks[2], world.reviewer, minutes_ago=30)
    with pytest.raises(Conflict, match="Nobody else holds"):
        services.review_task_take_over(actor=Actor(user=lead), task=expired, reason="expired")
    task.refresh_from_db()
    assert task.claimed_by == world.reviewer
    assert not RecommendationEvent.objects.filter(type=RecommendationEvent.Type.CLAIM_TAKEN_OVER).exists()


def test_page_shows_who_holds_the_item_and_offers_takeover_only_to_leads(client, world, tasks, lead, second_reviewer):
    task = _hold(tasks[0], world.reviewer, minutes_ago=3)
    url = reverse("reviews:task-detail", args=[task.pk])

    client.force_login(second_reviewer)
    html = client.get(url).content.decode()
    assert f"Claimed by reviewer until {task.lease_expires_at:%H:%M}</strong>, 3 min" in html
    assert "data-take-over-form" not in html
    assert "<fieldset disabled>" in html

    client.force_login(lead)
    html = client.get(url, **HTMX).content.decode()
    assert "Claimed by reviewer until" in html and "data-take-over-form" in html
    assert reverse("reviews:task-take-over", args=[task.pk]) in html
    task.refresh_from_db()
    assert task.claimed_by == world.reviewer  # looking does not take it


def test_takeover_view(client, world, tasks, lead):
    task = _hold(tasks[0], world.reviewer)
    url = reverse("reviews:task-take-over", args=[task.pk])
    client.force_login(lead)

    response = client.post(url, {"reason": ""}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="take-over-reason-error"' in html and "A reason is required" in html
    task.refresh_from_db()
    assert task.claimed_by == world.reviewer

    response = client.post(url, {"reason": "Urgent customer"}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == reverse("reviews:task-detail", args=[task.pk])
    task.refresh_from_db()
    assert task.claimed_by == lead

    client.force_login(world.reviewer)
    html = client.get(reverse("reviews:task-detail", args=[task.pk])).content.decode()
    assert "Claimed by churn-lead until" in html


# --- permissions ----------------------------------------------------------------------------------------------


def test_a_reviewer_without_the_lead_grant_cannot_take_over(client, world, tasks, second_reviewer):
    task = _hold(tasks[0], world.reviewer)
    client.force_login(second_reviewer)
    response = client.post(reverse("reviews:task-take-over", args=[task.pk]), {"reason": "mine"})
    assert response.status_code == 403
    assert client.post(reverse("reviews:task-take-over", args=[task.pk]), {"reason": "mine"}, **HTMX).status_code == 403
    task.refresh_from_db()
    assert task.claimed_by == world.reviewer


def test_a_reviewer_without_the_grant_cannot_claim_renew_or_take_over(client, world, queued_recommendation, lead):
    """Support replies are not granted to the churn reviewer nor to the churn lead: 404 by page, fragment and
    guessed id; the services refuse too."""
    task = _hold(queued_recommendation(world.replies).review_task, world.support_lead)
    for user in (world.reviewer, lead):
        client.force_login(user)
        assert client.post(reverse("reviews:claim-next", args=[world.replies_queue.pk])).status_code == 404
        assert client.post(reverse("reviews:claim-next", args=[world.replies_queue.pk]), **HTMX).status_code == 404
        for name in ("task-renew", "task-take-over"):
            url = reverse(f"reviews:{name}", args=[task.pk])
            assert client.post(url, {"reason": "x"}).status_code == 404, name
            assert client.post(url, {"reason": "x"}, **HTMX).status_code == 404, name
            assert client.post(reverse(f"reviews:{name}", args=[999_999]), {"reason": "x"}).status_code == 404
        actor = Actor(user=user)
        for call, kwargs in (
            (services.review_task_claim_next, {"queue": world.replies_queue}),
            (services.review_task_claim, {"task": task}),
            (services.review_task_lease_renew, {"task": task}),
            (services.review_task_take_over, {"task": task, "reason": "x"}),
        ):
            with pytest.raises(PermissionDenied):
                call(actor=actor, **kwargs)
    task.refresh_from_db()
    assert task.claimed_by == world.support_lead


def test_anonymous_renew_and_takeover_go_to_login(client, world, tasks):
    for name in ("task-renew", "task-take-over"):
        response = client.post(reverse(f"reviews:{name}", args=[tasks[0].pk]))
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert client.get(reverse("reviews:task-renew", args=[tasks[0].pk])).status_code in (302, 405)
