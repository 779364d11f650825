"""Blocking approvals for agents: an agent proposes an action and waits for a person's verdict.

The proposed action enters the normal pipeline as a recommendation (the policy is evaluated and the
trail starts), and always goes to the use case's review queue, since a blocking approval is a human
decision; a policy block rejects it at once. The reviewer decides it in the desk like any other item
(review_task_decide calls `approval_resolve_from_review`); when nobody has by `timeout_at`, beat resolves
it to the caller's `on_timeout`. The caller polls, or gets a signed Standard Webhooks callback.
"""

import base64
import dataclasses
import datetime as dt
import json
import secrets
from urllib.parse import urlparse

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.urls import reverse

from apps.connectors import crypto
from apps.connectors.clients import http
from apps.connectors.clients.errors import ConnectorError
from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, ServiceError
from apps.core.permissions import restrict
from apps.core.tasks import send_after_commit
from apps.delivery import webhooks
from apps.delivery.services import retry_delay
from apps.workflows import services as workflow_services
from apps.workflows.models import Recommendation, RecommendationEvent, UseCase

from .models import ApprovalRequest, ReviewTask, ReviewVerdict

MIN_TIMEOUT = dt.timedelta(seconds=10)
MAX_TIMEOUT = dt.timedelta(days=7)
CALLBACK_MAX_ATTEMPTS = 8  # 30 s doubling: about an hour of retries, below the broker's visibility timeout
CALLBACK_LOST_AFTER = dt.timedelta(minutes=2)  # a resolved approval whose callback task never ran
EXCERPT = 500

Status = ApprovalRequest.Status


@dataclasses.dataclass(frozen=True)
class ApprovalInput:
    """What an agent asks for; the fields compared when an idempotency key is used again."""

    subject: str
    action: dict
    text: str
    timeout_seconds: int
    on_timeout: str = ApprovalRequest.OnTimeout.REJECT
    callback_url: str = ""
    context: dict = dataclasses.field(default_factory=dict)
    confidence: float | None = None


# --- selectors -----------------------------------------------------------------------------------------------


def approval_list(*, user) -> QuerySet[ApprovalRequest]:
    """Approvals of use cases the user may view."""
    return ApprovalRequest.objects.filter(
        use_case__in=restrict(UseCase.objects.all(), user, "view_usecase")
    ).select_related("use_case", "recommendation", "decided_by")


def approval_get(*, user, public_id) -> ApprovalRequest | None:
    """One approval the user may view; None for an unknown id and for one of a use case not visible."""
    return approval_list(user=user).filter(public_id=public_id).first()


def approvals_due(*, now=None) -> list[int]:
    """Pending approvals past their timeout, or whose review task was decided by a path that does not tell
    us (e.g. the use case's SLA fallback): the beat sweep resolves them."""
    now = now or clock.now()
    return list(
        ApprovalRequest.objects.filter(status=Status.PENDING)
        .filter(Q(timeout_at__lte=now) | Q(recommendation__review_task__status=ReviewTask.Status.DECIDED))
        .values_list("pk", flat=True)
    )


def approval_callbacks_lost(*, now=None) -> list[int]:
    """Resolved approvals whose callback was never tried (the broker lost the task)."""
    now = now or clock.now()
    return list(
        ApprovalRequest.objects.exclude(status=Status.PENDING)
        .exclude(callback_url="")
        .filter(callback_delivered_at__isnull=True, callback_attempts=0, decided_at__lt=now - CALLBACK_LOST_AFTER)
        .values_list("pk", flat=True)
    )


def approval_decision(approval: ApprovalRequest) -> str | None:
    """approve / reject once resolved (a timeout resolves to on_timeout), None while pending."""
    if approval.status == Status.APPROVED:
        return ApprovalRequest.OnTimeout.APPROVE
    if approval.status == Status.REJECTED:
        return ApprovalRequest.OnTimeout.REJECT
    if approval.status == Status.TIMED_OUT:
        return approval.on_timeout
    return None


def approval_data(approval: ApprovalRequest) -> dict:
    """What the caller sees of an approval, by poll or callback: the verdict, the reviewer's comment, and
    the text and action as approved (a reviewer may have edited the text)."""
    recommendation = approval.recommendation
    edited = recommendation.events.filter(type=RecommendationEvent.Type.EDITED).exists()
    return {
        "id": approval.public_id,
        "use_case": approval.use_case.slug,
        "subject": recommendation.subject_key,
        "status": approval.status,
        "decision": approval_decision(approval),
        "comment": approval.comment,
        "decided_at": approval.decided_at,
        "decided_by": approval.decided_by.get_username() if approval.decided_by_id else None,
        "edited": edited,
        "text": recommendation.text,
        "action": recommendation.proposed_action,
        "on_timeout": approval.on_timeout,
        "timeout_at": approval.timeout_at,
        "created_at": approval.created_at,
        "recommendation_id": recommendation.pk,
        "poll_url": settings.DOORSTEP_BASE_URL + reverse("api-approval-detail", args=[approval.public_id]),
        "callback_url": approval.callback_url,
        "callback_attempts": approval.callback_attempts,
        "callback_delivered_at": approval.callback_delivered_at,
    }


# --- services ------------------------------------------------------------------------------------------------


def _clean_callback_url(url: str) -> str:
    """An http(s) URL whose address may be called: the webhook destinations' SSRF rule (checked again
    when the callback is sent, against DNS rebinding)."""
    url = (url or "").strip()
    if not url:
        return ""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ServiceError("Enter an http:// or https:// URL with a host name.", field="callback_url")
    try:
        http.check_address(url)
    except ConnectorError as exc:
        raise ServiceError(str(exc), field="callback_url") from None
    return url


def _same_request(approval: ApprovalRequest, use_case: UseCase, data: ApprovalInput) -> bool:
    recommendation = approval.recommendation
    requested = round((approval.timeout_at - approval.created_at).total_seconds())
    return (
        approval.use_case_id == use_case.pk
        and recommendation.subject_key == data.subject
        and recommendation.proposed_action == data.action
        and recommendation.content.get("text") == data.text
        and requested == data.timeout_seconds
        and approval.on_timeout == data.on_timeout
        and approval.callback_url == data.callback_url
    )


def _replay(*, actor: Actor, use_case: UseCase, data: ApprovalInput, key: str, field: str) -> ApprovalRequest | None:
    """The approval this caller already made with `key` (409 when the request differs), else None."""
    existing = (
        ApprovalRequest.objects.select_related("recommendation")
        .filter(requested_by=actor.user, idempotency_key=key)
        .first()
    )
    if existing is not None and not _same_request(existing, use_case, data):
        raise Conflict(
            "This idempotency key was used with a different request.", field=field, code="idempotency_key_reused"
        )
    return existing


def approval_request(
    *, actor: Actor, use_case: UseCase, data: ApprovalInput, idempotency_key: str = "", key_field="idempotency_key"
) -> tuple[ApprovalRequest, str | None, bool]:
    """Ask for a blocking approval. Needs run_usecase (as submitting a recommendation does). Returns the
    approval, its callback signing secret, which exists only in this answer (None without a callback), and
    whether it was created: `idempotency_key` finds the caller's earlier approval for the same request
    (without its secret), and a different request with the same key is a conflict (`key_field` names it)."""
    seconds = dt.timedelta(seconds=data.timeout_seconds)
    if not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
        raise ServiceError(
            f"Between {MIN_TIMEOUT.total_seconds():.0f} seconds and {MAX_TIMEOUT.days} days.", field="timeout_seconds"
        )
    if data.on_timeout not in ApprovalRequest.OnTimeout.values:
        raise ServiceError(f"Unknown value {data.on_timeout!r}: approve or reject.", field="on_timeout")
    callback_url = _clean_callback_url(data.callback_url)
    data = dataclasses.replace(data, callback_url=callback_url)
    if idempotency_key:
        existing = _replay(actor=actor, use_case=use_case, data=data, key=idempotency_key, field=key_field)
        if existing is not None:
            return existing, None, False
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode() if callback_url else None
    producer = f"agent:{actor.api_key.name}" if actor.api_key is not None else f"agent:{actor.user.get_username()}"
    draft = workflow_services.Draft(
        subject_key=data.subject,
        content={"text": data.text},
        confidence=data.confidence,
        proposed_action=data.action,
        producer=producer[:100],
        context=data.context,
        review_required=True,
    )
    try:
        with transaction.atomic():
            (recommendation,) = workflow_services.recommendation_submit(actor=actor, use_case=use_case, drafts=[draft])
            now = clock.now()
            approval = ApprovalRequest(
                use_case=use_case,
                recommendation=recommendation,
                requested_by=actor.user,
                idempotency_key=idempotency_key,
                callback_url=callback_url,
                callback_secret_ciphertext=crypto.encrypt_secrets({"signing_secret": secret}) if secret else "",
                on_timeout=data.on_timeout,
                timeout_at=now + seconds,
                created_at=now,
            )
            if recommendation.status == Recommendation.Status.BLOCKED:
                rules = recommendation.events.filter(type=RecommendationEvent.Type.BLOCKED).values_list(
                    "payload", flat=True
                )
                approval.status = Status.REJECTED
                approval.decided_at = now
                approval.comment = _blocked_comment(next(iter(rules), {}))
            approval._history_user = actor.history_user
            approval._change_reason = f"Requested by {actor.label}"[:100]
            approval.save()
            if approval.status == Status.PENDING:
                _task_fit_to_timeout(approval)
            else:
                _callback_schedule(approval)
    except IntegrityError:
        # A concurrent request with the same key won: answer with its approval.
        if not idempotency_key:
            raise
        existing = _replay(actor=actor, use_case=use_case, data=data, key=idempotency_key, field=key_field)
        if existing is None:
            raise
        return existing, None, False
    return approval, secret, True


def _blocked_comment(payload: dict) -> str:
    reason = payload.get("reason") or ", ".join(payload.get("rules") or []) or "the policy"
    return f"Blocked by the policy: {reason}."


def _task_fit_to_timeout(approval: ApprovalRequest) -> None:
    """The review is due no later than the timeout, and the desk says why the item is there."""
    task = ReviewTask.objects.get(recommendation_id=approval.recommendation_id)
    reason = {
        "rule_id": None,
        "name": "Blocking approval",
        "effect": "review",
        "description": f"An agent waits for this decision until {approval.timeout_at:%Y-%m-%d %H:%M} UTC.",
    }
    ReviewTask.objects.filter(pk=task.pk).update(
        due_at=min(task.due_at, approval.timeout_at), reasons=[*task.reasons, reason]
    )


def _resolve(approval: ApprovalRequest, *, status: str, actor: Actor, reason: str, **fields) -> None:
    approval.status = status
    approval.decided_at = fields.pop("decided_at", None) or clock.now()
    for name, value in fields.items():
        setattr(approval, name, value)
    approval._history_user = actor.history_user
    approval._change_reason = reason[:100]
    approval.save()
    _callback_schedule(approval)


def _callback_schedule(approval: ApprovalRequest) -> None:
    from .tasks import approval_callback_send_task

    if approval.callback_url:
        send_after_commit(approval_callback_send_task, approval.pk)


def approval_resolve_from_review(*, task: ReviewTask, verdict: ReviewVerdict, actor: Actor) -> None:
    """The desk's final verdict resolves the item's approval, in the verdict's transaction: approve or edit
    → approved, reject → rejected. A no-op for items without a pending approval and for verdicts that do
    not decide the task (a consensus vote, an escalation)."""
    if task.status != ReviewTask.Status.DECIDED:
        return
    approval = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .filter(recommendation_id=task.recommendation_id, status=Status.PENDING)
        .first()
    )
    if approval is None:
        return
    if verdict.decision in (ReviewVerdict.Decision.APPROVE, ReviewVerdict.Decision.EDIT):
        status = Status.APPROVED
    elif verdict.decision == ReviewVerdict.Decision.REJECT:
        status = Status.REJECTED
    else:
        return
    _resolve(
        approval,
        status=status,
        actor=actor,
        reason=f"{verdict.get_decision_display()} by {actor.label}",
        decided_at=verdict.created_at,
        decided_by=verdict.reviewer,
        comment=verdict.comment,
    )


def approval_time_out(*, approval_id: int) -> ApprovalRequest:
    """Beat: resolve one pending approval past its timeout to its on_timeout, deciding its review task so it
    leaves the queue (actor: the system; the trail says the timeout decided). An approval whose task was
    already decided elsewhere takes that outcome instead. Idempotent: a resolved approval is left alone."""
    actor = Actor.for_system("approval_timeout")
    with transaction.atomic():
        approval = ApprovalRequest.objects.select_related("recommendation").get(pk=approval_id)
        if approval.status != Status.PENDING:
            return approval
        now = clock.now()
        closed = 0
        if approval.timeout_at <= now:
            # The conditional update claims the decision (SQLite has no row locks); a reviewer's verdict that
            # races it finds the task decided and gets a conflict.
            closed = (
                ReviewTask.objects.filter(recommendation_id=approval.recommendation_id)
                .exclude(status=ReviewTask.Status.DECIDED)
                .update(status=ReviewTask.Status.DECIDED, decided_at=now, lease_expires_at=None)
            )
        recommendation = workflow_services.recommendation_lock(pk=approval.recommendation_id)
        approval = ApprovalRequest.objects.select_for_update(of=("self",)).get(pk=approval_id)
        if approval.status != Status.PENDING:
            return approval
        if not closed:  # not due yet, or the task was decided by a path that did not resolve the approval
            _resolve_from_outcome(approval, recommendation, actor)
            return approval
        payload = {"approval": str(approval.public_id), "timed_out": True, "on_timeout": approval.on_timeout}
        if approval.on_timeout == ApprovalRequest.OnTimeout.APPROVE:
            workflow_services.recommendation_release(
                recommendation=recommendation,
                actor=actor,
                event_type=RecommendationEvent.Type.APPROVED,
                payload=payload | {"automatic": True},
            )
        else:
            workflow_services.recommendation_reject(
                recommendation=recommendation, actor=actor, payload=payload | {"reason": "approval timed out"}
            )
        _resolve(
            approval,
            status=Status.TIMED_OUT,
            actor=actor,
            reason=f"Timed out: resolved to {approval.on_timeout}",
            decided_at=now,
            comment=f"No decision before the timeout: resolved to {approval.on_timeout}.",
        )
    return approval


def _resolve_from_outcome(approval: ApprovalRequest, recommendation: Recommendation, actor: Actor) -> None:
    """The review task was decided without a verdict that told us (e.g. the SLA fallback): follow the
    recommendation's outcome."""
    rejected = recommendation.status in (Recommendation.Status.REJECTED, Recommendation.Status.BLOCKED)
    if recommendation.status == Recommendation.Status.QUEUED:
        return
    _resolve(
        approval,
        status=Status.REJECTED if rejected else Status.APPROVED,
        actor=actor,
        reason="Resolved from the review task's outcome",
        decided_at=recommendation.decided_at,
        comment=f"The review item was closed as {recommendation.get_status_display().lower()}.",
    )


# --- the callback --------------------------------------------------------------------------------------------


def approval_callback_body(approval: ApprovalRequest) -> bytes:
    """The event the agent's callback URL gets (Standard Webhooks envelope: type, timestamp, data); the
    data is what a poll answers."""
    body = {"type": "approval.resolved", "timestamp": approval.decided_at, "data": approval_data(approval)}
    return json.dumps(body, cls=DjangoJSONEncoder).encode()


def approval_callback_send(*, approval_id: int) -> float | None:
    """One attempt at the callback. Returns the seconds to wait before the next attempt, or None when done
    (delivered, given up, or nothing to send). Attempts and the last error are kept on the approval; they
    are bookkeeping, not governed changes, so they skip history."""
    approval = ApprovalRequest.objects.select_related("use_case", "recommendation", "decided_by").get(pk=approval_id)
    if approval.status == Status.PENDING or not approval.callback_url or approval.callback_delivered_at:
        return None
    if approval.callback_attempts >= CALLBACK_MAX_ATTEMPTS:
        return None
    secret = crypto.decrypt_secrets(approval.callback_secret_ciphertext).get("signing_secret", "")
    rows = ApprovalRequest.objects.filter(pk=approval.pk)
    try:
        webhooks.send(
            url=approval.callback_url,
            secret=secret,
            msg_id=f"apr-{approval.public_id}",
            body=approval_callback_body(approval),
        )
    except ConnectorError as exc:
        attempts = approval.callback_attempts + 1
        rows.update(callback_attempts=F("callback_attempts") + 1, callback_error=str(exc)[:EXCERPT])
        if exc.permanent or attempts >= CALLBACK_MAX_ATTEMPTS:
            if exc.permanent:  # a refused address: retrying cannot help
                rows.update(callback_attempts=CALLBACK_MAX_ATTEMPTS)
            return None
        return retry_delay(attempts, exc)
    rows.update(callback_attempts=F("callback_attempts") + 1, callback_delivered_at=clock.now(), callback_error="")
    return None
