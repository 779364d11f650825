"""Escalation: an item goes to its queue's lead group (told by e-mail), by a reviewer's verdict or by an SLA
breach; on a breach the use case's fallback (sla_breach_action) then applies. Everything is in the trail."""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.urls import reverse

from apps.core import clock
from apps.core.actors import Actor
from apps.workflows import services as workflow_services
from apps.workflows.events import event_append
from apps.workflows.models import Recommendation, RecommendationEvent, UseCase

from .models import ReviewQueue, ReviewTask

logger = logging.getLogger(__name__)

BREACH_BATCH = 200
# Undecided tasks the SLA sweep looks at (a reviewer's escalation already set escalated_at).
BREACHABLE_STATUSES = (ReviewTask.Status.OPEN, ReviewTask.Status.CLAIMED, ReviewTask.Status.ADJUDICATION)
SLA_BREACH = "sla_breach"


def lead_group_notify(*, queue: ReviewQueue, subject: str, body: str) -> int:
    """E-mail the queue's lead group after commit (a rolled-back escalation tells nobody). The number of
    recipients; 0 when the queue has no lead group or none of its members has an address."""
    if queue.lead_group_id is None:
        return 0
    recipients = list(
        queue.lead_group.user_set.filter(is_active=True).exclude(email="").values_list("email", flat=True)
    )
    if recipients:
        transaction.on_commit(lambda: send_mail(subject, body, None, recipients, fail_silently=False))
    return len(recipients)


def review_task_escalation_record(
    *, actor: Actor, task: ReviewTask, recommendation: Recommendation, payload: dict, at=None
) -> None:
    """Hand `task` to the leads: status ESCALATED (a disputed item stays in ADJUDICATION, already a lead's),
    escalated_at, the `escalated` event, an e-mail to the lead group. The caller holds the locks of the task
    and its recommendation, and has checked the permission."""
    now = at or clock.now()
    if task.status not in ReviewTask.LEAD_STATUSES:
        task.status = ReviewTask.Status.ESCALATED
        # A reviewer's lease ends: only a lead may decide the item now (a lead's claim is kept).
        task.claimed_by, task.claimed_at, task.lease_expires_at = None, None, None
    task.escalated_at = now
    task.save(update_fields=["status", "escalated_at", "claimed_by", "claimed_at", "lease_expires_at"])
    notified = lead_group_notify(
        queue=task.queue,
        subject=f"Review escalated: {recommendation.subject_key} in {task.queue.name}",
        body=(
            f"{actor.label} escalated a review item of {recommendation.use_case.name} "
            f"({payload.get('reason', '')}).\n\n{payload.get('comment', '')}\n\n"
            f"{settings.DOORSTEP_BASE_URL}{reverse('reviews:task-detail', args=[task.pk])}\n"
        ),
    )
    event_append(
        recommendation=recommendation,
        type=RecommendationEvent.Type.ESCALATED,
        actor=actor,
        payload={"queue": task.queue.name, "lead_group": str(task.queue.lead_group or ""), "notified": notified}
        | payload,
        at=now,
    )


def _breach_fallback(*, actor: Actor, task: ReviewTask, recommendation: Recommendation) -> None:
    """Apply the use case's sla_breach_action to an escalated, breached task."""
    action = recommendation.use_case.sla_breach_action
    payload = {"queue": task.queue.name, "reason": SLA_BREACH}
    if action == UseCase.SlaBreachAction.REJECT:
        workflow_services.recommendation_reject(recommendation=recommendation, actor=actor, payload=payload)
        task.sla_outcome = "rejected"
    elif action == UseCase.SlaBreachAction.DELIVER_UNREVIEWED:
        recommendation.final_content = {
            **(recommendation.final_content or recommendation.content),
            "not_reviewed": True,
        }
        workflow_services.recommendation_release(
            recommendation=recommendation,
            actor=actor,
            event_type=RecommendationEvent.Type.APPROVED,
            payload=payload | {"not_reviewed": True},
        )
        task.sla_outcome = "delivered_unreviewed"
    else:
        return
    task.status = ReviewTask.Status.DECIDED
    task.decided_at = clock.now()
    task.save(update_fields=["status", "decided_at", "sla_outcome"])


def _breach_escalate(*, actor: Actor, due, pk: int, now) -> bool:
    with transaction.atomic():
        candidates = due.filter(pk=pk)
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        task = candidates.select_related("queue__lead_group").first()
        if task is None:  # decided, escalated or locked since the list was read
            return False
        if not due.filter(pk=pk).update(escalated_at=now):  # SQLite has no row locks: this is the guard
            return False
        recommendation = workflow_services.recommendation_lock(pk=task.recommendation_id)
        payload = {"reason": SLA_BREACH, "due_at": task.due_at, "action": recommendation.use_case.sla_breach_action}
        review_task_escalation_record(actor=actor, task=task, recommendation=recommendation, payload=payload, at=now)
        _breach_fallback(actor=actor, task=task, recommendation=recommendation)
    return True


def review_tasks_escalate_breached(*, batch: int = BREACH_BATCH) -> int:
    """Escalate up to `batch` undecided tasks past their due time (oldest due first), then apply their use
    case's fallback. Idempotent: a task is taken by a conditional update on escalated_at, so a second sweep
    (or a concurrent worker) never escalates or e-mails twice; on PostgreSQL rows a reviewer holds locked are
    skipped and taken by the next sweep. One transaction per task; a failing task is logged and skipped."""
    actor = Actor.for_system("review_sla_escalate")
    now = clock.now()
    due = ReviewTask.objects.filter(status__in=BREACHABLE_STATUSES, due_at__lt=now, escalated_at__isnull=True)
    escalated = 0
    for pk in due.order_by("due_at").values_list("pk", flat=True)[:batch]:
        try:
            escalated += _breach_escalate(actor=actor, due=due, pk=pk, now=now)
        except Exception:  # one broken item (e.g. its delivery setup) must not stall the sweep behind it
            logger.exception("review task %s: SLA escalation failed", pk)
    if escalated:
        logger.info("escalated %s review tasks past their SLA", escalated)
    return escalated
