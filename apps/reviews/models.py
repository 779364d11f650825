from datetime import timedelta

from django.conf import settings
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from apps.core import clock
from apps.core.models import TimeStampedModel


class ReviewQueue(TimeStampedModel):
    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    sla = models.DurationField(default=timedelta(hours=4), help_text="Time to a verdict")
    lease = models.DurationField(default=timedelta(minutes=10), help_text="How long a claim holds")
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        permissions = [("review_reviewqueue", "Claim and decide items of the queue")]

    def __str__(self):
        return self.name


class ReviewQueueUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE)


class ReviewQueueGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE)


class ReviewTask(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLAIMED = "claimed", "Claimed"
        DECIDED = "decided", "Decided"

    queue = models.ForeignKey(ReviewQueue, on_delete=models.PROTECT, related_name="tasks")
    recommendation = models.OneToOneField(
        "workflows.Recommendation", on_delete=models.PROTECT, related_name="review_task"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
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

    class Meta:
        indexes = [models.Index(fields=["queue", "status", "-priority", "created_at"])]

    def __str__(self):
        return f"Review of {self.recommendation_id}"

    def is_overdue(self, at=None) -> bool:
        return self.status != self.Status.DECIDED and (at or clock.now()) > self.due_at


class ReviewVerdict(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        EDIT = "edit", "Edit and approve"
        REJECT = "reject", "Reject"

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
    created_at = models.DateTimeField(default=clock.now)

    def __str__(self):
        return f"{self.decision} by {self.reviewer_id}"
