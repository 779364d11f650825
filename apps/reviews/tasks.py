from celery import shared_task

from . import approvals, escalation, services


@shared_task(acks_late=True)
def review_leases_release_task():
    """Expired claims go back to their queue."""
    return services.queue_lease_release_expired()


@shared_task(acks_late=True)
def review_sla_escalate_task():
    """Beat (every minute): escalate items past their SLA and apply their use case's fallback, a bounded batch
    a run (idempotent: an escalated item is never escalated, nor e-mailed about, again)."""
    return escalation.review_tasks_escalate_breached()


@shared_task(bind=True, acks_late=True, max_retries=approvals.CALLBACK_MAX_ATTEMPTS)
def approval_callback_send_task(self, approval_id: int):
    """Send a resolved approval's signed callback; a failed attempt comes back after a backoff (the attempt
    count on the approval bounds the retries, so a resent task gets no fresh budget)."""
    delay = approvals.approval_callback_send(approval_id=approval_id)
    if delay is not None:
        raise self.retry(countdown=delay)


@shared_task(acks_late=True)
def approvals_timeout_task():
    """Beat: resolve approvals past their timeout (or whose item was decided elsewhere), and send the
    callbacks a lost task never sent."""
    due = approvals.approvals_due()
    for approval_id in due:
        approvals.approval_time_out(approval_id=approval_id)
    for approval_id in approvals.approval_callbacks_lost():
        approval_callback_send_task.delay(approval_id)
    return len(due)
