"""90 days of activity, produced by running the real services on a simulated clock."""

import datetime as dt
import random
import sqlite3
from decimal import Decimal

from django.db import transaction

from apps.core import clock
from apps.core.actors import Actor
from apps.delivery.services import feedback_record
from apps.reporting.outcomes import OutcomeIn, outcome_record
from apps.reviews.models import ReviewTask, ReviewVerdict
from apps.reviews.services import review_task_claim, review_task_decide
from apps.workflows.models import Recommendation, Run, UseCase
from apps.workflows.services import run_request

# The churn use case keeps 15 % of its accounts as its control group, and renewals are won more often where the
# account manager accepted the AI's retention step: the ROI page then shows a measured lift, with its interval.
HOLDOUT_SHARE = Decimal("0.15")
RENEWAL_CHANCE = {"accepted": 0.72, "treated": 0.55, "holdout": 0.35}
RENEWAL_DAYS = {"accepted": (0.5, 7), "treated": (0.5, 14), "holdout": (1, 16)}  # a retention step speeds it up


def simulate(world, *, days: int = 90, end: dt.datetime, seed: int = 7, log=print) -> dict:
    rng = random.Random(seed)
    counts = {"runs": 0, "reviewed": 0, "feedback": 0, "outcomes": 0}
    UseCase.objects.filter(pk=world.churn.pk).update(holdout_share=HOLDOUT_SHARE)
    world.churn.refresh_from_db()
    reviewers = {world.churn_queue.pk: world.reviewer, world.replies_queue.pk: world.support_lead}
    integrator = Actor(user=world.integrator)
    subjects = {
        world.churn: [f"ACC-{i:04d}" for i in range(1, 401)],
        world.replies: [f"TCK-{i:04d}" for i in range(1, 401)],
    }
    start = (end - dt.timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    # The CRM/helpdesk snapshot is of today; replaying the past, it moves back in time with the clock so
    # each day's runs see data as of that morning (and the stale records stay stale).
    shifted = 0
    for day in range(days + 1):
        morning = start + dt.timedelta(days=day, hours=8)
        shift = int((min(morning, end) - end).total_seconds())
        _shift_source_times(world.source_db, shift - shifted)
        shifted = shift
        progress = min(day / max(days - 1, 1), 1.0)  # adoption grows over the quarter
        for use_case, base in ((world.churn, 4), (world.replies, 7)):
            for _ in range(base + int(progress * base)):
                at = start + dt.timedelta(days=day, hours=rng.uniform(8, 18))
                if at >= end:
                    continue
                with clock.simulated(at):
                    run = run_request(
                        actor=integrator,
                        use_case=use_case,
                        subject_key=rng.choice(subjects[use_case]),
                        trigger=Run.Trigger.SCHEDULE,
                    )
                counts["runs"] += 1
                run_at = at
                recommendation = Recommendation.objects.filter(run=run).select_related("review_task").first()
                if recommendation is None:
                    if use_case == world.churn:
                        counts["outcomes"] += _renewal(use_case, run, None, integrator, run_at, rng, end)
                    continue
                if recommendation.status == Recommendation.Status.QUEUED:
                    at = _review(recommendation.review_task, reviewers, at, rng, progress, end)
                    counts["reviewed"] += at is not None
                    recommendation.refresh_from_db()
                if at is not None and recommendation.status == Recommendation.Status.DELIVERED:
                    counts["feedback"] += _feedback(recommendation, integrator, at, rng, progress, end)
                if use_case == world.churn:
                    counts["outcomes"] += _renewal(use_case, run, recommendation, integrator, run_at, rng, end)
        if day % 15 == 14:
            log(f"  simulated day {day + 1}/{days}: {counts}")
    _shift_source_times(world.source_db, -shifted)
    return counts


def _shift_source_times(source_db, seconds: int) -> None:
    if not seconds:
        return
    with sqlite3.connect(source_db) as conn:
        for table in ("accounts", "tickets"):
            conn.execute(
                f"UPDATE {table} SET updated_at = strftime('%Y-%m-%dT%H:%M:%S+00:00', updated_at, ?)",
                (f"{seconds:+d} seconds",),
            )


def _review(task: ReviewTask, reviewers: dict, at, rng, progress, end):
    if end - at < dt.timedelta(hours=36):
        return None  # today's items are still waiting in the queue for the demo's reviewers
    at = at + dt.timedelta(minutes=rng.uniform(5, 240 - 150 * progress))
    actor = Actor(user=reviewers[task.queue_id])
    seconds = rng.uniform(20, 140 - 60 * progress)
    roll = rng.random()
    with clock.simulated(at - dt.timedelta(seconds=seconds)):
        review_task_claim(actor=actor, task=task)
    with clock.simulated(at), transaction.atomic():
        text = task.recommendation.text
        if roll < 0.12:
            review_task_decide(
                actor=actor,
                task=task,
                decision=ReviewVerdict.Decision.REJECT,
                seconds_spent=seconds,
                reason_code=rng.choice(["inaccurate", "stale_data", "tone", "policy"]),
            )
        elif roll < 0.3:
            edited = text.replace("this week", "today").replace("Best regards", "Kind regards") + " (checked)"
            review_task_decide(
                actor=actor, task=task, decision=ReviewVerdict.Decision.EDIT, edited_text=edited, seconds_spent=seconds
            )
        else:
            review_task_decide(actor=actor, task=task, decision=ReviewVerdict.Decision.APPROVE, seconds_spent=seconds)
    return at


def _renewal(use_case, run, recommendation, actor, at, rng, end) -> int:
    """The account's renewal, won or lost some days after the run: a business outcome from the CRM, likelier
    where the account manager accepted the recommendation. Held-out runs have no recommendation."""
    if recommendation is None:
        if run.status != Run.Status.HELD_OUT:
            return 0
        group = "holdout"
    else:
        group = "accepted" if recommendation.events.filter(type="accepted").exists() else "treated"
    won = rng.random() < RENEWAL_CHANCE[group]
    occurred = at + dt.timedelta(days=rng.uniform(*RENEWAL_DAYS[group]))
    if occurred >= end:
        return 0
    with clock.simulated(occurred):
        outcome_record(
            actor=actor,
            item=OutcomeIn(
                event_id=f"demo-renewal-{run.pk}",
                use_case=use_case.slug,
                subject_key=run.subject_key,
                kind="renewal_won" if won else "renewal_lost",
                occurred_at=occurred,
                value=Decimal(rng.choice([1200, 2400, 4800])) if won else None,
                recommendation_id=recommendation.pk if recommendation else None,
            ),
        )
    return 1


def _feedback(recommendation, actor, at, rng, progress, end) -> int:
    sent = 0
    accept_rate = 0.45 + 0.3 * progress
    steps = [("shown", 0.92), ("accepted", accept_rate), ("acted_on", 0.7)]
    if rng.random() > accept_rate:
        steps = [("shown", 0.92), ("rejected", 0.8)]
    for kind, chance in steps:
        if rng.random() > chance:
            break
        at = at + dt.timedelta(minutes=rng.uniform(10, 600))
        if at >= end:
            break
        with clock.simulated(at):
            feedback_record(
                actor=actor,
                event_id=f"demo-{recommendation.pk}-{kind}",
                recommendation_id=recommendation.pk,
                type=kind,
                payload={"source": "crm"},
            )
        sent += 1
    return sent
