from decimal import Decimal

from django.conf import settings
from django.db import models

from apps.core import clock


class RollupFigures(models.Model):
    """The figures a rollup row holds for one use case over one period, recomputed exactly from the facts."""

    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.CASCADE, related_name="+")
    recommendations = models.PositiveIntegerField(default=0)
    reviewed = models.PositiveIntegerField(default=0)
    approved = models.PositiveIntegerField(default=0)
    edited = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    blocked = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    shown = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    acted_on = models.PositiveIntegerField(default=0)
    model_cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    review_seconds = models.FloatField(default=0)
    cycle_seconds_total = models.FloatField(default=0, help_text="Created to delivered, summed")
    cycle_count = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True


class DailyRollup(RollupFigures):
    """Figures of one use case on one day (in TIME_ZONE)."""

    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.CASCADE, related_name="rollups")
    day = models.DateField()

    class Meta:
        ordering = ["use_case", "day"]
        constraints = [models.UniqueConstraint(fields=["use_case", "day"], name="rollup_unique_day")]

    def __str__(self):
        return f"{self.use_case_id} on {self.day}"


class HourlyRollup(RollupFigures):
    """Figures of one use case in one hour. Distinct counts (a recommendation shown twice counts once) are
    per hour here and per day in DailyRollup, so a day is not the sum of its hours: both are kept."""

    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.CASCADE, related_name="hourly_rollups")
    hour = models.DateTimeField(help_text="Start of the hour")

    class Meta:
        ordering = ["use_case", "hour"]
        constraints = [models.UniqueConstraint(fields=["use_case", "hour"], name="rollup_unique_hour")]

    def __str__(self):
        return f"{self.use_case_id} at {self.hour:%Y-%m-%d %H:00}"


class RejectionRollup(models.Model):
    """How many times one reason was given for rejecting a use case's recommendations on one day: by a
    reviewer (the verdict's reason code) or by the business user (the feedback event's `reason`)."""

    class Source(models.TextChoices):
        REVIEW = "review", "Reviewer"
        FEEDBACK = "feedback", "Business user"

    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.CASCADE, related_name="rejection_rollups")
    day = models.DateField()
    source = models.CharField(max_length=10, choices=Source.choices)
    reason = models.CharField(max_length=80)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["use_case", "day", "source", "reason"], name="rejection_rollup_unique")
        ]

    def __str__(self):
        return f"{self.reason} ×{self.count} on {self.day}"


class LiftSubjectDay(models.Model):
    """One subject's first trigger of one day in one group of a use case's control-group comparison
    (reporting.lift), with what followed it: the hours to the first outcome at or after it (any kind) and
    whether a positive outcome (lift.DEFAULT_POSITIVE_KINDS) came at or after it, however much later.

    The three day pointers make the lift of a date range a sum over rows with conditions on the row alone:
    a subject counts from its first row in the range (no `previous_day` inside it) and not at all when it was
    triggered in the other group inside the range too (`other_before`/`other_after` inside it)."""

    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.CASCADE, related_name="+")
    subject_key = models.CharField(max_length=120)
    day = models.DateField()
    holdout = models.BooleanField(help_text="Control group (a held-out run), else treated (a recommendation)")
    triggered_at = models.DateTimeField(help_text="The first trigger of the day in this group")
    cycle_hours = models.FloatField(null=True, help_text="Trigger to the first outcome at or after it; none yet")
    won = models.BooleanField(default=False, help_text="A positive outcome at or after the trigger")
    previous_day = models.DateField(null=True, help_text="The subject's latest earlier trigger day in this group")
    other_before = models.DateField(null=True, help_text="Its latest trigger day up to this one in the other group")
    other_after = models.DateField(null=True, help_text="Its earliest trigger day from this one in the other group")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["use_case", "subject_key", "day", "holdout"], name="lift_subject_day")
        ]
        indexes = [models.Index(fields=["use_case", "day"])]

    def __str__(self):
        return f"{self.subject_key} on {self.day} ({'holdout' if self.holdout else 'treated'})"


class RollupWatermark(models.Model):
    """How far the incremental refresh has read one fact table (by primary key). `safe_id` trails `seen_id`
    by one run, so a row whose transaction committed after the run that saw higher ids is still read."""

    source = models.CharField(max_length=40, unique=True)
    safe_id = models.BigIntegerField(default=0)
    seen_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=clock.now)

    def __str__(self):
        return f"{self.source} through {self.seen_id}"


class BusinessOutcome(models.Model):
    """What happened to a subject in the business (ticket resolved, renewal won or lost, contract signed), with
    its time and value: an immutable append, linked to the subject, and to a recommendation when one was made.
    `holdout` says whether the subject was in the use case's control group when the outcome was recorded."""

    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.PROTECT, related_name="outcomes")
    subject_key = models.CharField(max_length=120)
    kind = models.CharField(max_length=60, help_text="e.g. ticket_resolved, renewal_won, renewal_lost")
    value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    occurred_at = models.DateTimeField()
    recommendation = models.ForeignKey(
        "workflows.Recommendation", on_delete=models.PROTECT, null=True, blank=True, related_name="outcomes"
    )
    holdout = models.BooleanField(default=False)
    external_id = models.CharField(max_length=120, help_text="The caller's event id (idempotency)")
    created_at = models.DateTimeField(default=clock.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["use_case", "external_id"], name="outcome_unique_event_id"),
        ]
        indexes = [
            models.Index(fields=["use_case", "occurred_at"]),
            models.Index(fields=["use_case", "subject_key"]),
        ]

    def __str__(self):
        return f"{self.kind} for {self.subject_key}"
