import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from apps.core import clock
from apps.core.actors import Actor
from apps.delivery.services import feedback_record
from apps.reporting.models import DailyRollup
from apps.reporting.services import rollup_rebuild
from apps.reporting.tasks import rollup_refresh_task
from apps.reviews.models import ReviewTask, ReviewVerdict
from apps.reviews.services import review_task_decide
from apps.workflows.events import event_append
from apps.workflows.models import Recommendation, RecommendationEvent

pytestmark = pytest.mark.django_db

FIELDS = (
    "recommendations",
    "reviewed",
    "approved",
    "edited",
    "rejected",
    "blocked",
    "delivered",
    "shown",
    "accepted",
    "acted_on",
    "model_cost",
    "review_seconds",
    "cycle_seconds_total",
    "cycle_count",
)
T = RecommendationEvent.Type
DAY0 = dt.date(2025, 3, 1)


def at(day: dt.date, seconds: float) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


def random_history(world, seed: int = 7, days: int = 12, per_day: int = 5):
    """Recommendations, verdicts and events written straight to the tables, with timestamps spread over
    `days` days (some facts land a day or two after their recommendation, past the range's end)."""
    rng = random.Random(seed)
    actor = Actor(user=world.integrator)
    for offset in range(days):
        for _ in range(rng.randint(0, per_day)):
            use_case = rng.choice([world.churn, world.replies])
            created = at(DAY0 + dt.timedelta(days=offset), rng.uniform(0, 86_399))
            status = rng.choice(["delivered", "blocked", "queued_for_review", "rejected", "approved"])
            delivered_at = created + dt.timedelta(seconds=rng.uniform(1, 2 * 86_400)) if status == "delivered" else None
            rec = Recommendation.objects.create(
                use_case=use_case,
                subject_key=f"S-{rng.randint(1, 99)}",
                content={"text": "x"},
                cost=Decimal(rng.randint(0, 5000)) / Decimal("100000"),
                status=status,
                created_at=created,
                delivered_at=delivered_at,
            )
            event_append(recommendation=rec, type=T.RECEIVED, actor=actor, at=created)
            if status in ("rejected", "delivered", "approved") and rng.random() < 0.7:
                queue = use_case.review_queue
                decided = created + dt.timedelta(seconds=rng.uniform(10, 40_000))
                task = ReviewTask.objects.create(
                    queue=queue,
                    recommendation=rec,
                    created_at=created,
                    due_at=created + queue.sla,
                    status=ReviewTask.Status.DECIDED,
                )
                decision = "reject" if status == "rejected" else rng.choice(["approve", "edit"])
                ReviewVerdict.objects.create(
                    task=task,
                    reviewer=world.reviewer,
                    decision=decision,
                    seconds_spent=rng.uniform(5, 300),
                    created_at=decided,
                )
            if delivered_at:
                # Two destinations: two DELIVERED events, the recommendation counts once.
                for _ in range(rng.choice([1, 2])):
                    event_append(recommendation=rec, type=T.DELIVERED, actor=actor, at=delivered_at)
                moment = delivered_at
                for kind in (T.SHOWN, T.SHOWN, T.ACCEPTED, T.ACTED_ON, T.FEEDBACK_REJECTED):
                    if rng.random() < 0.6:
                        moment += dt.timedelta(seconds=rng.uniform(1, 30_000))
                        event_append(recommendation=rec, type=kind, actor=actor, at=moment)


def recompute_naively(start: dt.date, end: dt.date) -> dict:
    """The rollups, computed the slow obvious way: one Python pass over every fact."""
    rows = defaultdict(lambda: dict.fromkeys(FIELDS, 0))

    def day_of(moment):
        return moment.astimezone(dt.UTC).date()

    for rec in Recommendation.objects.all():
        day = day_of(rec.created_at)
        if start <= day <= end:
            row = rows[(rec.use_case_id, day)]
            row["recommendations"] += 1
            row["blocked"] += rec.status == "blocked"
            row["model_cost"] += rec.cost
        if rec.delivered_at and start <= day_of(rec.delivered_at) <= end:
            row = rows[(rec.use_case_id, day_of(rec.delivered_at))]
            row["cycle_count"] += 1
            row["cycle_seconds_total"] += (rec.delivered_at - rec.created_at).total_seconds()
    for verdict in ReviewVerdict.objects.select_related("task__recommendation"):
        day = day_of(verdict.created_at)
        if start <= day <= end:
            row = rows[(verdict.task.recommendation.use_case_id, day)]
            row["reviewed"] += 1
            row[{"approve": "approved", "edit": "edited", "reject": "rejected"}[verdict.decision]] += 1
            row["review_seconds"] += verdict.seconds_spent
    seen = set()
    names = {T.DELIVERED: "delivered", T.SHOWN: "shown", T.ACCEPTED: "accepted", T.ACTED_ON: "acted_on"}
    for event in RecommendationEvent.objects.select_related("recommendation"):
        day = day_of(event.at)
        key = (event.recommendation_id, event.type, day)
        if event.type in names and start <= day <= end and key not in seen:
            seen.add(key)
            rows[(event.recommendation.use_case_id, day)][names[event.type]] += 1
    return dict(rows)


def stored(start=None, end=None) -> dict:
    rollups = DailyRollup.objects.all()
    if start:
        rollups = rollups.filter(day__gte=start, day__lte=end)
    return {(r.use_case_id, r.day): {name: getattr(r, name) for name in FIELDS} for r in rollups}


def assert_same(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    for key, row in expected.items():
        for name in FIELDS:
            if name in ("review_seconds", "cycle_seconds_total"):
                assert actual[key][name] == pytest.approx(row[name], abs=1e-3), (key, name)
            else:
                assert actual[key][name] == row[name], (key, name)


def test_rebuild_equals_a_naive_recomputation(world):
    random_history(world)
    start, end = DAY0 + dt.timedelta(days=2), DAY0 + dt.timedelta(days=9)

    written = rollup_rebuild(start=start, end=end)

    expected = recompute_naively(start, end)
    assert written == len(expected) > 5
    assert_same(stored(), expected)
    totals = {name: sum(row[name] for row in expected.values()) for name in ("accepted", "cycle_count", "reviewed")}
    assert all(totals.values()), totals  # the random set exercises every kind of fact


def test_rebuild_uses_a_handful_of_queries_whatever_the_range(world, django_assert_max_num_queries):
    random_history(world)
    # Daily, hourly and rejection figures: ten grouped reads, then delete and insert each table; lift rows: two
    # trigger reads, the subjects already stored, then per 2,000 subjects their rows, outcomes and a delete.
    with django_assert_max_num_queries(28):
        rollup_rebuild(start=DAY0, end=DAY0 + dt.timedelta(days=1))
    with django_assert_max_num_queries(28):
        rollup_rebuild(start=DAY0 - dt.timedelta(days=400), end=DAY0 + dt.timedelta(days=30))


def test_rebuild_is_idempotent_and_replaces_stale_rows(world):
    random_history(world)
    start, end = DAY0, DAY0 + dt.timedelta(days=14)
    rollup_rebuild(start=start, end=end)
    first = stored()
    # A stale row (e.g. from facts since deleted) and a tampered one disappear on rebuild.
    DailyRollup.objects.create(use_case=world.churn, day=DAY0 - dt.timedelta(days=40), recommendations=3)
    DailyRollup.objects.filter(day=end).delete()
    DailyRollup.objects.filter(day=DAY0 + dt.timedelta(days=3)).update(accepted=999)
    outside = DailyRollup.objects.create(use_case=world.churn, day=DAY0 - dt.timedelta(days=1), recommendations=1)

    rollup_rebuild(start=DAY0 - dt.timedelta(days=40), end=DAY0 - dt.timedelta(days=2))
    rollup_rebuild(start=start, end=end)
    rollup_rebuild(start=start, end=end)

    assert DailyRollup.objects.filter(pk=outside.pk).exists()  # outside every rebuilt range: untouched
    outside.delete()
    assert stored() == first
    assert_same(first, recompute_naively(start, end))


def test_rebuild_of_one_use_case_leaves_the_others(world):
    random_history(world)
    start, end = DAY0, DAY0 + dt.timedelta(days=14)
    rollup_rebuild(start=start, end=end)
    DailyRollup.objects.filter(use_case=world.replies).update(shown=12345)

    rollup_rebuild(start=start, end=end, use_case_ids=[world.churn.pk])

    assert DailyRollup.objects.filter(use_case=world.replies).exclude(shown=12345).count() == 0
    assert_same(
        {k: v for k, v in stored().items() if k[0] == world.churn.pk},
        {k: v for k, v in recompute_naively(start, end).items() if k[0] == world.churn.pk},
    )


def test_rollups_follow_the_real_pipeline(world, queued_recommendation, django_capture_on_commit_callbacks):
    """Through the services: submit, review (edit), deliver, feedback from the business app."""
    day = dt.date(2025, 6, 2)
    with clock.simulated(at(day, 9 * 3600)):
        with django_capture_on_commit_callbacks(execute=True):
            rec = queued_recommendation(world.churn, cost=Decimal("0.0125"))
    with clock.simulated(at(day, 9 * 3600 + 600)):
        with django_capture_on_commit_callbacks(execute=True):
            review_task_decide(
                actor=Actor(user=world.reviewer),
                task=rec.review_task,
                decision="edit",
                edited_text="Call the sponsor this week.",
                seconds_spent=42,
            )
    rec.refresh_from_db()
    assert rec.status == Recommendation.Status.DELIVERED
    integrator = Actor(user=world.integrator)
    feedback_record(actor=integrator, event_id="e-1", recommendation_id=rec.pk, type="shown", at=at(day, 10 * 3600))
    feedback_record(
        actor=integrator,
        event_id="e-2",
        recommendation_id=rec.pk,
        type="accepted",
        at=at(day + dt.timedelta(days=1), 8 * 3600),
    )

    rollup_rebuild(start=day, end=day + dt.timedelta(days=1))

    first, second = DailyRollup.objects.filter(use_case=world.churn).order_by("day")
    assert (first.day, first.recommendations, first.reviewed, first.edited, first.delivered, first.shown) == (
        day,
        1,
        1,
        1,
        1,
        1,
    )
    assert first.model_cost == Decimal("0.0125") and first.review_seconds == 42
    assert first.cycle_count == 1 and first.cycle_seconds_total == pytest.approx(600, abs=1)
    assert (second.day, second.accepted, second.recommendations) == (day + dt.timedelta(days=1), 1, 0)


def test_refresh_task_recomputes_the_days_new_facts_touch(world):
    now = at(dt.date(2025, 7, 10), 3600)
    for days_ago in (0, 1, 2, 30):
        Recommendation.objects.create(
            use_case=world.churn, subject_key="A", content={}, created_at=now - dt.timedelta(days=days_ago)
        )
    with clock.simulated(now):
        written = rollup_refresh_task.delay().get()
    assert written == 4
    assert sorted(DailyRollup.objects.values_list("day", flat=True)) == [
        dt.date(2025, 6, 10),
        dt.date(2025, 7, 8),
        dt.date(2025, 7, 9),
        dt.date(2025, 7, 10),
    ]


def test_command_rebuilds_and_says_what(world):
    random_history(world)
    out = StringIO()
    call_command("rollup_rebuild", "--start", "2025-03-01", "--end", "2025-03-20", stdout=out)
    assert "2025-03-01 to 2025-03-20 (20 days)" in out.getvalue() and "all use cases" in out.getvalue()
    assert DailyRollup.objects.count() == len(recompute_naively(dt.date(2025, 3, 1), dt.date(2025, 3, 20)))

    out = StringIO()
    with clock.simulated(at(dt.date(2025, 3, 5), 100)):
        call_command("rollup_rebuild", "--days", "3", "--use-case", "churn-risk", stdout=out)
    assert "for churn-risk, 2025-03-03 to 2025-03-05 (3 days)" in out.getvalue()
