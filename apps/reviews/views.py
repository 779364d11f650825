"""The review desk: queues granted to the reviewer, one queue's pending items, one item and its decision.

Every object comes through apps.reviews.selectors (permission-filtered), so a queue or task that is not
granted is a 404 by URL, by htmx fragment or by guessed id. One view serves the page and its fragment.
"""

import base64
import binascii
import json
from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from apps.connectors.datasets import snapshot_freshness_label
from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.formatting import duration_label
from apps.core.htmx import render_page
from apps.policies.models import PolicyDecision, Rule
from apps.workflows.models import ContextSnapshot

from . import selectors, services
from .forms import SKIP, ReviewDecisionForm
from .models import ReviewQueue, ReviewTask, ReviewVerdict

PAGE_SIZE = 25
# A queue or item is "at risk" once three quarters of its SLA have gone by.
AT_RISK_SHARE = 0.75

SLA_OK, SLA_AT_RISK, SLA_BREACHED = "ok", "at_risk", "breached"
SLA_LABELS = {SLA_OK: "OK", SLA_AT_RISK: "At risk", SLA_BREACHED: "Breached"}
SLA_BADGES = {SLA_OK: "text-bg-success", SLA_AT_RISK: "text-bg-warning", SLA_BREACHED: "text-bg-danger"}
FRESHNESS_BADGES = {
    ContextSnapshot.Freshness.FRESH: "text-bg-success",
    ContextSnapshot.Freshness.STALE: "text-bg-danger",
    ContextSnapshot.Freshness.UNKNOWN: "text-bg-secondary",
}
DECISION_DONE = {
    ReviewVerdict.Decision.APPROVE: "Approved",
    ReviewVerdict.Decision.EDIT: "Edited and approved",
    ReviewVerdict.Decision.REJECT: "Rejected",
}


# --- helpers -------------------------------------------------------------------------------------------


def _redirect(request, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _queue_or_404(user, pk: int) -> ReviewQueue:
    try:
        return selectors.queue_list(user=user).get(pk=pk)
    except ReviewQueue.DoesNotExist:
        raise Http404("No such queue, or it is not granted to you.") from None


def _task_or_404(user, pk: int) -> ReviewTask:
    try:
        return selectors.task_get(user=user, pk=pk)
    except ReviewTask.DoesNotExist:
        raise Http404("No such item, or it is not in a queue granted to you.") from None


def _sla_state(*, due_at: datetime | None, sla: timedelta, now: datetime) -> str:
    if due_at is None:
        return SLA_OK
    if now > due_at:
        return SLA_BREACHED
    if due_at - now <= sla * (1 - AT_RISK_SHARE):
        return SLA_AT_RISK
    return SLA_OK


def _annotate_queue(queue: ReviewQueue, now: datetime) -> ReviewQueue:
    queue.sla_state = _queue_sla_state(queue, now)
    queue.sla_label = SLA_LABELS[queue.sla_state]
    queue.sla_badge = SLA_BADGES[queue.sla_state]
    queue.sla_text = duration_label(queue.sla)
    queue.lease_text = duration_label(queue.lease)
    return queue


def _queue_sla_state(queue: ReviewQueue, now: datetime) -> str:
    if queue.overdue_count:
        return SLA_BREACHED
    # The oldest pending item is the first to breach; its due time is its creation plus the queue's SLA.
    due = queue.oldest_pending + queue.sla if queue.oldest_pending else None
    return _sla_state(due_at=due, sla=queue.sla, now=now)


def _lease_active(task: ReviewTask, now: datetime) -> bool:
    return (
        task.status == ReviewTask.Status.CLAIMED
        and task.claimed_by_id is not None
        and task.lease_expires_at is not None
        and task.lease_expires_at >= now
    )


def _cursor_encode(task: ReviewTask) -> str:
    raw = json.dumps([task.priority, task.created_at.isoformat(), task.pk])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _cursor_decode(value: str) -> tuple[int, datetime, int] | None:
    """The position a cursor points after; None for a missing or malformed cursor (the first page)."""
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        priority, created_at, pk = json.loads(raw)
        return int(priority), datetime.fromisoformat(created_at), int(pk)
    except (binascii.Error, ValueError, TypeError):
        return None


# --- views ---------------------------------------------------------------------------------------------


@login_required
@require_GET
def queue_list(request):
    """The reviewer's home: granted queues with live counters (the rows poll every 10 s)."""
    now = clock.now()
    queues = list(selectors.queue_list(user=request.user))
    for queue in queues:
        _annotate_queue(queue, now)
    return render_page(request, "reviews/queue_list.html", {"queues": queues, "now": now}, fragment="queue-rows")


@login_required
@require_GET
def queue_detail(request, pk: int):
    """Pending items of one granted queue, 25 a page, keyset-paginated (no COUNT of the tasks)."""
    queue = _queue_or_404(request.user, pk)
    now = clock.now()
    _annotate_queue(queue, now)
    cursor = request.GET.get("after", "")
    position = _cursor_decode(cursor)
    page, has_next = selectors.task_page(user=request.user, queue=queue, after=position, size=PAGE_SIZE)
    for task in page:
        task.sla_state = _sla_state(due_at=task.due_at, sla=queue.sla, now=now)
        task.sla_label = SLA_LABELS[task.sla_state]
        task.sla_badge = SLA_BADGES[task.sla_state]
        task.claim_active = _lease_active(task, now)
        task.rule_names = [reason.get("name", "") for reason in task.reasons or []]
    context = {
        "queue": queue,
        "tasks": page,
        "next_cursor": _cursor_encode(page[-1]) if has_next else "",
        "is_first_page": position is None,
        "now": now,
    }
    return render_page(request, "reviews/queue_detail.html", context, fragment="task-rows")


@login_required
@require_POST
def claim_next(request, pk: int):
    """Claim the next item of the queue and open it; back to the queue when it is clear."""
    queue = _queue_or_404(request.user, pk)
    try:
        task = services.review_task_claim_next(actor=Actor.from_request(request), queue=queue)
    except PermissionDenied:
        raise Http404("No such queue, or it is not granted to you.") from None
    if task is None:
        messages.info(request, "Queue is clear.")
        return _redirect(request, reverse("reviews:queue-detail", args=[queue.pk]))
    return _redirect(request, reverse("reviews:task-detail", args=[task.pk]))


def _claim_context(task: ReviewTask, user, now: datetime) -> dict:
    held = _lease_active(task, now)
    held_by_me = held and task.claimed_by_id == user.pk
    held_by_other = held and not held_by_me
    decided = task.status == ReviewTask.Status.DECIDED
    return {
        "decided": decided,
        "held_by_me": held_by_me,
        "held_by_other": held_by_other,
        "can_decide": not decided and not held_by_other,
        "sla_state": _sla_state(due_at=task.due_at, sla=task.queue.sla, now=now),
    }


def _decision_context(request, task: ReviewTask, form: ReviewDecisionForm | None = None, notice: str = "") -> dict:
    now = clock.now()
    recommendation = task.recommendation
    if form is None:
        form = ReviewDecisionForm(
            initial={"edited_text": recommendation.text, "opened_at": round(now.timestamp(), 3)},
            original_text=recommendation.text,
        )
    for name in form.errors:
        if name in form.fields:  # Bootstrap's red border; Django adds aria-invalid and aria-describedby itself
            widget = form.fields[name].widget
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()
    claim = _claim_context(task, request.user, now)
    verdict = (
        task.verdicts.select_related("reviewer").order_by("-created_at", "-pk").first() if claim["decided"] else None
    )
    return {
        "task": task,
        "recommendation": recommendation,
        "form": form,
        "notice": notice,
        "verdict": verdict,
        "verdict_label": DECISION_DONE.get(verdict.decision, "") if verdict else "",
        "now": now,
        "sla_label": SLA_LABELS[claim["sla_state"]],
        "sla_badge": SLA_BADGES[claim["sla_state"]],
        **claim,
    }


def _page_context(request, task: ReviewTask, **kwargs) -> dict:
    """Everything the item page shows: the output, the data it was based on, why it is here."""
    context = _decision_context(request, task, **kwargs)
    recommendation = task.recommendation
    try:
        policy_decision = recommendation.policy_decision
    except PolicyDecision.DoesNotExist:
        policy_decision = None
    original_text = ""
    if policy_decision is not None and policy_decision.redactions:
        original_text = str((recommendation.content or {}).get("text", ""))
    snapshots = []
    if recommendation.run_id:
        for snapshot in recommendation.run.context_snapshots.order_by("pk"):
            records = [
                {"id": record_id, "fields": sorted(record.items()) if isinstance(record, dict) else [("value", record)]}
                for record_id, record in zip(
                    snapshot.record_ids + [""] * (len(snapshot.records) - len(snapshot.record_ids)),
                    snapshot.records,
                    strict=False,
                )
            ]
            snapshots.append(
                {
                    "snapshot": snapshot,
                    "records": records,
                    "freshness_badge": FRESHNESS_BADGES.get(snapshot.freshness, "text-bg-secondary"),
                    "freshness_label": snapshot_freshness_label(snapshot),
                }
            )
    reasons = task.reasons or []
    rules = Rule.objects.in_bulk([r["rule_id"] for r in reasons if r.get("rule_id")])
    fired = [
        {
            "name": reason.get("name") or (rules.get(reason.get("rule_id")) or "Unnamed rule"),
            "effect": reason.get("effect", ""),
            "error": reason.get("error", ""),
            "rule": rules.get(reason.get("rule_id")),
        }
        for reason in reasons
    ]
    proposed_action = recommendation.proposed_action or {}
    context.update(
        {
            "policy_decision": policy_decision,
            "policy_version": recommendation.policy_version,
            "original_text": original_text,
            "snapshots": snapshots,
            "fired": fired,
            "proposed_action": json.dumps(proposed_action, indent=2, sort_keys=True, default=str)
            if proposed_action
            else "",
        }
    )
    return context


@login_required
@require_GET
def task_detail(request, pk: int):
    """One item. Opening it claims it for the reviewer (or renews their lease) unless another reviewer
    holds the lease; then the page says who and until when, and the decision buttons are disabled."""
    task = _task_or_404(request.user, pk)
    notice = ""
    now = clock.now()
    if task.status != ReviewTask.Status.DECIDED and not (
        _lease_active(task, now) and task.claimed_by_id != request.user.pk
    ):
        try:
            task = services.review_task_claim(actor=Actor.from_request(request), task=task)
        except PermissionDenied:
            raise Http404("No such item, or it is not in a queue granted to you.") from None
        except ServiceError as exc:  # Conflict: another reviewer was faster
            notice = exc.message
            task.refresh_from_db()
    if request.htmx:
        context = _decision_context(request, task, notice=notice)
    else:
        context = _page_context(request, task, notice=notice)
    return render_page(request, "reviews/task_detail.html", context, fragment="decision-panel")


def _next_url(request, queue: ReviewQueue) -> str:
    """Claim the next item of the queue for the reviewer; its page, or the queue's page when it is clear."""
    task = services.review_task_claim_next(actor=Actor.from_request(request), queue=queue)
    if task is None:
        messages.info(request, "Queue is clear.")
        return reverse("reviews:queue-detail", args=[queue.pk])
    return reverse("reviews:task-detail", args=[task.pk])


def _skip_url(request, task: ReviewTask) -> str:
    """The next pending item after this one that the reviewer may take (wrapping round to the first)."""
    target = selectors.task_after(user=request.user, task=task)
    if target is None:
        messages.info(request, "No other item is waiting in this queue.")
        return reverse("reviews:queue-detail", args=[task.queue_id])
    return reverse("reviews:task-detail", args=[target.pk])


def _decision_response(request, task: ReviewTask, form: ReviewDecisionForm, notice: str = "") -> HttpResponse:
    # 200, not 4xx: htmx 2 does not swap error responses, and the form must show its errors (PITFALLS #10).
    if request.htmx:
        context = _decision_context(request, task, form=form, notice=notice)
    else:
        context = _page_context(request, task, form=form, notice=notice)
    return render_page(request, "reviews/task_detail.html", context, fragment="decision-panel")


@login_required
@require_POST
def task_decide(request, pk: int):
    """Approve, edit-then-approve, reject or skip one item; then on to the next item of the same queue."""
    task = _task_or_404(request.user, pk)
    recommendation = task.recommendation
    form = ReviewDecisionForm(request.POST, original_text=recommendation.text)
    if not form.is_valid():
        return _decision_response(request, task, form)
    data = form.cleaned_data
    if data["decision"] == SKIP:
        url = _skip_url(request, task)
        services.review_task_release(actor=Actor.from_request(request), task=task)
        return _redirect(request, url)
    opened_at = data.get("opened_at")
    seconds_spent = clock.now().timestamp() - opened_at if opened_at else 0.0
    try:
        services.review_task_decide(
            actor=Actor.from_request(request),
            task=task,
            decision=data["decision"],
            edited_text=data["edited_text"] if data["decision"] == ReviewVerdict.Decision.EDIT else "",
            reason_code=data["reason_code"] if data["decision"] == ReviewVerdict.Decision.REJECT else "",
            comment=data["comment"],
            seconds_spent=seconds_spent,
        )
    except PermissionDenied:
        raise Http404("No such item, or it is not in a queue granted to you.") from None
    except ServiceError as exc:
        if exc.field in form.fields:
            form.add_error(exc.field, exc.message)
            notice = ""
        else:
            notice = exc.message
        task.refresh_from_db()
        return _decision_response(request, task, form, notice=notice)
    messages.success(request, f"{DECISION_DONE[data['decision']]}: {recommendation.subject_key}.")
    return _redirect(request, _next_url(request, task.queue))
