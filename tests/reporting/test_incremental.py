"""The incremental refresh (Celery beat) keeps the rollups (and the lift rows) equal to an exact recomputation,
reading only the facts written since its last run."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.core.actors import Actor
from apps.reporting.lift import DEFAULT_POSITIVE_KINDS, lift_groups_live, lift_groups_rolled_up
from apps.reporting.models import (
    BusinessOutcome,
    DailyRollup,
    HourlyRollup,
    LiftSubjectDay,
    RejectionRollup,
    RollupWatermark,
)
from apps.reporting.services import rollup_rebuild, rollup_refresh
from apps.reporting.tasks import rollup_refresh_task
from apps.reviews.models import ReviewTask, ReviewVerdict
from apps.workflows.events import event_append
from apps.workflows.models import Recommendation, RecommendationEvent, Run

pytestmark = pytest.mark.django_db

T = RecommendationEvent.Type
DAY0 = dt.date(2025, 3, 1)
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
SPAN_DAYS = 4
SUBJECTS = 6  # few subjects, so they are triggered again, in both groups, and get several outcomes
FIGURES = (
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
    "cycle_count",
)


def snapshot() -> dict:
    def rows(model, key):
        return {
            (r.use_case_id, getattr(r, key)): (
                *(getattr(r, name) for name in FIGURES),
                round(r.review_seconds, 3),
                round(r.cycle_seconds_total, 3),
            )
            for r in model.objects.all()
        }

    return {
        "daily": rows(DailyRollup, "day"),
        "hourly": rows(HourlyRollup, "hour"),
        "rejections": set(RejectionRollup.objects.values_list("use_case_id", "day", "source", "reason", "count")),
        "lift": {
            (*key, None if hours is None else round(hours, 6))
            for *key, hours in LiftSubjectDay.objects.values_list(
                "use_case_id",
                "subject_key",
                "day",
                "holdout",
                "triggered_at",
                "won",
                "previous_day",
                "other_before",
                "other_after",
                "cycle_hours",
            )
        },
    }


# One step of a stream: a new recommendation, a fact about an earlier one, or a refresh run.
moments = st.integers(min_value=0, max_value=SPAN_DAYS * 86_400 - 1)
steps = st.one_of(
    st.tuples(st.just("recommend"), st.booleans(), moments, st.sampled_from(["received", "blocked"])),
    st.tuples(st.just("event"), st.integers(0, 50), moments, st.sampled_from([T.SHOWN, T.ACCEPTED, T.ACTED_ON])),
    st.tuples(st.just("deliver"), st.integers(0, 50), st.integers(1, 2 * 86_400), st.integers(1, 2)),
    st.tuples(st.just("verdict"), st.integers(0, 50), moments, st.sampled_from(["approve", "edit", "reject"])),
    st.tuples(
        st.just("user_rejects"), st.integers(0, 50), moments, st.sampled_from(["", "Too late", "Wrong customer"])
    ),
    st.tuples(st.just("refresh"), st.none(), st.none(), st.none()),
    # The lift rows: held-out runs, and outcomes arriving in any order, backdated or long after the trigger.
    st.tuples(st.just("held_out"), st.booleans(), moments, st.integers(0, SUBJECTS - 1)),
    st.tuples(
        st.just("outcome"),
        st.booleans(),
        st.integers(-86_400, (SPAN_DAYS + 2) * 86_400),
        st.tuples(st.integers(0, SUBJECTS - 1), st.sampled_from(["renewal_won", "renewal_lost", "ticket_resolved"])),
    ),
)


LIFT_RANGES = [
    (DAY0, DAY0 + dt.timedelta(days=SPAN_DAYS)),
    (DAY0 + dt.timedelta(days=1), DAY0 + dt.timedelta(days=1)),
    (DAY0 + dt.timedelta(days=1), DAY0 + dt.timedelta(days=2)),
]


def play(world, stream) -> None:
    actor = Actor(user=world.integrator)
    recs: list[Recommendation] = []
    for kind, a, b, c in stream:
        if kind == "refresh":
            rollup_refresh()
            continue
        if kind == "held_out":
            Run.objects.create(
                use_case=world.churn if a else world.replies,
                subject_key=f"S-{c}",
                trigger="api",
                status=Run.Status.HELD_OUT,
                created_at=START + dt.timedelta(seconds=b),
            )
            continue
        if kind == "outcome":
            subject, outcome = c
            BusinessOutcome.objects.create(
                use_case=world.churn if a else world.replies,
                subject_key=f"S-{subject}",
                kind=outcome,
                occurred_at=START + dt.timedelta(seconds=b),
                external_id=f"E-{BusinessOutcome.objects.count()}",
            )
            continue
        if kind == "recommend":
            created = START + dt.timedelta(seconds=b)
            # One in three comes from a run requested two hours earlier (its trigger, maybe the day before).
            run = None
            if b % 3 == 0:
                run = Run.objects.create(
                    use_case=world.churn if a else world.replies,
                    subject_key=f"S-{len(recs) % SUBJECTS}",
                    trigger="api",
                    status=Run.Status.SUCCEEDED,
                    created_at=created - dt.timedelta(hours=2),
                )
            rec = Recommendation.objects.create(
                use_case=world.churn if a else world.replies,
                run=run,
                subject_key=f"S-{len(recs) % SUBJECTS}",
                content={"text": "x"},
                cost=Decimal(b % 997) / Decimal("10000"),
                status="blocked" if c == "blocked" else "received",
                created_at=created,
            )
            event_append(recommendation=rec, type=T.RECEIVED, actor=actor, at=created)
            recs.append(rec)
            continue
        if not recs:
            continue
        rec = recs[a % len(recs)]
        if kind == "event":  # feedback may arrive late and be backdated to any day
            event_append(recommendation=rec, type=c, actor=actor, at=START + dt.timedelta(seconds=b))
        elif kind == "deliver" and rec.delivered_at is None:
            rec.delivered_at = rec.created_at + dt.timedelta(seconds=b)
            rec.status = Recommendation.Status.DELIVERED
            rec.save(update_fields=["delivered_at", "status"])
            for _ in range(c):  # two destinations: the recommendation still counts once
                event_append(recommendation=rec, type=T.DELIVERED, actor=actor, at=rec.delivered_at)
        elif kind == "verdict":
            task, _ = ReviewTask.objects.get_or_create(  # one task; consensus queues give it several verdicts
                recommendation=rec,
                defaults={
                    "queue": rec.use_case.review_queue,
                    "due_at": rec.created_at + dt.timedelta(hours=4),
                    "status": ReviewTask.Status.DECIDED,
                },
            )
            ReviewVerdict.objects.create(
                task=task,
                reviewer=world.reviewer,
                decision=c,
                reason_code="inaccurate" if c == "reject" else "",
                seconds_spent=(b % 300) + 0.5,
                created_at=START + dt.timedelta(seconds=b),
            )
        elif kind == "user_rejects":
            event_append(
                recommendation=rec,
                type=T.FEEDBACK_REJECTED,
                actor=actor,
                payload={"reason": c} if c else {},
                at=START + dt.timedelta(seconds=b),
            )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.lists(steps, min_size=1, max_size=40))
def test_incremental_rollups_equal_a_raw_recomputation(world, stream):
    with transaction.atomic():
        play(world, stream)
        rollup_refresh()
        incremental = snapshot()

        # The page's lift from the incremental rows equals the live computation over the raw facts.
        for start, end in LIFT_RANGES:
            for use_case in (world.churn, world.replies):
                rolled = lift_groups_rolled_up(use_case=use_case, start=start, end=end)
                live = lift_groups_live(use_case=use_case, start=start, end=end, positive_kinds=DEFAULT_POSITIVE_KINDS)
                for group in (False, True):
                    assert (rolled[group].subjects, rolled[group].wins, rolled[group].cycles.n) == (
                        live[group].subjects,
                        live[group].wins,
                        live[group].cycles.n,
                    )
                    assert rolled[group].cycles.mean == pytest.approx(live[group].cycles.mean)

        rollup_rebuild(start=DAY0 - dt.timedelta(days=1), end=DAY0 + dt.timedelta(days=SPAN_DAYS + 3))

        assert snapshot() == incremental
        transaction.set_rollback(True)


def test_refresh_reads_only_what_is_new(world, django_assert_max_num_queries):
    actor = Actor(user=world.integrator)
    rec = Recommendation.objects.create(
        use_case=world.churn, subject_key="A", content={}, created_at=START + dt.timedelta(hours=5)
    )
    event_append(recommendation=rec, type=T.RECEIVED, actor=actor, at=rec.created_at)
    assert rollup_refresh() == 1
    day = DailyRollup.objects.get()
    assert (day.day, day.recommendations) == (DAY0, 1)
    assert HourlyRollup.objects.get().hour == START + dt.timedelta(hours=5)

    # The next run re-reads the previous run's ids (a transaction that committed late), then nothing is new.
    mark = RollupWatermark.objects.get(source="event")
    assert mark.safe_id < mark.seen_id
    assert rollup_refresh() == 1
    with django_assert_max_num_queries(12):
        assert rollup_refresh() == 0

    # A day no new fact touches is left as it is: the refresh does not rescan old days.
    DailyRollup.objects.filter(day=DAY0).update(shown=77)
    later = START + dt.timedelta(days=2, hours=1)
    other = Recommendation.objects.create(use_case=world.churn, subject_key="B", content={}, created_at=later)
    event_append(recommendation=other, type=T.SHOWN, actor=actor, at=later)
    assert rollup_refresh() == 1
    assert DailyRollup.objects.get(day=DAY0).shown == 77
    assert DailyRollup.objects.get(day=later.date()).shown == 1
    assert HourlyRollup.objects.get(hour=later).shown == 1


def test_refresh_counts_rejection_reasons(world):
    actor = Actor(user=world.integrator)
    rec = Recommendation.objects.create(use_case=world.replies, subject_key="B", content={}, created_at=START)
    for n, reason in enumerate(["Wrong   customer", "Wrong customer", "", "x" * 200]):
        event_append(
            recommendation=rec,
            type=T.FEEDBACK_REJECTED,
            actor=actor,
            payload={"reason": reason},
            at=START + dt.timedelta(minutes=n),
        )
    rollup_refresh_task.delay().get()
    assert set(RejectionRollup.objects.values_list("source", "reason", "count")) == {
        ("feedback", "Wrong customer", 2),
        ("feedback", "(no reason given)", 1),
        ("feedback", "x" * 80, 1),
    }


def test_refresh_keeps_the_lift_rows_through_late_and_out_of_order_facts(world):
    def row(holdout=False):
        return LiftSubjectDay.objects.get(use_case=world.churn, subject_key="S", holdout=holdout)

    def outcome(kind, at):
        BusinessOutcome.objects.create(
            use_case=world.churn, subject_key="S", kind=kind, occurred_at=at, external_id=f"{kind}-{at}"
        )
        rollup_refresh()

    ten = START + dt.timedelta(hours=10)
    Recommendation.objects.create(use_case=world.churn, subject_key="S", content={}, created_at=ten)
    rollup_refresh()
    assert (row().triggered_at, row().cycle_hours, row().won) == (ten, None, False)

    outcome("renewal_won", ten + dt.timedelta(hours=2))
    assert (row().cycle_hours, row().won) == (2.0, True)

    # A recommendation of the same day written later with an earlier time: the day's first trigger moves back.
    Recommendation.objects.create(
        use_case=world.churn, subject_key="S", content={}, created_at=ten - dt.timedelta(hours=2)
    )
    rollup_refresh()
    assert (row().triggered_at, row().cycle_hours) == (ten - dt.timedelta(hours=2), 4.0)

    # A lost renewal reported late, backdated before the win: it is now the first outcome; the win still counts.
    outcome("renewal_lost", ten - dt.timedelta(hours=1))
    assert (row().cycle_hours, row().won) == (1.0, True)

    # Held out the next day: both rows point at each other's day.
    Run.objects.create(
        use_case=world.churn,
        subject_key="S",
        trigger="api",
        status=Run.Status.HELD_OUT,
        created_at=ten + dt.timedelta(days=1),
    )
    rollup_refresh()
    assert (row().other_before, row().other_after) == (None, DAY0 + dt.timedelta(days=1))
    assert (row(holdout=True).other_before, row(holdout=True).cycle_hours) == (DAY0, None)

    refreshed = snapshot()["lift"]
    rollup_refresh()  # nothing new: the same rows
    rollup_rebuild(start=DAY0, end=DAY0 + dt.timedelta(days=1))
    assert snapshot()["lift"] == refreshed
