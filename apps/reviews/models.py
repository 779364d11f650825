import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.core import clock
from apps.core.history import GovernedHistory
from apps.core.models import TimeStampedModel


class ReviewQueue(TimeStampedModel):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    sla = models.DurationField(default=timedelta(hours=4), help_text="Time to a verdict")
    lease = models.DurationField(default=timedelta(minutes=10), help_text="How long a claim holds")
    business_hours = models.BooleanField(
        default=False, help_text="The SLA clock runs only in business hours (REVIEW_BUSINESS_HOURS)"
    )
    lead_group = models.ForeignKey(
        Group,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="led_review_queues",
        help_text="Breached and escalated items go to this group, which is told by e-mail",
    )
    history = GovernedHistory()

    class Meta:
        ordering = ["name"]
        permissions = [
            ("review_reviewqueue", "Claim and decide items of the queue"),
            ("lead_reviewqueue", "Lead the queue: take over claims, adjudicate, decide escalated items"),
        ]

    def __str__(self):
        return self.name


class ReviewQueueUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE)


class ReviewQueueGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE)


PENDING = models.Q(status__in=["open", "claimed"])


class ReviewTask(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLAIMED = "claimed", "Claimed"
        ESCALATED = "escalated", "Escalated to a lead"
        ADJUDICATION = "adjudication", "Reviewers disagree: needs a lead"
        DECIDED = "decided", "Decided"

    # Only a lead of the queue claims or decides these.
    LEAD_STATUSES = (Status.ESCALATED, Status.ADJUDICATION)

    queue = models.ForeignKey(ReviewQueue, on_delete=models.PROTECT, related_name="tasks")
    recommendation = models.OneToOneField(
        "workflows.Recommendation", on_delete=models.PROTECT, related_name="review_task"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    priority = models.SmallIntegerField(default=0, help_text="Higher first")
    reasons = models.JSONField(default=list, help_text="The rules that sent the item here")
    is_sample = models.BooleanField(
        default=False, help_text="Allowed by the policy, sent to review by the use case's sampling rate"
    )
    created_at = models.DateTimeField(default=clock.now)
    due_at = models.DateTimeField()
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    required_reviews = models.PositiveSmallIntegerField(
        default=1, help_text="Independent verdicts needed (consensus); a disagreement goes to a lead"
    )
    escalated_at = models.DateTimeField(null=True, blank=True, help_text="When the SLA breach or a reviewer escalated")
    agreed = models.BooleanField(null=True, blank=True, help_text="Consensus items: whether the reviewers agreed")
    sla_outcome = models.CharField(
        max_length=20,
        blank=True,
        help_text="What the use case's fallback did on an SLA breach (rejected, delivered_unreviewed), if anything",
    )

    class Meta:
        # Partial indexes over pending items (most of a big table is decided): the list's sort orders, the
        # oldest-pending and capped counters read them in order and stop early.
        indexes = [
            models.Index(fields=["queue", "status", "-priority", "created_at"]),
            models.Index(fields=["status", "due_at"], name="reviewtask_due"),
            models.Index(
                fields=["queue", "-priority", "created_at", "id"], condition=PENDING, name="reviewtask_pending_order"
            ),
            models.Index(fields=["queue", "created_at", "id"], condition=PENDING, name="reviewtask_pending_age"),
            models.Index(fields=["queue", "due_at", "id"], condition=PENDING, name="reviewtask_pending_due"),
            # A reviewer's live claims (claim-next returns their own first): claimed_by alone would walk every
            # item they ever decided.
            models.Index(
                fields=["claimed_by", "queue"],
                condition=models.Q(status__in=["claimed", "escalated", "adjudication"]),
                name="reviewtask_held",
            ),
        ]

    def __str__(self):
        return f"Review of {self.recommendation_id}"

    def is_overdue(self, at=None) -> bool:
        return self.status != self.Status.DECIDED and (at or clock.now()) > self.due_at


class ReviewVerdict(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        EDIT = "edit", "Edit and approve"
        REJECT = "reject", "Reject"
        ESCALATE = "escalate", "Escalate"

    class Reason(models.TextChoices):
        INACCURATE = "inaccurate", "Inaccurate"
        STALE_DATA = "stale_data", "Based on stale data"
        POLICY = "policy", "Against policy"
        TONE = "tone", "Wrong tone"
        OTHER = "other", "Other"

    task = models.ForeignKey(ReviewTask, on_delete=models.PROTECT, related_name="verdicts")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    reason_code = models.CharField(max_length=20, choices=Reason.choices, blank=True)
    comment = models.TextField(blank=True)
    edited_text = models.TextField(blank=True)
    diff = models.TextField(blank=True)
    edit_distance = models.PositiveIntegerField(default=0)
    seconds_spent = models.FloatField(default=0)
    is_adjudication = models.BooleanField(default=False, help_text="A lead's verdict settling a disagreement")
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        indexes = [models.Index(fields=["reviewer", "-created_at"])]

    def __str__(self):
        return f"{self.decision} by {self.reviewer_id}"


class ApprovalRequest(models.Model):
    """A blocking approval for an agent: the proposed action waits for a reviewer's verdict in the desk
    (its recommendation's review task); the caller polls or gets a signed webhook; the timeout decides alone."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        TIMED_OUT = "timed_out", "Timed out"

    class OnTimeout(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.PROTECT, related_name="approval_requests")
    recommendation = models.OneToOneField(
        "workflows.Recommendation", on_delete=models.PROTECT, related_name="approval_request"
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    idempotency_key = models.CharField(max_length=100, blank=True)
    callback_url = models.URLField(blank=True, max_length=500)
    callback_secret_ciphertext = models.TextField(blank=True, help_text="Signs the verdict webhook (encrypted)")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    on_timeout = models.CharField(max_length=10, choices=OnTimeout.choices, default=OnTimeout.REJECT)
    timeout_at = models.DateTimeField()
    created_at = models.DateTimeField(default=clock.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    comment = models.TextField(blank=True)
    callback_attempts = models.PositiveSmallIntegerField(default=0)
    callback_delivered_at = models.DateTimeField(null=True, blank=True)
    callback_error = models.TextField(blank=True)
    history = GovernedHistory()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="approval_request_idempotent",
            )
        ]
        indexes = [models.Index(fields=["status", "timeout_at"])]

    def __str__(self):
        return f"Approval {self.public_id}"
