"""The review desk: queues granted to the reviewer, one queue's pending items, one item and its decision.

Every object comes through apps.reviews.selectors (permission-filtered), so a queue or task that is not
granted is a 404 by URL, by htmx fragment or by guessed id. One view serves the page and its fragment.
"""

import json
from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from apps.connectors.datasets import snapshot_freshness_label
from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied, ServiceError
from apps.core.formatting import duration_label
from apps.core.htmx import render_page
from apps.core.permissions import has_object_permission
from apps.policies.models import PolicyDecision, Rule
from apps.workflows.models import ContextSnapshot

from . import filters, selectors, services, stats
from .filters import AT_RISK_SHARE, TaskFilterForm
from .forms import SKIP, BulkDecisionForm, DashboardFilterForm, ReviewDecisionForm
from .models import ReviewQueue, ReviewTask, ReviewVerdict

PAGE_SIZE = 25

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
    ReviewVerdict.Decision.ESCALATE: "Escalated to a lead",
}
SLA_OUTCOMES = {"rejected": "Rejected on SLA breach", "delivered_unreviewed": "Delivered unreviewed on SLA breach"}


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


def _capped(count: int) -> str:
    return f"{selectors.COUNT_CAP:,}+" if count > selectors.COUNT_CAP else f"{count:,}"


def _annotate_queue(queue: ReviewQueue, now: datetime) -> ReviewQueue:
    queue.pending_text, queue.overdue_text = _capped(queue.pending_count), _capped(queue.overdue_count)
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
    """One granted queue in list mode: filters and sort kept in the URL (filters.TaskFilterForm), 25 items a
    page, keyset-paginated per sort order (no COUNT of the tasks). The list polls every 10 s and its fragment
    brings the queue's counters out of band; ticked low-risk items can be decided in bulk."""
    queue = _queue_or_404(request.user, pk)
    now = clock.now()
    _annotate_queue(queue, now)
    form = TaskFilterForm(request.GET, queue=queue)
    page, next_cursor, is_first_page, sort = [], "", True, filters.DEFAULT_SORT
    if form.is_valid():
        data = form.cleaned_data
        sort = data["sort"] or filters.DEFAULT_SORT
        tasks = filters.task_filter(
            selectors.task_list(user=request.user, queue=queue), data=data, user=request.user, sla=queue.sla, now=now
        )
        page, next_cursor = filters.task_page(tasks, sort=sort, after=data["after"], size=PAGE_SIZE)
        is_first_page = filters.cursor_decode(data["after"], sort) is None
    for task in page:
        task.sla_state = _sla_state(due_at=task.due_at, sla=queue.sla, now=now)
        task.sla_label = SLA_LABELS[task.sla_state]
        task.sla_badge = SLA_BADGES[task.sla_state]
        task.claim_active = selectors.lease_active(task, now)
        task.rule_names = [reason.get("name", "") for reason in task.reasons or []]
        task.bulk_refusal = services.review_task_bulk_refusal(task)
    context = {
        "queue": queue,
        "tasks": page,
        "form": form,
        "next_query": form.query(after=next_cursor) if next_cursor else "",
        "is_first_page": is_first_page,
        "status_label": dict(form.fields["status"].choices)[form.cleaned_data.get("status") or filters.PENDING],
        "sort_label": filters.SORTS[sort][0],
        "bulk_form": BulkDecisionForm(),
        "now": now,
    }
    # 200 for htmx, which does not swap a 4xx (PITFALLS #10); the form names the filter at fault either way.
    status = 200 if form.is_valid() or request.htmx else 400
    return render_page(request, "reviews/queue_detail.html", context, fragment="task-list", status=status)


@login_required
@require_POST
def claim_next(request, pk: int):
    """Claim the next item of the queue and open it; back to the queue when it is clear. The service checks the
    grant (in the query that also finds the reviewer's own claim), so the queue is read by id alone: one not
    granted is a 404 like one that does not exist."""
    queue = ReviewQueue.objects.filter(pk=pk).first()
    try:
        if queue is None:
            raise PermissionDenied()
        task = services.review_task_claim_next(actor=Actor.from_request(request), queue=queue)
    except PermissionDenied:
        raise Http404("No such queue, or it is not granted to you.") from None
    if task is None:
        messages.info(request, "Queue is clear.")
        return _redirect(request, reverse("reviews:queue-detail", args=[queue.pk]))
    return _redirect(request, reverse("reviews:task-detail", args=[task.pk]))


@login_required
@require_POST
def task_renew(request, pk: int):
    """Extend the reviewer's own lease (the item page posts every minute while open). 409 with the reason when
    the claim is no longer theirs, so the page stops renewing and disables the decision (review_desk.js)."""
    task = _task_or_404(request.user, pk)
    try:
        task = services.review_task_lease_renew(actor=Actor.from_request(request), task=task)
    except PermissionDenied:
        raise Http404("No such item, or it is not in a queue granted to you.") from None
    except Conflict as exc:
        return HttpResponse(exc.message, status=409, content_type="text/plain; charset=utf-8")
    if not request.htmx:
        return redirect("reviews:task-detail", pk=task.pk)
    context = {"task": task, **_claim_context(task, request.user, clock.now())}
    return render_page(request, "reviews/task_detail.html", context, fragment="claim-state")


@login_required
@require_POST
def task_take_over(request, pk: int):
    """A lead of the queue takes over another reviewer's claim, with a required reason. A reviewer who sees
    the item but does not lead its queue gets 403; a missing reason re-renders the panel with the error."""
    task = _task_or_404(request.user, pk)
    try:
        services.review_task_take_over(
            actor=Actor.from_request(request), task=task, reason=request.POST.get("reason", "")
        )
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from None
    except ServiceError as exc:  # missing reason, or the claim changed meanwhile (Conflict)
        task.refresh_from_db()
        build = _decision_context if request.htmx else _page_context
        context = build(request, task, notice="" if exc.field else exc.message)
        context["takeover_error"] = exc.message if exc.field else ""
        return render_page(request, "reviews/task_detail.html", context, fragment="decision-panel")
    messages.success(request, "You took over the item; the trail records from whom and why.")
    return _redirect(request, reverse("reviews:task-detail", args=[task.pk]))


def _claim_context(task: ReviewTask, user, now: datetime) -> dict:
    held = selectors.lease_active(task, now)
    held_by_me = held and task.claimed_by_id == user.pk
    held_by_other = held and not held_by_me
    decided = task.status == ReviewTask.Status.DECIDED
    return {
        "decided": decided,
        "held_by_me": held_by_me,
        "held_by_other": held_by_other,
        # "claimed by X, 3 min"; only a lead is offered to take the item over.
        "held_minutes": int((now - task.claimed_at).total_seconds() // 60) if held and task.claimed_at else 0,
        "is_lead": held_by_other and has_object_permission(user, "lead_reviewqueue", task.queue),
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
    needs_lead = not claim["decided"] and services.review_task_lead_only(task)
    leads_queue = has_object_permission(request.user, "lead_reviewqueue", task.queue)
    votes = list(services.review_task_votes(task).select_related("reviewer")) if task.required_reviews > 1 else []
    my_vote = next((vote for vote in votes if vote.reviewer_id == request.user.pk), None)
    escalation = None
    if task.escalated_at:
        escalation = task.verdicts.filter(decision=ReviewVerdict.Decision.ESCALATE).select_related("reviewer").last()
    if verdict is not None and verdict.decision == ReviewVerdict.Decision.ESCALATE:
        verdict = None  # decided by the SLA fallback after a reviewer's escalation: sla_outcome says how
    # Consensus votes stay hidden until the item is decided, except from the lead who settles a dispute.
    show_votes = claim["decided"] or (needs_lead and leads_queue)
    lead_blocked = needs_lead and not leads_queue
    voted = my_vote is not None and not needs_lead and not claim["decided"]
    return {
        "task": task,
        "recommendation": recommendation,
        "form": form,
        "notice": notice,
        "verdict": verdict,
        "verdict_label": DECISION_DONE.get(verdict.decision, "") if verdict else "",
        "sla_outcome_label": SLA_OUTCOMES.get(task.sla_outcome, ""),
        "now": now,
        "sla_label": SLA_LABELS[claim["sla_state"]],
        "sla_badge": SLA_BADGES[claim["sla_state"]],
        **claim,
        "can_decide": claim["can_decide"] and not lead_blocked and not voted,
        "needs_lead": needs_lead,
        "lead_blocked": lead_blocked,
        "votes": votes if show_votes else [],
        "votes_in": len(votes),
        "my_vote": my_vote,
        "my_vote_label": DECISION_DONE.get(my_vote.decision, "").lower() if my_vote else "",
        "voted": voted,
        "escalation": escalation,
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
    # Not claimed on opening: an item only a lead may take (for a non-lead), or a consensus item the user has
    # already voted on (it waits for the other reviewers).
    if services.review_task_lead_only(task):
        may_claim = has_object_permission(request.user, "lead_reviewqueue", task.queue)
    else:
        may_claim = not (
            task.required_reviews > 1 and services.review_task_votes(task).filter(reviewer=request.user).exists()
        )
        if not may_claim and selectors.lease_active(task, now) and task.claimed_by_id == request.user.pk:
            # Claimed again after voting (claim-next offers it): give it back to the other reviewers.
            services.review_task_release(actor=Actor.from_request(request), task=task)
            task.refresh_from_db()
    if (
        may_claim
        and task.status != ReviewTask.Status.DECIDED
        and not (selectors.lease_active(task, now) and task.claimed_by_id != request.user.pk)
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
    """Approve, edit-then-approve, reject, escalate or skip one item; then on to the next item of the same
    queue. A consensus vote is recorded and the item goes on to the other reviewers. An item only a lead may
    decide answers 403 to a reviewer who can see it."""
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
        verdict = services.review_task_decide(
            actor=Actor.from_request(request),
            task=task,
            decision=data["decision"],
            edited_text=data["edited_text"] if data["decision"] == ReviewVerdict.Decision.EDIT else "",
            reason_code=data["reason_code"] if data["decision"] == ReviewVerdict.Decision.REJECT else "",
            comment=data["comment"],
            seconds_spent=seconds_spent,
        )
    except PermissionDenied as exc:
        # The task came through the review grant, so the user sees it: only the lead check can refuse here.
        raise DjangoPermissionDenied(exc.message) from None
    except ServiceError as exc:
        if exc.field in form.fields:
            form.add_error(exc.field, exc.message)
            notice = ""
        else:
            notice = exc.message
        task.refresh_from_db()
        return _decision_response(request, task, form, notice=notice)
    task.refresh_from_db()
    if verdict.decision != ReviewVerdict.Decision.ESCALATE and task.status != ReviewTask.Status.DECIDED:
        messages.success(request, f"Your review of {recommendation.subject_key} is recorded; others review it too.")
        # Not claim-next: the item just voted on is back in the queue and would come first again.
        return _redirect(request, _skip_url(request, task))
    messages.success(request, f"{DECISION_DONE[data['decision']]}: {recommendation.subject_key}.")
    return _redirect(request, _next_url(request, task.queue))


@login_required
@require_POST
def queue_bulk_decide(request, pk: int):
    """Approve or reject the ticked items of a granted queue with one reason; refused items are listed back
    with why. The answer is the bulk bar; the list refreshes itself on the review-tasks-changed event."""
    queue = _queue_or_404(request.user, pk)
    form = BulkDecisionForm(request.POST)
    decided, refused = [], []
    if form.is_valid():
        data = form.cleaned_data
        try:
            decided, refused = services.review_tasks_bulk_decide(
                actor=Actor.from_request(request),
                queue=queue,
                task_ids=data["tasks"],
                decision=data["decision"],
                reason_code=data["reason_code"],
                comment=data["comment"],
            )
        except PermissionDenied:
            raise Http404("No such queue, or it is not granted to you.") from None
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            form = BulkDecisionForm()
    done = DECISION_DONE.get(request.POST.get("decision", ""), "Decided")
    if not request.htmx:
        if decided:
            messages.success(request, f"{done}: {len(decided)} item{'s' if len(decided) != 1 else ''}.")
        for refusal in refused:
            messages.warning(request, f"Not decided: {refusal.subject_key or f'#{refusal.task_id}'}: {refusal.why}")
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect(reverse("reviews:queue-detail", args=[queue.pk]))
    context = {
        "queue": queue,
        "bulk_form": form,
        "bulk_done": done,
        "bulk_decided": len(decided),
        "bulk_refused": refused,
    }
    response = render_page(request, "reviews/queue_detail.html", context, fragment="bulk-panel")
    if decided:
        response["HX-Trigger"] = "review-tasks-changed"
    return response


@login_required
@require_GET
def task_similar(request, pk: int):
    """Fragment of the item page: decided items of the same use case with the same rules or subject, and
    how they were decided (only items of queues granted to the user)."""
    task = _task_or_404(request.user, pk)
    similar = selectors.task_similar(user=request.user, task=task)
    for item in similar:
        item.verdict_label = DECISION_DONE.get(item.verdict_decision, "")
    response = render(request, "reviews/_similar.html", {"task": task, "similar": similar})
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def dashboard(request):
    """Reviewer figures (items cleared, median time, SLA hit, override and agreement rates) over the queues
    the user may review or lead; nothing of other queues. The filter form swaps the figures by htmx."""
    form = DashboardFilterForm(request.GET or None)
    since, until = form.period(timezone.localdate())
    context = {
        "form": form,
        "since": since,
        "until": until - timedelta(days=1),  # the last day included
        **stats.dashboard(user=request.user, since=since, until=until),
    }
    return render_page(request, "reviews/dashboard.html", context, fragment="dashboard-body")
