from django.db import models

from apps.core import clock


class Delivery(models.Model):
    """One attempt-tracked hand-over of an approved output to one destination; never twice."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"

    recommendation = models.ForeignKey("workflows.Recommendation", on_delete=models.PROTECT, related_name="deliveries")
    destination = models.ForeignKey("connectors.Destination", on_delete=models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    external_id = models.CharField(max_length=120, blank=True)
    last_response = models.TextField(blank=True)
    last_error = models.TextField(blank=True)
    attempt_log = models.JSONField(
        default=list, blank=True, help_text="[{at, ok, status, response or error}] of the latest attempts"
    )
    created_at = models.DateTimeField(default=clock.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        default=clock.now,
        help_text="While pending: when the worker is due to try (again); the sweeper resends what is long overdue",
    )

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_status_due")]
        constraints = [
            models.UniqueConstraint(fields=["recommendation", "destination"], name="delivery_once_per_destination")
        ]

    def __str__(self):
        return f"Delivery of {self.recommendation_id} to {self.destination_id}: {self.status}"
