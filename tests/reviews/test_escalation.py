"""SLA due times in business hours, and the beat job that escalates breached items and applies the fallback."""

import datetime as dt

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied
from apps.reviews import escalation, services, sla
from apps.reviews.models import ReviewQueue, ReviewTask
from apps.reviews.tasks import review_sla_escalate_task
from apps.workflows.models import Recommendation, RecommendationEvent, UseCase
from tests.factories import UserFactory

UTC = dt.UTC
HOURS = {"days": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}


# --- SLA due time -------------------------------------------------------------------------------------


def _queue(hours: float, business_hours: bool = True) -> ReviewQueue:
    return ReviewQueue(name="q", sla=dt.timedelta(hours=hours), business_hours=business_hours)


def test_due_at_without_business_hours_is_start_plus_sla():
    start = dt.datetime(2026, 6, 6, 22, 0, tzinfo=UTC)  # a Saturday night

    assert sla.due_at(_queue(4, business_hours=False), start) == start + dt.timedelta(hours=4)


@pytest.mark.parametrize(
    "start, hours, due",
    [
        ((2026, 6, 1, 10, 0), 4, (2026, 6, 1, 14, 0)),  # Monday, inside the window
        ((2026, 6, 5, 16, 0), 4, (2026, 6, 8, 12, 0)),  # Friday 16:00: one hour on Friday, three on Monday
        ((2026, 6, 6, 11, 0), 2, (2026, 6, 8, 11, 0)),  # Saturday: the clock starts on Monday at 09:00
        ((2026, 6, 1, 7, 30), 8, (2026, 6, 1, 17, 0)),  # before opening: a full day exactly
        ((2026, 6, 1, 18, 0), 20, (2026, 6, 4, 13, 0)),  # after closing: Tue 8 h, Wed 8 h, Thu 4 h
    ],
)
def test_due_at_counts_only_business_hours(settings, start, hours, due):
    settings.REVIEW_BUSINESS_HOURS = HOURS

    assert sla.due_at(_queue(hours), dt.datetime(*start, tzinfo=UTC)) == dt.datetime(*due, tzinfo=UTC)


def test_business_hours_are_in_the_time_zone_and_count_real_hours_across_dst(settings):
    settings.REVIEW_BUSINESS_HOURS = HOURS
    settings.TIME_ZONE = "Europe/Berlin"
    # Friday 27 March 2026, 16:00 in Berlin (CET, UTC+1); clocks go forward on Sunday 29 March.
    start = dt.datetime(2026, 3, 27, 15, 0, tzinfo=UTC)

    due = sla.due_at(_queue(2), start)

    assert due == dt.datetime(2026, 3, 30, 8, 0, tzinfo=UTC)  # Monday 10:00 CEST (UTC+2)


@pytest.mark.parametrize(
    "config",
    [{"days": [], "start": "09:00", "end": "17:00"}, {"days": [0], "start": "17:00", "end": "09:00"}, {"days": [0]}],
)
def test_malformed_business_hours_are_a_configuration_error(settings, config):
    settings.REVIEW_BUSINESS_HOURS = config

    with pytest.raises(ImproperlyConfigured):
        sla.due_at(_queue(1), dt.datetime(2026, 6, 1, 10, 0, tzinfo=UTC))


# --- the beat job -------------------------------------------------------------------------------------


@pytest.fixture
def lead(lead, world):
    """The churn lead, and a fellow lead without an e-mail address (nobody to mail)."""
    UserFactory(username="lead-without-mail", email="").groups.add(world.churn_queue.lead_group)
    return lead


@pytest.fixture
def breached(world, queued_recommendation):
    """A churn review task whose SLA ran out five minutes ago."""

    def make(action=UseCase.SlaBreachAction.ESCALATE, **kwargs):
        UseCase.objects.filter(pk=world.churn.pk).update(sla_breach_action=action)
        task = queued_recommendation(world.churn, **kwargs).review_task
        ReviewTask.objects.filter(pk=task.pk).update(due_at=clock.now() - dt.timedelta(minutes=5))
        task.refresh_from_db()
        return task

    return make


def _sweep(capture, **kwargs) -> int:
    with capture(execute=True):
        return escalation.review_tasks_escalate_breached(**kwargs)


@pytest.mark.django_db
def test_breach_escalates_once_and_mails_the_leads_once(world, lead, breached, django_capture_on_commit_callbacks):
    task = breached()

    with django_capture_on_commit_callbacks(execute=True):
        assert review_sla_escalate_task.delay().get() == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert review_sla_escalate_task.delay().get() == 0

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ESCALATED and task.escalated_at is not None and task.sla_outcome == ""
    (event,) = task.recommendation.events.filter(type=RecommendationEvent.Type.ESCALATED)
    assert event.actor_user is None and event.actor_label == "system:review_sla_escalate"
    assert event.payload["reason"] == "sla_breach" and event.payload["notified"] == 1
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [lead.email]
    assert Recommendation.objects.get(pk=task.recommendation_id).status == Recommendation.Status.QUEUED


@pytest.mark.django_db
def test_only_a_lead_decides_a_breached_item(world, lead, breached, django_capture_on_commit_callbacks):
    task = breached()
    _sweep(django_capture_on_commit_callbacks)

    with pytest.raises(PermissionDenied):
        services.review_task_decide(actor=Actor(user=world.reviewer), task=task, decision="approve")
    services.review_task_decide(actor=Actor(user=lead), task=task, decision="approve")

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.DECIDED


@pytest.mark.django_db
def test_breach_with_reject_rejects_the_output(world, lead, breached, django_capture_on_commit_callbacks):
    task = breached(UseCase.SlaBreachAction.REJECT)

    assert _sweep(django_capture_on_commit_callbacks) == 1

    task.refresh_from_db()
    recommendation = Recommendation.objects.get(pk=task.recommendation_id)
    assert task.status == ReviewTask.Status.DECIDED and task.sla_outcome == "rejected"
    assert task.escalated_at is not None and task.decided_at is not None
    assert recommendation.status == Recommendation.Status.REJECTED
    types = list(recommendation.events.order_by("sequence").values_list("type", flat=True))
    assert types[-2:] == [RecommendationEvent.Type.ESCALATED, RecommendationEvent.Type.REJECTED]
    rejected = recommendation.events.get(type=RecommendationEvent.Type.REJECTED)
    assert rejected.payload["reason"] == "sla_breach" and rejected.actor_label == "system:review_sla_escalate"
    assert len(mail.outbox) == 1
    assert _sweep(django_capture_on_commit_callbacks) == 0


@pytest.mark.django_db
def test_breach_with_deliver_unreviewed_releases_flagged(world, lead, breached, django_capture_on_commit_callbacks):
    task = breached(UseCase.SlaBreachAction.DELIVER_UNREVIEWED)

    _sweep(django_capture_on_commit_callbacks)

    task.refresh_from_db()
    recommendation = Recommendation.objects.get(pk=task.recommendation_id)
    assert task.status == ReviewTask.Status.DECIDED and task.sla_outcome == "delivered_unreviewed"
    assert recommendation.final_content["not_reviewed"] is True
    assert recommendation.status == Recommendation.Status.DELIVERED  # eager Celery: delivered at once
    released = recommendation.events.get(type=RecommendationEvent.Type.APPROVED)
    assert released.payload["not_reviewed"] is True and released.actor_user is None
    assert not task.verdicts.exists()


@pytest.mark.django_db
def test_sweep_leaves_items_not_due_decided_or_already_escalated(
    world, lead, breached, queued_recommendation, django_capture_on_commit_callbacks
):
    not_due = queued_recommendation(world.churn, subject_key="ACC-0002").review_task
    decided = breached(subject_key="ACC-0003")
    services.review_task_decide(actor=Actor(user=world.reviewer), task=decided, decision="approve")
    escalated = breached(subject_key="ACC-0004")
    services.review_task_decide(actor=Actor(user=world.reviewer), task=escalated, decision="escalate", comment="Odd")

    assert _sweep(django_capture_on_commit_callbacks) == 0

    not_due.refresh_from_db()
    assert not_due.status == ReviewTask.Status.OPEN and not_due.escalated_at is None
    assert escalated.recommendation.events.filter(type=RecommendationEvent.Type.ESCALATED).count() == 1


@pytest.mark.django_db
def test_breached_adjudication_keeps_its_status(world, lead, breached, django_capture_on_commit_callbacks):
    task = breached()
    ReviewTask.objects.filter(pk=task.pk).update(status=ReviewTask.Status.ADJUDICATION, agreed=False)

    _sweep(django_capture_on_commit_callbacks)

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ADJUDICATION and task.escalated_at is not None


@pytest.mark.django_db
def test_sweep_is_bounded_oldest_due_first(world, lead, breached, django_capture_on_commit_callbacks):
    later, earlier = breached(), breached(subject_key="ACC-0002")
    ReviewTask.objects.filter(pk=earlier.pk).update(due_at=clock.now() - dt.timedelta(hours=1))

    assert _sweep(django_capture_on_commit_callbacks, batch=1) == 1

    assert list(ReviewTask.objects.filter(escalated_at__isnull=False).values_list("pk", flat=True)) == [earlier.pk]
    assert _sweep(django_capture_on_commit_callbacks, batch=1) == 1
    later.refresh_from_db()
    assert later.escalated_at is not None


@pytest.mark.django_db
def test_breach_without_a_lead_group_escalates_and_mails_nobody(world, breached, django_capture_on_commit_callbacks):
    task = breached()

    assert _sweep(django_capture_on_commit_callbacks) == 1

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.ESCALATED
    assert task.recommendation.events.get(type=RecommendationEvent.Type.ESCALATED).payload["notified"] == 0
    assert mail.outbox == []


def test_beat_runs_the_sweep_every_minute(settings):
    entries = [
        entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"].endswith("review_sla_escalate_task")
    ]
    assert entries == [{"task": "apps.reviews.tasks.review_sla_escalate_task", "schedule": 60.0}]


@pytest.mark.django_db
def test_a_failing_item_is_rolled_back_and_does_not_stall_the_sweep(
    world, lead, breached, monkeypatch, django_capture_on_commit_callbacks
):
    broken, fine = breached(), breached(subject_key="ACC-0002")
    ReviewTask.objects.filter(pk=broken.pk).update(due_at=clock.now() - dt.timedelta(hours=1))
    real = escalation._breach_fallback

    def fallback(*, task, **kwargs):
        if task.pk == broken.pk:
            raise RuntimeError("destination misconfigured")
        real(task=task, **kwargs)

    monkeypatch.setattr(escalation, "_breach_fallback", fallback)

    assert _sweep(django_capture_on_commit_callbacks) == 1

    broken.refresh_from_db()
    fine.refresh_from_db()
    assert broken.escalated_at is None and broken.status == ReviewTask.Status.OPEN
    assert not broken.recommendation.events.filter(type=RecommendationEvent.Type.ESCALATED).exists()
    assert fine.status == ReviewTask.Status.ESCALATED
    assert len(mail.outbox) == 1
