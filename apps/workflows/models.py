from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.core import clock
from apps.core.history import GovernedHistory
from apps.core.models import TimeStampedModel


class UseCase(TimeStampedModel):
    """One governed AI application, e.g. "Churn risk on CRM accounts"."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        IN_REVIEW = "in_review", "In review"
        PILOT = "pilot", "Approved for pilot"
        PRODUCTION = "production", "Production"
        PAUSED = "paused", "Paused"
        RETIRED = "retired", "Retired"

    class RiskTier(models.TextChoices):
        MINIMAL = "minimal", "Minimal"
        LIMITED = "limited", "Limited"
        HIGH = "high", "High"
        PROHIBITED = "prohibited", "Prohibited"

    RUNNABLE_STATUSES = (Status.PILOT, Status.PRODUCTION)
    # Share of allowed outputs that still go to a person, by tier (a prohibited use case is blocked outright).
    TIER_SAMPLE_RATES = {
        RiskTier.HIGH: Decimal("1"),
        RiskTier.LIMITED: Decimal("0.2"),
        RiskTier.MINIMAL: Decimal("0.02"),
        RiskTier.PROHIBITED: Decimal("1"),
    }

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    purpose = models.TextField(blank=True)
    business_unit = models.CharField(max_length=80)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_use_cases")
    risk_tier = models.CharField(max_length=12, choices=RiskTier.choices, default=RiskTier.LIMITED)
    risk_reason = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PROPOSED)
    source_dataset = models.ForeignKey(
        "connectors.SourceDataset", on_delete=models.PROTECT, null=True, blank=True, related_name="use_cases"
    )
    model_endpoint = models.ForeignKey(
        "connectors.Connector", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    fallback_endpoint = models.ForeignKey(
        "connectors.Connector", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    destinations = models.ManyToManyField("connectors.Destination", blank=True, related_name="use_cases")
    policy = models.ForeignKey(
        "policies.Policy", on_delete=models.PROTECT, null=True, blank=True, related_name="use_cases"
    )
    review_queue = models.ForeignKey(
        "reviews.ReviewQueue", on_delete=models.PROTECT, null=True, blank=True, related_name="use_cases"
    )
    embed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text="Origins that may embed this use case's widget (CSP frame-ancestors), e.g. https://crm.example.com",
    )
    review_sample_rate = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Share (0–1) of allowed outputs still sent to review; empty means the risk tier's default",
    )

    class SlaBreachAction(models.TextChoices):
        ESCALATE = "escalate", "Escalate only"
        REJECT = "reject", "Reject the output"
        DELIVER_UNREVIEWED = "deliver_unreviewed", "Deliver, flagged as not reviewed"

    holdout_share = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("0.5"))],
        help_text="Share (0–0.5) of subjects that never get a recommendation: the control group for ROI",
    )

    class BudgetAction(models.TextChoices):
        FALLBACK = "fallback", "Switch to the fallback model"
        REVIEW = "review", "Send every output to review"
        PAUSE = "pause", "Pause: no more model calls"

    monthly_budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Model cost per calendar month; empty: none"
    )
    budget_soft_share = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.8"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Share of the budget at which an alert is raised",
    )
    budget_hard_action = models.CharField(
        max_length=10,
        choices=BudgetAction.choices,
        default=BudgetAction.PAUSE,
        help_text="What the pipeline does once the month's cost reaches the budget",
    )
    sla_breach_action = models.CharField(
        max_length=20,
        choices=SlaBreachAction.choices,
        default=SlaBreachAction.ESCALATE,
        help_text="What happens to an item still undecided when its review SLA is breached (after escalating)",
    )
    model_timeout_seconds = models.FloatField(default=5.0)
    model_max_attempts = models.PositiveSmallIntegerField(default=3)
    # ROI baseline: what the work cost before the AI.
    manual_minutes_per_item = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("10"))
    hourly_cost = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("60"))
    value_per_accepted = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
    history = GovernedHistory()

    class Meta:
        ordering = ["name"]
        permissions = [("run_usecase", "Trigger runs and submit outputs for the use case")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(review_sample_rate__isnull=True)
                | models.Q(review_sample_rate__gte=0, review_sample_rate__lte=1),
                name="use_case_review_sample_rate_share",
            )
        ]

    def __str__(self):
        return self.name

    @property
    def effective_review_sample_rate(self) -> Decimal:
        if self.review_sample_rate is not None:
            return self.review_sample_rate
        return self.TIER_SAMPLE_RATES[self.risk_tier]


class UseCaseUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(UseCase, on_delete=models.CASCADE)


class UseCaseGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(UseCase, on_delete=models.CASCADE)


class Run(models.Model):
    """One execution of a use case's pipeline for one subject."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        HELD_OUT = "held_out", "Held out (control group: no recommendation)"

    class Trigger(models.TextChoices):
        API = "api", "API call"
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"

    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="runs")
    subject_key = models.CharField(max_length=120)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=clock.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    step_timings = models.JSONField(default=dict, blank=True, help_text="Milliseconds per pipeline step")
    model_endpoint = models.ForeignKey(
        "connectors.Connector", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    used_fallback = models.BooleanField(default=False)
    model_attempts = models.PositiveSmallIntegerField(default=0)
    model_latency_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    model_output = models.JSONField(
        null=True, blank=True, help_text="The model's answer, stored once so a retried run does not call it again"
    )
    error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["use_case", "-created_at"])]

    def __str__(self):
        return f"Run {self.pk} of {self.use_case} for {self.subject_key}"


class ContextSnapshot(models.Model):
    """The exact records a run used, with where they came from and how fresh they were."""

    class Freshness(models.TextChoices):
        FRESH = "fresh", "Fresh"
        STALE = "stale", "Stale"
        UNKNOWN = "unknown", "No SLA"

    class Quality(models.TextChoices):
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        UNCHECKED = "unchecked", "No rules"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="context_snapshots")
    dataset = models.ForeignKey("connectors.SourceDataset", on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=200, help_text="Connector and table, as they were named at read time")
    record_ids = models.JSONField(default=list)
    records = models.JSONField(default=list)
    content_hash = models.CharField(max_length=64)
    data_as_of = models.DateTimeField(null=True, blank=True)
    freshness = models.CharField(max_length=10, choices=Freshness.choices)
    freshness_sla = models.DurationField(null=True, blank=True, help_text="The dataset's SLA at read time")
    quality = models.CharField(max_length=10, choices=Quality.choices, default=Quality.UNCHECKED)
    quality_errors = models.JSONField(default=list, blank=True, help_text="[{record, field, message}]")
    values_hashed = models.BooleanField(default=False, help_text="Only the hash of the values was stored")
    fetched_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "dataset"], name="snapshot_once_per_run_dataset")]

    def __str__(self):
        return f"{self.source} for run {self.run_id}"


class Recommendation(models.Model):
    """The AI output being governed, from our own run or from a model elsewhere (bring your own model)."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = "queued_for_review", "Queued for review"
        APPROVED = "approved", "Approved"
        EDITED = "edited", "Edited and approved"
        REJECTED = "rejected", "Rejected"
        BLOCKED = "blocked", "Blocked"
        DELIVERING = "delivering", "Delivering"
        DELIVERED = "delivered", "Delivered"
        DELIVERY_FAILED = "delivery_failed", "Delivery failed"

    use_case = models.ForeignKey(UseCase, on_delete=models.PROTECT, related_name="recommendations")
    run = models.OneToOneField(Run, on_delete=models.PROTECT, null=True, blank=True, related_name="recommendation")
    subject_key = models.CharField(max_length=120)
    producer = models.CharField(max_length=100, default="doorstep", help_text="Who produced the output")
    content = models.JSONField(help_text="The output as produced (text, score, fields)")
    final_content = models.JSONField(null=True, blank=True, help_text="What was delivered (after redaction/edit)")
    confidence = models.FloatField(null=True, blank=True)
    proposed_action = models.JSONField(default=dict, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    policy_version = models.ForeignKey(
        "policies.PolicyVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=clock.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["use_case", "-created_at"]),
            models.Index(fields=["use_case", "subject_key"]),
            models.Index(fields=["use_case", "decided_at"]),  # the BI table's incremental export
        ]

    def __str__(self):
        return f"Recommendation {self.pk} ({self.use_case.slug}, {self.subject_key})"

    @property
    def text(self) -> str:
        content = self.final_content or self.content
        return str(content.get("text", "")) if isinstance(content, dict) else str(content)


class RecommendationEvent(models.Model):
    """An immutable lifecycle fact, hash-chained per recommendation so a rewrite is detectable."""

    class Type(models.TextChoices):
        RECEIVED = "received", "Received"
        CONTEXT = "context_gathered", "Context gathered"
        MODEL_CALLED = "model_called", "Model called"
        EVALUATED = "evaluated", "Policy evaluated"
        QUEUED = "queued", "Queued for review"
        CLAIMED = "claimed", "Claimed"
        APPROVED = "approved", "Approved"
        EDITED = "edited", "Edited and approved"
        REJECTED = "rejected", "Rejected"
        BLOCKED = "blocked", "Blocked"
        DELIVERED = "delivered", "Delivered"
        DELIVERY_FAILED = "delivery_failed", "Delivery failed"
        DELIVERY_RETRIED = "delivery_retried", "Delivery retried"
        SHOWN = "shown", "Shown"
        ACCEPTED = "accepted", "Accepted"
        FEEDBACK_EDITED = "feedback_edited", "Edited by user"
        FEEDBACK_REJECTED = "feedback_rejected", "Rejected by user"
        ACTED_ON = "acted_on", "Acted on"
        OPENED = "opened", "Opened"
        IGNORED = "ignored", "Ignored (no action in time)"
        ESCALATED = "escalated", "Escalated"
        CLAIM_TAKEN_OVER = "claim_taken_over", "Claim taken over"
        REVIEW_RECORDED = "review_recorded", "Review recorded (consensus)"

    recommendation = models.ForeignKey(Recommendation, on_delete=models.PROTECT, related_name="events")
    sequence = models.PositiveIntegerField()
    type = models.CharField(max_length=20, choices=Type.choices)
    at = models.DateTimeField(default=clock.now)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    actor_api_key = models.ForeignKey("permissions.ApiKey", on_delete=models.PROTECT, null=True, blank=True)
    actor_label = models.CharField(max_length=120, help_text="Who acted, readable: a username, key or task")
    payload = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(max_length=120, null=True, blank=True, unique=True, help_text="Caller's event id")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["recommendation_id", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["recommendation", "sequence"], name="event_unique_sequence"),
        ]
        indexes = [
            models.Index(fields=["type", "at"]),
            # The audit trail reads events newest first across outputs.
            models.Index(fields=["at", "id"], name="event_recent"),
        ]

    def __str__(self):
        return f"{self.get_type_display()} by {self.actor_label}"


FEEDBACK_EVENT_TYPES = (
    RecommendationEvent.Type.SHOWN,
    RecommendationEvent.Type.ACCEPTED,
    RecommendationEvent.Type.FEEDBACK_EDITED,
    RecommendationEvent.Type.FEEDBACK_REJECTED,
    RecommendationEvent.Type.ACTED_ON,
)
