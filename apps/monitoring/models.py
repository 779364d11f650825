from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from apps.core import clock


class Alert(models.Model):
    """Something an operator must look at (a failed sync, a delivery given up, a budget reached).

    One open alert per `key`: the same trouble seen again counts an occurrence instead of a new alert."""

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    key = models.CharField(max_length=200, help_text="What the alert is about, e.g. dataset-sync:12")
    kind = models.CharField(max_length=40, help_text="dataset_sync, delivery, budget, …")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN)
    use_case = models.ForeignKey(
        "workflows.UseCase", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    connector = models.ForeignKey(
        "connectors.Connector", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    occurrences = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField(default=clock.now, db_index=True)
    last_seen_at = models.DateTimeField(default=clock.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    history = HistoricalRecords(excluded_fields=["occurrences", "last_seen_at"])

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=~models.Q(status="resolved"), name="alert_one_unresolved_per_key"
            )
        ]

    def __str__(self):
        return self.title
