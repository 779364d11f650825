"""Human-in-the-loop decisions: claim with a lease, then approve, edit-then-approve or reject."""

import difflib
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.urls import reverse

from apps.core import clock, metrics
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.workflows import services as workflow_services
from apps.workflows.events import event_append
from apps.workflows.models import Recommendation, RecommendationEvent, UseCase

from . import escalation
from .approvals import approval_resolve_from_review
from .models import ReviewQueue, ReviewTask, ReviewVerdict
from .selectors import PreparedQuery, claim_standing, claimable, held_statuses, lead_claimable, lease_active


def _claim_permission(actor: Actor, queue: ReviewQueue, status: str) -> bool:
    """Whether the actor may hold a task of `queue` in `status` (raises PermissionDenied without the queue
    grant); returns whether they lead the queue."""
    if not has_object_permission(actor.user, "review_reviewqueue", queue):
        raise PermissionDenied()
    lead = has_object_permission(actor.user, "lead_reviewqueue", queue)
    if status in ReviewTask.LEAD_STATUSES and not lead:
        raise PermissionDenied("Only a lead of the queue can take escalated or disputed items.")
    return lead


# Claiming keeps a lead status (escalated, adjudication): only a lead may take such an item again.
_CLAIMED_STATUS = Case(When(status__in=ReviewTask.LEAD_STATUSES, then=F("status")), default=Value("claimed"))
_RELEASED_STATUS = Case(When(status__in=ReviewTask.LEAD_STATUSES, then=F("status")), default=Value("open"))


def _claim_event(*, actor: Actor, task: ReviewTask, type: str, payload: dict) -> None:
    recommendation = workflow_services.recommendation_lock(pk=task.recommendation_id)
    event_append(recommendation=recommendation, type=type, actor=actor, payload={"queue": task.queue.name} | payload)


def review_task_claim(*, actor: Actor, task: ReviewTask) -> ReviewTask:
    """Claim one task (or renew one's own lease). Needs review_reviewqueue on its queue, and lead_reviewqueue
    for escalated and adjudication items. The claim is a conditional update, so two reviewers never hold the
    same item (works on SQLite and PostgreSQL)."""
    lead = _claim_permission(actor, task.queue, task.status)
    now = clock.now()
    lease_until = now + task.queue.lease
    with transaction.atomic():
        claimed = (
            ReviewTask.objects.filter(pk=task.pk)
            .filter(claimable(now, user=actor.user, lead=lead))
            .update(status=_CLAIMED_STATUS, claimed_by=actor.user, claimed_at=now, lease_expires_at=lease_until)
        )
        if not claimed:
            task.refresh_from_db()
            if task.status == ReviewTask.Status.DECIDED:
                raise Conflict("This item has already been decided.")
            if task.status in ReviewTask.LEAD_STATUSES and not lead:
                raise PermissionDenied("Only a lead of the queue can take escalated or disputed items.")
            raise Conflict(f"This item is claimed by {task.claimed_by} until {task.lease_expires_at:%H:%M}.")
        if task.claimed_by_id != actor.user.pk or task.status not in held_statuses(lead=lead):
            _claim_event(
                actor=actor, task=task, type=RecommendationEvent.Type.CLAIMED, payload={"lease_until": lease_until}
            )
    task.refresh_from_db()
    return task


def review_task_release(*, actor: Actor, task: ReviewTask) -> None:
    """Give back one's own claim (skip), so another reviewer can take the item at once."""
    ReviewTask.objects.filter(pk=task.pk, status__in=held_statuses(lead=True), claimed_by=actor.user).update(
        status=_RELEASED_STATUS, claimed_by=None, claimed_at=None, lease_expires_at=None
    )


# What claim-next returns of the task: all but the rules that sent it here (JSON, read when the item is shown).
_CLAIM_FIELDS = [field for field in ReviewTask._meta.concrete_fields if field.name != "reasons"]


def _claim_next_sql(*, lead: bool) -> str:
    """PostgreSQL: pick and claim in one statement. Each kind of item (lead items for a lead, expired leases,
    open items) is its own `SELECT … LIMIT 1 FOR UPDATE SKIP LOCKED`, an ordered walk of an index (an OR of
    them would sort every open row of the queue); COALESCE runs the next one only when the one before found
    nothing. The recommendation is locked in the same statement, as its event chain needs (event_append)."""
    tasks, verdicts = ReviewTask._meta.db_table, ReviewVerdict._meta.db_table
    # Statuses are spelled out rather than parameters, so the prepared plan still knows which index serves each.
    claimed, lead_statuses = ReviewTask.Status.CLAIMED, ", ".join(f"'{status}'" for status in ReviewTask.LEAD_STATUSES)
    not_voted = f"NOT EXISTS (SELECT 1 FROM {verdicts} v WHERE v.task_id = {tasks}.id AND v.reviewer_id = %(user)s)"
    conditions = [
        f"status = '{claimed}' AND lease_expires_at < %(now)s AND {not_voted}",
        f"status = '{ReviewTask.Status.OPEN}' AND {not_voted}",
    ]
    if lead:
        conditions.insert(0, f"status IN ({lead_statuses}) AND (claimed_by_id IS NULL OR lease_expires_at < %(now)s)")
    picks = ", ".join(
        f"(SELECT id FROM {tasks} WHERE queue_id = %(queue)s AND {condition} "
        "ORDER BY priority DESC, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        for condition in conditions
    )
    columns = ", ".join(field.column for field in _CLAIM_FIELDS)
    return (
        f"WITH claimed AS (UPDATE {tasks} "
        f"SET status = CASE WHEN status IN ({lead_statuses}) THEN status ELSE '{claimed}' END, "
        "claimed_by_id = %(user)s, claimed_at = %(now)s, lease_expires_at = %(lease_until)s "
        f"WHERE id = COALESCE({picks}) RETURNING {columns}) "
        f"SELECT claimed.* FROM claimed JOIN {Recommendation._meta.db_table} r ON r.id = claimed.recommendation_id "
        # SET LOCAL without a statement of its own: a claim lost in a crash only returns the item to the queue
        # (with its claimed event, in the same transaction), so its commit need not wait for the WAL flush, and
        # concurrent reviewers do not queue on fsync.
        "WHERE set_config('synchronous_commit', 'off', true) = 'off' FOR UPDATE OF r"
    )


_CLAIM_NEXT = {
    lead: PreparedQuery(
        f"reviews_claim_next{'_lead' if lead else ''}",
        _claim_next_sql(lead=lead),
        ("queue", "user", "now", "lease_until"),
    )
    for lead in (False, True)
}


def review_task_claim_next(*, actor: Actor, queue: ReviewQueue) -> ReviewTask | None:
    """Claim the highest-priority, oldest claimable task of the queue; None when the queue is clear. A lead
    (lead_reviewqueue) gets escalated and adjudication items first; then items whose lease ran out (they were at
    the head of the queue when claimed), then open items. A reviewer who already holds a live claim in the
    queue gets it back. Needs review_reviewqueue on the queue. Consensus items the reviewer has voted on are
    skipped.

    On PostgreSQL one statement picks with `SELECT … FOR UPDATE SKIP LOCKED` and claims (_claim_next_sql), so
    concurrent reviewers neither wait for each other nor take the same item; elsewhere (SQLite, where
    select_for_update does nothing) a candidate is claimed by a conditional update and the next one tried when
    another reviewer won."""
    now = clock.now()
    standing = claim_standing(user=actor.user, queue=queue, now=now)
    if not standing.reviews:
        raise PermissionDenied()
    if standing.own_claim_id is not None:
        return ReviewTask.objects.get(pk=standing.own_claim_id)
    if connection.vendor != "postgresql":
        return _claim_next_by_conditional_update(actor=actor, queue=queue, now=now, lead=standing.leads)
    lease_until = now + queue.lease
    params = {"queue": queue.pk, "user": actor.user.pk, "now": now, "lease_until": lease_until}
    with transaction.atomic():
        with connection.cursor() as cursor:
            _CLAIM_NEXT[standing.leads].execute(cursor, params)
            row = cursor.fetchone()
        if row is None:
            return None
        task = ReviewTask.from_db(connection.alias, [field.attname for field in _CLAIM_FIELDS], row)
        task.queue = queue
        recommendation = Recommendation.from_db(connection.alias, ["id"], [task.recommendation_id])  # locked above
        event_append(
            recommendation=recommendation,
            type=RecommendationEvent.Type.CLAIMED,
            actor=actor,
            payload={"queue": queue.name, "lease_until": lease_until},
        )
    return task


def _claim_next_by_conditional_update(*, actor: Actor, queue: ReviewQueue, now, lead: bool) -> ReviewTask | None:
    """Claim-next where select_for_update does nothing (SQLite): pick a candidate, claim it by review_task_claim's
    conditional update, and try the next when another reviewer won."""
    # One condition per query: each is an ordered walk of the (queue, status, -priority, created_at) index,
    # where an OR of them would sort every open row of the queue.
    not_voted = ~Exists(ReviewVerdict.objects.filter(task=OuterRef("pk"), reviewer=actor.user))
    conditions = [
        Q(status=ReviewTask.Status.CLAIMED, lease_expires_at__lt=now) & not_voted,
        Q(status=ReviewTask.Status.OPEN) & not_voted,
    ]
    if lead:
        conditions.insert(0, lead_claimable(now))
    tasks = ReviewTask.objects.filter(queue=queue).select_related("queue").order_by("-priority", "created_at", "pk")
    while True:  # each lost race means another reviewer claimed an item, so this ends
        candidate = next(filter(None, (tasks.filter(c).first() for c in conditions)), None)
        if candidate is None:
            return None
        try:
            return review_task_claim(actor=actor, task=candidate)
        except (Conflict, PermissionDenied):  # taken, or escalated meanwhile
            continue


def review_task_lease_renew(*, actor: Actor, task: ReviewTask) -> ReviewTask:
    """Extend one's own lease while working on the item (the task page asks every minute). Needs
    review_reviewqueue on the queue; Conflict when the claim is no longer the actor's (released, taken
    over, taken by another reviewer after it ran out, or decided)."""
    if not has_object_permission(actor.user, "review_reviewqueue", task.queue):
        raise PermissionDenied()
    lease_until = clock.now() + task.queue.lease
    renewed = ReviewTask.objects.filter(pk=task.pk, status__in=held_statuses(lead=True), claimed_by=actor.user).update(
        lease_expires_at=lease_until
    )
    task.refresh_from_db()
    if not renewed:
        if task.status == ReviewTask.Status.DECIDED:
            raise Conflict("This item has already been decided.")
        if task.claimed_by_id is not None:
            raise Conflict(f"This item is now claimed by {task.claimed_by}.")
        raise Conflict("Your claim on this item has ended.")
    return task


def review_task_take_over(*, actor: Actor, task: ReviewTask, reason: str) -> ReviewTask:
    """A lead moves another reviewer's live claim to themselves, with a reason (required). Needs
    lead_reviewqueue on the queue; the trail records the previous holder and the reason."""
    if not has_object_permission(actor.user, "lead_reviewqueue", task.queue):
        raise PermissionDenied("Only a lead of the queue can take over a claim.")
    reason = reason.strip()
    if not reason:
        raise ServiceError("A reason is required to take over a claim.", field="reason")
    now = clock.now()
    lease_until = now + task.queue.lease
    with transaction.atomic():
        current = ReviewTask.objects.select_for_update(of=("self",)).select_related("claimed_by").get(pk=task.pk)
        if current.status == ReviewTask.Status.DECIDED:
            raise Conflict("This item has already been decided.")
        previous = current.claimed_by
        if not lease_active(current, now) or previous == actor.user:
            raise Conflict("Nobody else holds this item: open it to claim it.")
        # Conditional on the same holder and status: on SQLite select_for_update does not lock.
        moved = ReviewTask.objects.filter(pk=task.pk, claimed_by=previous, status=current.status).update(
            claimed_by=actor.user, claimed_at=now, lease_expires_at=lease_until
        )
        if not moved:
            raise Conflict("The claim changed meanwhile; reload the item.")
        _claim_event(
            actor=actor,
            task=current,
            type=RecommendationEvent.Type.CLAIM_TAKEN_OVER,
            payload={
                "previous_holder": previous.get_username(),
                "previous_holder_id": previous.pk,
                "reason": reason,
                "lease_until": lease_until,
            },
        )
    task.refresh_from_db()
    return task


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
    """Approve, edit-then-approve, reject or escalate. Needs review_reviewqueue; the reviewer must hold the
    claim (or the item must be unclaimed). Escalated and disputed items (review_task_lead_only) need
    lead_reviewqueue too. Approved outputs are delivered; nothing is saved half.

    Consensus (required_reviews N > 1): each reviewer votes once and the item goes back to the queue until N
    votes are in; agreeing votes (_votes_agree) apply, otherwise the item waits in ADJUDICATION for a lead,
    whose verdict (is_adjudication) applies. Escalate (with a comment) hands the item to the queue's leads."""
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
    if decision == ReviewVerdict.Decision.ESCALATE and not comment.strip():
        raise ServiceError("Say why the item needs a lead.", field="comment")
    now = clock.now()
    with transaction.atomic():
        task = ReviewTask.objects.select_for_update(of=("self",)).select_related("queue").get(pk=task.pk)
        if task.status == ReviewTask.Status.DECIDED:
            raise Conflict("This item has already been decided.")
        lead_only = review_task_lead_only(task)
        if lead_only and not has_object_permission(actor.user, "lead_reviewqueue", task.queue):
            raise PermissionDenied("Only a lead of the queue decides escalated or disputed items.")
        if task.claimed_by_id not in (None, actor.user.pk) and task.lease_expires_at and task.lease_expires_at >= now:
            raise Conflict(f"This item is claimed by {task.claimed_by}.")
        if decision == ReviewVerdict.Decision.ESCALATE and lead_only:
            raise Conflict("This item is already with a lead.")
        consensus = task.required_reviews > 1 and not lead_only
        votes = list(review_task_votes(task)) if consensus else []
        if any(vote.reviewer_id == actor.user.pk for vote in votes):
            raise Conflict("You have already reviewed this item; it needs another reviewer's verdict.")
        recommendation = workflow_services.recommendation_lock(pk=task.recommendation_id)
        diff, distance = ("", 0)
        if decision == ReviewVerdict.Decision.EDIT:
            diff, distance = _diff(recommendation.text, edited_text)
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
            is_adjudication=task.agreed is False,
            created_at=now,
        )
        if decision == ReviewVerdict.Decision.ESCALATE:
            escalation.review_task_escalation_record(
                actor=actor,
                task=task,
                recommendation=recommendation,
                payload={"reason": "reviewer", "comment": comment, "verdict": verdict.pk},
                at=now,
            )
        elif not consensus or _vote_record(
            actor=actor, task=task, recommendation=recommendation, votes=[*votes, verdict]
        ):
            # The one place where a final verdict takes effect.
            _verdict_apply(actor=actor, task=task, recommendation=recommendation, verdict=verdict)
            approval_resolve_from_review(task=task, verdict=verdict, actor=actor)  # an agent waiting on it, if any
    metrics.REVIEW_VERDICTS_TOTAL.labels(decision).inc()
    return verdict


def review_task_lead_only(task: ReviewTask) -> bool:
    """Whether only a lead of the queue may decide `task`: escalated (by a reviewer or an SLA breach), or
    disputed by its consensus reviewers (escalated_at / agreed=False keep saying so while a lead holds it)."""
    return task.status in ReviewTask.LEAD_STATUSES or task.escalated_at is not None or task.agreed is False


def review_task_votes(task: ReviewTask):
    """The consensus votes of `task` (not escalations, not a lead's adjudication), oldest first."""
    return (
        task.verdicts.filter(is_adjudication=False)
        .exclude(decision=ReviewVerdict.Decision.ESCALATE)
        .order_by("created_at", "pk")
    )


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _votes_agree(votes: list[ReviewVerdict]) -> bool:
    """The consensus rule: every vote has the same decision; edits agree only when their edited texts are the
    same up to whitespace (two different edits would deliver two different texts); rejections agree whatever
    their reason codes, since the output is stopped either way."""
    first = votes[0]
    return all(
        vote.decision == first.decision
        and (
            vote.decision != ReviewVerdict.Decision.EDIT
            or _normalised(vote.edited_text) == _normalised(first.edited_text)
        )
        for vote in votes
    )


def _vote_record(*, actor: Actor, task: ReviewTask, recommendation, votes: list[ReviewVerdict]) -> bool:
    """Record the last of `votes` on a consensus task. True when it completes an agreeing set (the caller
    applies it); otherwise the item goes back to the queue for the next reviewer, or to ADJUDICATION. The
    event does not name the decision, so the trail does not tell the next reviewer how others voted."""
    payload = {"queue": task.queue.name, "votes": len(votes), "required": task.required_reviews}
    payload["verdict"] = votes[-1].pk
    if len(votes) >= task.required_reviews:
        task.agreed = _votes_agree(votes)
        payload["agreed"] = task.agreed
    event_append(
        recommendation=recommendation, type=RecommendationEvent.Type.REVIEW_RECORDED, actor=actor, payload=payload
    )
    if task.agreed:
        return True
    task.status = ReviewTask.Status.OPEN if task.agreed is None else ReviewTask.Status.ADJUDICATION
    task.claimed_by, task.claimed_at, task.lease_expires_at = None, None, None
    task.save(update_fields=["status", "agreed", "claimed_by", "claimed_at", "lease_expires_at"])
    if task.agreed is False:
        escalation.lead_group_notify(
            queue=task.queue,
            subject=f"Reviewers disagree: {recommendation.subject_key} in {task.queue.name}",
            body=(
                f"{len(votes)} reviewers of {recommendation.use_case.name} disagree; a lead decides.\n\n"
                f"{settings.DOORSTEP_BASE_URL}{reverse('reviews:task-detail', args=[task.pk])}\n"
            ),
        )
    return False


def _verdict_apply(*, actor: Actor, task: ReviewTask, recommendation, verdict: ReviewVerdict) -> None:
    """Decide the task with `verdict`: reject, or release (edited) through the workflow services."""
    task.status = ReviewTask.Status.DECIDED
    task.decided_at = verdict.created_at
    task.claimed_by = task.claimed_by or actor.user
    task.save()
    payload = {"queue": task.queue.name, "seconds_spent": verdict.seconds_spent, "comment": verdict.comment}
    if verdict.is_adjudication:
        payload["adjudication"] = True
    elif task.required_reviews > 1 and task.agreed:
        payload["consensus"] = task.required_reviews
    if verdict.decision == ReviewVerdict.Decision.REJECT:
        workflow_services.recommendation_reject(
            recommendation=recommendation, actor=actor, payload=payload | {"reason": verdict.reason_code}
        )
    elif verdict.decision == ReviewVerdict.Decision.EDIT:
        recommendation.final_content = {
            **(recommendation.final_content or recommendation.content),
            "text": verdict.edited_text,
        }
        workflow_services.recommendation_release(
            recommendation=recommendation,
            actor=actor,
            event_type=RecommendationEvent.Type.EDITED,
            payload=payload | {"diff": verdict.diff, "edit_distance": verdict.edit_distance},
        )
    else:
        workflow_services.recommendation_release(
            recommendation=recommendation,
            actor=actor,
            event_type=RecommendationEvent.Type.APPROVED,
            payload=payload,
        )


def queue_lease_release_expired(*, queue_ids=None) -> int:
    """Expired leases go back to the queue (beat); escalated and adjudication items stay with the leads."""
    tasks = ReviewTask.objects.filter(
        status__in=held_statuses(lead=True), claimed_by__isnull=False, lease_expires_at__lt=clock.now()
    )
    if queue_ids is not None:
        tasks = tasks.filter(queue_id__in=queue_ids)
    return tasks.update(status=_RELEASED_STATUS, claimed_by=None, claimed_at=None, lease_expires_at=None)


# Bulk decisions skip the item page, so they are kept to items where a slip costs little.
BULK_RISK_TIERS = (UseCase.RiskTier.MINIMAL, UseCase.RiskTier.LIMITED)
BULK_MAX_ITEMS = 100


class BulkRefusal(NamedTuple):
    task_id: int
    subject_key: str
    why: str


def review_task_bulk_refusal(task: ReviewTask) -> str:
    """Why `task` may not be decided in bulk, or "" when it may: only undecided items of a minimal- or
    limited-risk use case that need a single review and no lead."""
    if task.status == ReviewTask.Status.DECIDED:
        return "Already decided."
    if task.status in ReviewTask.LEAD_STATUSES:
        return "Waiting for a lead: decide it on its own page."
    if task.required_reviews != 1:
        return f"Needs {task.required_reviews} independent reviews: decide it on its own page."
    use_case = task.recommendation.use_case
    if use_case.risk_tier not in BULK_RISK_TIERS:
        return f"{use_case.get_risk_tier_display()}-risk use case: decide it on its own page."
    return ""


def review_tasks_bulk_decide(
    *, actor: Actor, queue: ReviewQueue, task_ids: list[int], decision: str, reason_code: str = "", comment: str
) -> tuple[list[ReviewVerdict], list[BulkRefusal]]:
    """Approve or reject several low-risk items of one queue with one reason (and, to reject, a reason code).
    Needs review_reviewqueue on the queue. Each item is decided through review_task_decide in its own
    transaction (its verdict and events, as one by one), so an item another reviewer holds or that is not
    eligible (review_task_bulk_refusal) or not in the queue is refused with why, and the others go ahead."""
    if not has_object_permission(actor.user, "review_reviewqueue", queue):
        raise PermissionDenied()
    if decision not in (ReviewVerdict.Decision.APPROVE, ReviewVerdict.Decision.REJECT):
        raise ServiceError("Bulk decisions approve or reject.", field="decision")
    if not comment.strip():
        raise ServiceError("A reason is required for a bulk decision.", field="comment")
    if decision == ReviewVerdict.Decision.REJECT and not reason_code:
        raise ServiceError("A reason code is required to reject.", field="reason_code")
    if reason_code and reason_code not in ReviewVerdict.Reason.values:
        raise ServiceError(f"Unknown reason {reason_code!r}.", field="reason_code")
    task_ids = list(dict.fromkeys(task_ids))
    if not task_ids:
        raise ServiceError("Choose at least one item.", field="tasks")
    if len(task_ids) > BULK_MAX_ITEMS:
        raise ServiceError(f"Choose at most {BULK_MAX_ITEMS} items at a time.", field="tasks")
    tasks = ReviewTask.objects.filter(queue=queue).select_related("queue", "recommendation__use_case").in_bulk(task_ids)
    verdicts, refused = [], []
    for task_id in task_ids:
        task = tasks.get(task_id)
        if task is None:  # another queue's id, or none at all: say nothing about it
            refused.append(BulkRefusal(task_id, "", "Not an item of this queue."))
            continue
        why = review_task_bulk_refusal(task)
        if not why:
            try:
                verdicts.append(
                    review_task_decide(
                        actor=actor,
                        task=task,
                        decision=decision,
                        reason_code=reason_code if decision == ReviewVerdict.Decision.REJECT else "",
                        comment=comment,
                    )
                )
                continue
            except ServiceError as exc:  # e.g. another reviewer holds it, or decided it meanwhile
                why = exc.message
        refused.append(BulkRefusal(task.pk, task.recommendation.subject_key, why))
    return verdicts, refused
