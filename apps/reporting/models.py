from decimal import Decimal

from django.conf import settings
from django.db import models

from apps.core import clock


class DailyRollup(models.Model):
    """Figures of one use case on one day, recomputed exactly from recommendations and events."""

    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.CASCADE, related_name="rollups")
    day = models.DateField()
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
        ordering = ["use_case", "day"]
        constraints = [models.UniqueConstraint(fields=["use_case", "day"], name="rollup_unique_day")]

    def __str__(self):
        return f"{self.use_case_id} on {self.day}"


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
