from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.core import clock
from apps.core.history import GovernedHistory
from apps.core.models import TimeStampedModel


class Policy(TimeStampedModel):
    """Versioned rules on AI outputs; one version is active at a time."""

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    business_unit = models.CharField(max_length=80, blank=True)
    history = GovernedHistory()

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"
        permissions = [("approve_policy", "Approve versions of the policy")]

    def __str__(self):
        return self.name

    @property
    def emergency_version(self) -> "PolicyVersion | None":
        """The active version when it came by the emergency path (flag it wherever the policy shows)."""
        return self.versions.filter(state=PolicyVersion.State.ACTIVE, emergency=True).first()

    @property
    def has_emergency(self) -> bool:
        return self.emergency_version is not None


class ApprovalRequirement(models.Model):
    """M of N: a version is approved once `count` members of `group` approved it (for every requirement of
    its policy), none of them its author, each approver counted for one requirement only."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="approval_requirements")
    group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="+")
    count = models.PositiveSmallIntegerField(default=1)
    history = GovernedHistory()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["policy", "group"], name="approval_requirement_once_per_group"),
            models.CheckConstraint(condition=models.Q(count__gte=1), name="approval_requirement_count_positive"),
        ]

    def __str__(self):
        return f"{self.count} of {self.group.name}"


class PolicyUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Policy, on_delete=models.CASCADE)


class PolicyGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Policy, on_delete=models.CASCADE)


class PolicyVersion(TimeStampedModel):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        IN_REVIEW = "in_review", "In review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.DRAFT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    note = models.TextField(blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    effective_from = models.DateTimeField(
        null=True, blank=True, help_text="When an approved version becomes active (beat activates it)"
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # The emergency path: active without the full approval, flagged everywhere, and retired automatically.
    emergency = models.BooleanField(default=False)
    emergency_reason = models.TextField(blank=True)
    emergency_expires_at = models.DateTimeField(null=True, blank=True)
    history = GovernedHistory()

    class Meta:
        ordering = ["policy", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="policy_version_unique_number"),
            models.UniqueConstraint(
                fields=["policy"], condition=models.Q(state="active"), name="policy_one_active_version"
            ),
        ]

    def __str__(self):
        return f"{self.policy.name} v{self.number}"


class Rule(models.Model):
    """A CEL condition and the effect it has when true; rules are evaluated in order."""

    class Effect(models.TextChoices):
        ALLOW = "allow", "Allow"
        REDACT = "redact", "Redact"
        REVIEW = "review", "Require review"
        BLOCK = "block", "Block"

    # Strongest first: the verdict is the strongest effect among the rules that fired.
    STRENGTH = {Effect.ALLOW: 0, Effect.REDACT: 1, Effect.REVIEW: 2, Effect.BLOCK: 3}

    version = models.ForeignKey(PolicyVersion, on_delete=models.CASCADE, related_name="rules")
    order = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    condition = models.TextField(help_text="CEL over output, context, action, use_case, subject, signals")
    effect = models.CharField(max_length=10, choices=Effect.choices)
    # Parameters of the effect. Review: how many independent reviewers, in which queue (empty: the use case's).
    reviewers = models.PositiveSmallIntegerField(default=1)
    review_queue = models.ForeignKey(
        "reviews.ReviewQueue", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Redact: output fields to blank and patterns to mask in the text, besides the built-in PII findings.
    redact_fields = models.JSONField(default=list, blank=True)
    redact_patterns = models.JSONField(default=list, blank=True)
    history = GovernedHistory()

    class Meta:
        ordering = ["version", "order", "pk"]

    def __str__(self):
        return self.name


class PolicyDecision(models.Model):
    """The verdict of one policy version on one recommendation, naming the rules that fired."""

    recommendation = models.OneToOneField(
        "workflows.Recommendation", on_delete=models.PROTECT, related_name="policy_decision"
    )
    version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    effect = models.CharField(max_length=10, choices=Rule.Effect.choices)
    fired_rules = models.JSONField(default=list)
    signals = models.JSONField(default=dict)
    redactions = models.PositiveIntegerField(default=0)
    evaluated_at = models.DateTimeField(default=clock.now)
    duration_us = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"{self.effect} for recommendation {self.recommendation_id}"


class PolicyReplay(models.Model):
    """A draft version replayed on the last N days of real outputs, against the active version: what would
    flip, the projected review load and cost, per-rule hits. Approval needs a replay of the current rules."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    version = models.ForeignKey(PolicyVersion, on_delete=models.CASCADE, related_name="replays")
    baseline = models.ForeignKey(PolicyVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    rules_hash = models.CharField(max_length=64, help_text="The version's rules when replayed")
    days = models.PositiveSmallIntegerField(default=30)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=clock.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["version", "-requested_at"])]

    def __str__(self):
        return f"Replay of {self.version} over {self.days} days: {self.status}"


class Approval(models.Model):
    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField()
    at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "approver"], name="approval_one_per_approver")]

    def __str__(self):
        return f"{self.decision} of {self.version_id} by {self.approver_id}"
