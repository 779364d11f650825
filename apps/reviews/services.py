"""Human-in-the-loop decisions: claim with a lease, then approve, edit-then-approve or reject."""

import difflib

from django.db import transaction
from django.db.models import Q

from apps.core import clock, metrics
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.workflows import services as workflow_services
from apps.workflows.events import event_append
from apps.workflows.models import RecommendationEvent

from .models import ReviewQueue, ReviewTask, ReviewVerdict
from .selectors import claimable


def review_task_claim(*, actor: Actor, task: ReviewTask) -> ReviewTask:
    """Claim one task (or renew one's own lease). Needs review_reviewqueue on its queue. The claim is a
    conditional update, so two reviewers never hold the same item (works on SQLite and PostgreSQL)."""
    if not has_object_permission(actor.user, "review_reviewqueue", task.queue):
        raise PermissionDenied()
    now = clock.now()
    lease_until = now + task.queue.lease
    with transaction.atomic():
        claimed = (
            ReviewTask.objects.filter(pk=task.pk)
            .filter(claimable(now) | Q(status=ReviewTask.Status.CLAIMED, claimed_by=actor.user))
            .update(
                status=ReviewTask.Status.CLAIMED, claimed_by=actor.user, claimed_at=now, lease_expires_at=lease_until
            )
        )
        if not claimed:
            task.refresh_from_db()
            if task.status == ReviewTask.Status.DECIDED:
                raise Conflict("This item has already been decided.")
            raise Conflict(f"This item is claimed by {task.claimed_by} until {task.lease_expires_at:%H:%M}.")
        if task.claimed_by_id != actor.user.pk or task.status != ReviewTask.Status.CLAIMED:
            recommendation = workflow_services.recommendation_lock(pk=task.recommendation_id)
            event_append(
                recommendation=recommendation,
                type=RecommendationEvent.Type.CLAIMED,
                actor=actor,
                payload={"queue": task.queue.name, "lease_until": lease_until},
            )
    task.refresh_from_db()
    return task


def review_task_release(*, actor: Actor, task: ReviewTask) -> None:
    """Give back one's own claim (skip), so another reviewer can take the item at once."""
    ReviewTask.objects.filter(pk=task.pk, status=ReviewTask.Status.CLAIMED, claimed_by=actor.user).update(
        status=ReviewTask.Status.OPEN, claimed_by=None, claimed_at=None, lease_expires_at=None
    )


def review_task_claim_next(*, actor: Actor, queue: ReviewQueue) -> ReviewTask | None:
    """Claim the highest-priority, oldest claimable task of the queue; None when the queue is clear."""
    if not has_object_permission(actor.user, "review_reviewqueue", queue):
        raise PermissionDenied()
    own = ReviewTask.objects.filter(
        queue=queue, status=ReviewTask.Status.CLAIMED, claimed_by=actor.user, lease_expires_at__gte=clock.now()
    ).first()
    if own is not None:
        return own
    for _ in range(5):  # another reviewer may win the race for a candidate: try the next one
        candidate = (
            ReviewTask.objects.filter(queue=queue)
            .filter(claimable(clock.now()))
            .order_by("-priority", "created_at", "pk")
            .first()
        )
        if candidate is None:
            return None
        try:
            return review_task_claim(actor=actor, task=candidate)
        except Conflict:
            continue
    return None


def _diff(before: str, after: str) -> tuple[str, int]:
    diff = "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), "proposed", "edited", lineterm=""))
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    distance = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")
    return diff, distance


def review_task_decide(
    *,
    actor: Actor,
    task: ReviewTask,
    decision: str,
    edited_text: str = "",
    reason_code: str = "",
    comment: str = "",
    seconds_spent: float = 0.0,
) -> ReviewVerdict:
    """Approve, edit-then-approve or reject. Needs review_reviewqueue; the reviewer must hold the claim
    (or the item must be unclaimed). Approved outputs are delivered; nothing is saved half."""
    if not has_object_permission(actor.user, "review_reviewqueue", task.queue):
        raise PermissionDenied()
    if decision not in ReviewVerdict.Decision.values:
        raise ServiceError(f"Unknown decision {decision!r}.", field="decision")
    if decision == ReviewVerdict.Decision.REJECT and not reason_code:
        raise ServiceError("A reason is required to reject.", field="reason_code")
    if reason_code and reason_code not in ReviewVerdict.Reason.values:
        raise ServiceError(f"Unknown reason {reason_code!r}.", field="reason_code")
    if decision == ReviewVerdict.Decision.EDIT and not edited_text.strip():
        raise ServiceError("The edited text is required.", field="edited_text")
    now = clock.now()
    with transaction.atomic():
        task = ReviewTask.objects.select_for_update(of=("self",)).select_related("queue").get(pk=task.pk)
        if task.status == ReviewTask.Status.DECIDED:
            raise Conflict("This item has already been decided.")
        if (
            task.status == ReviewTask.Status.CLAIMED
            and task.claimed_by_id != actor.user.pk
            and task.lease_expires_at
            and task.lease_expires_at >= now
        ):
            raise Conflict(f"This item is claimed by {task.claimed_by}.")
        recommendation = workflow_services.recommendation_lock(pk=task.recommendation_id)
        before = recommendation.text
        diff, distance = ("", 0)
        if decision == ReviewVerdict.Decision.EDIT:
            diff, distance = _diff(before, edited_text)
        verdict = ReviewVerdict.objects.create(
            task=task,
            reviewer=actor.user,
            decision=decision,
            reason_code=reason_code,
            comment=comment,
            edited_text=edited_text if decision == ReviewVerdict.Decision.EDIT else "",
            diff=diff,
            edit_distance=distance,
            seconds_spent=max(0.0, min(seconds_spent, 24 * 3600)),
            created_at=now,
        )
        task.status = ReviewTask.Status.DECIDED
        task.decided_at = now
        task.claimed_by = task.claimed_by or actor.user
        task.save()
        payload = {"queue": task.queue.name, "seconds_spent": verdict.seconds_spent, "comment": comment}
        if decision == ReviewVerdict.Decision.REJECT:
            workflow_services.recommendation_reject(
                recommendation=recommendation, actor=actor, payload=payload | {"reason": reason_code}
            )
        elif decision == ReviewVerdict.Decision.EDIT:
            recommendation.final_content = {
                **(recommendation.final_content or recommendation.content),
                "text": edited_text,
            }
            workflow_services.recommendation_release(
                recommendation=recommendation,
                actor=actor,
                event_type=RecommendationEvent.Type.EDITED,
                payload=payload | {"diff": diff, "edit_distance": distance},
            )
        else:
            workflow_services.recommendation_release(
                recommendation=recommendation,
                actor=actor,
                event_type=RecommendationEvent.Type.APPROVED,
                payload=payload,
            )
    metrics.REVIEW_VERDICTS_TOTAL.labels(decision).inc()
    return verdict


def queue_lease_release_expired(*, queue_ids=None) -> int:
    """Expired leases go back to the queue (beat)."""
    tasks = ReviewTask.objects.filter(status=ReviewTask.Status.CLAIMED, lease_expires_at__lt=clock.now())
    if queue_ids is not None:
        tasks = tasks.filter(queue_id__in=queue_ids)
    return tasks.update(status=ReviewTask.Status.OPEN, claimed_by=None, lease_expires_at=None)
