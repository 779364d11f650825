"""Reviewers in parallel threads (each with its own database connection) clear one queue through the real
services, claim-next then approve, until it is empty: no item is claimed twice, no verdict is lost.

PostgreSQL: 8 reviewers × 1,000 items (claim-next is `SELECT … FOR UPDATE SKIP LOCKED`); run with
DATABASE_URL=postgres://…. SQLite: 4 reviewers × 1,000 items (a conditional UPDATE; writers queue on the
database lock), on a copy of the test database in a WAL file with the suite's busy timeout and IMMEDIATE
transactions, as `make run` uses SQLite: the suite's in-memory shared-cache test database fails a second
writer at once ("database table is locked") instead of letting it wait.
"""

import datetime as dt
import sqlite3
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count

from apps.core import clock
from apps.core.actors import Actor
from apps.reviews import services
from apps.reviews.models import ReviewTask, ReviewVerdict
from apps.workflows.models import Recommendation, RecommendationEvent

ITEMS = 1_000


def _fill(world, count: int) -> list[int]:
    """`count` queued outputs of the churn use case with their review tasks, mixed priorities and ages."""
    world.churn.destinations.clear()  # approvals deliver nowhere: the race under test is claim + verdict
    now = clock.now()
    recommendations = Recommendation.objects.bulk_create(
        Recommendation(
            use_case=world.churn,
            subject_key=f"ACC-{i:05d}",
            content={"text": f"Call the sponsor of account {i}."},
            status=Recommendation.Status.QUEUED,
            created_at=now - dt.timedelta(seconds=count - i),
        )
        for i in range(count)
    )
    tasks = ReviewTask.objects.bulk_create(
        ReviewTask(
            queue=world.churn_queue,
            recommendation=recommendation,
            priority=i % 3,
            created_at=recommendation.created_at,
            due_at=now + dt.timedelta(hours=4),
        )
        for i, recommendation in enumerate(recommendations)
    )
    return [task.pk for task in tasks]


def _use(database) -> None:
    """Point this thread's connection at the SQLite file `database` (None: the test database)."""
    if database is not None:
        connection.settings_dict = {**connection.settings_dict, "NAME": str(database)}


def _in_thread(function, database) -> None:
    """Run `function` in a thread of its own on `database`, raising what it raised."""
    failure = []

    def target():
        try:
            _use(database)
            function()
        except BaseException as exc:
            failure.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _reviewers(world, count: int) -> list:
    users = []
    for i in range(count):
        user = get_user_model().objects.create_user(f"parallel-{i}", password=world.password)
        user.groups.add(world.churn_reviewers)
        users.append(user)
    return users


def _clear_in_parallel(world, users: list, database=None) -> dict:
    reviewers = len(users)
    decided: dict[int, list[int]] = {user.pk: [] for user in users}
    errors: list[BaseException] = []
    start = threading.Barrier(reviewers)

    def review(user):
        actor = Actor(user=user)
        try:
            _use(database)
            start.wait()
            while True:
                task = services.review_task_claim_next(actor=actor, queue=world.churn_queue)
                if task is None:
                    break
                services.review_task_decide(actor=actor, task=task, decision="approve", seconds_spent=1.0)
                decided[user.pk].append(task.pk)
        except BaseException as exc:  # reported by the test, with the reviewer
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=review, args=(user,)) for user in users]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return {
        "decided": decided,
        "errors": errors,
        "seconds": time.monotonic() - started,
        "alive": any(thread.is_alive() for thread in threads),
    }


def _assert_cleared_once(task_ids: list[int], outcome: dict) -> None:
    assert not outcome["alive"], "a reviewer thread did not finish"
    assert outcome["errors"] == []
    decided = outcome["decided"]
    by_thread = [pk for pks in decided.values() for pk in pks]
    assert sorted(by_thread) == sorted(task_ids)  # every item decided, by exactly one reviewer
    assert sum(1 for pks in decided.values() if pks) > 1  # the reviewers did work side by side

    # What the database says, independently of the threads' own accounts.
    assert ReviewTask.objects.filter(pk__in=task_ids).exclude(status=ReviewTask.Status.DECIDED).count() == 0
    verdicts = ReviewVerdict.objects.filter(task_id__in=task_ids)
    assert verdicts.count() == len(task_ids)  # 0 verdicts lost
    assert not verdicts.values("task").annotate(n=Count("pk")).filter(n__gt=1).exists()
    claims = RecommendationEvent.objects.filter(
        recommendation__review_task__in=task_ids, type=RecommendationEvent.Type.CLAIMED
    )
    per_item = claims.values("recommendation").annotate(n=Count("pk"))
    assert per_item.count() == len(task_ids) and not per_item.filter(n__gt=1).exists()  # 0 items claimed twice
    # The reviewer who claimed an item is the one who decided it.
    for pk, claimed_by, reviewer in ReviewTask.objects.filter(pk__in=task_ids).values_list(
        "pk", "claimed_by", "verdicts__reviewer"
    ):
        assert claimed_by == reviewer, pk
    approved = Recommendation.objects.filter(review_task__in=task_ids, status=Recommendation.Status.APPROVED)
    assert approved.count() == len(task_ids)


@pytest.mark.django_db(transaction=True)
def test_eight_reviewers_on_postgresql_clear_1000_items_once(world):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (FOR UPDATE SKIP LOCKED): run with DATABASE_URL=postgres://…")
    task_ids = _fill(world, ITEMS)
    outcome = _clear_in_parallel(world, _reviewers(world, 8))
    _assert_cleared_once(task_ids, outcome)
    assert outcome["seconds"] < 60


@pytest.mark.django_db(transaction=True)
def test_four_reviewers_on_sqlite_clear_1000_items_once(world, tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite variant (conditional UPDATE); PostgreSQL runs the 8-reviewer test")
    task_ids = _fill(world, ITEMS)
    users = _reviewers(world, 4)
    database = tmp_path / "claims.sqlite3"
    with sqlite3.connect(database) as copy:
        connection.ensure_connection()
        connection.connection.backup(copy)
    outcome = _clear_in_parallel(world, users, database=database)
    _in_thread(lambda: _assert_cleared_once(task_ids, outcome), database)
    assert outcome["seconds"] < 60
