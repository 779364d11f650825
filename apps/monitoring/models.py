from django.conf import settings
from django.db import models

from apps.core import clock
from apps.core.history import GovernedHistory


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
    history = GovernedHistory(excluded_fields=["occurrences", "last_seen_at"])

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=~models.Q(status="resolved"), name="alert_one_unresolved_per_key"
            )
        ]

    def __str__(self):
        return self.title


class MonthlySpend(models.Model):
    """Model cost of one calendar month, per use case or per model endpoint (over every use case), kept
    running by the pipeline after each paid call, so a budget check reads one row instead of summing runs."""

    use_case = models.ForeignKey(
        "workflows.UseCase", on_delete=models.CASCADE, null=True, blank=True, related_name="monthly_spend"
    )
    connector = models.ForeignKey(
        "connectors.Connector", on_delete=models.CASCADE, null=True, blank=True, related_name="monthly_spend"
    )
    month = models.DateField(help_text="First day of the month")
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    soft_alerted = models.BooleanField(default=False, help_text="The soft-limit alert of this month was raised")
    hard_alerted = models.BooleanField(default=False, help_text="The hard-limit alert of this month was raised")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["use_case", "month"], condition=models.Q(use_case__isnull=False), name="spend_use_case_month"
            ),
            models.UniqueConstraint(
                fields=["connector", "month"], condition=models.Q(connector__isnull=False), name="spend_endpoint_month"
            ),
            models.CheckConstraint(
                condition=models.Q(use_case__isnull=True) ^ models.Q(connector__isnull=True), name="spend_one_scope"
            ),
        ]

    def __str__(self):
        return f"{self.use_case or self.connector} {self.month:%Y-%m}: {self.cost}"


class AlertRule(models.Model):
    """A watched signal of a use case or a model endpoint: fires when the figure over the window crosses the
    threshold, or drops by `threshold` % against the window before it. Governed: history with who."""

    class Signal(models.TextChoices):
        ERROR_RATE = "error_rate", "Error rate (%)"
        FALLBACK_RATE = "fallback_rate", "Fallback rate (%)"
        LATENCY_P95 = "latency_p95", "Latency p95 (ms)"
        COST = "cost", "Model cost"
        RUNS = "runs", "Runs"
        BACKLOG = "backlog", "Review backlog (items)"
        SLA_BREACHES = "sla_breaches", "Review SLA breaches (items)"
        ACCEPTANCE_RATE = "acceptance_rate", "Acceptance rate (% of shown)"
        FRESHNESS_BREACHES = "freshness_breaches", "Stale context (runs)"
        DELIVERY_FAILURES = "delivery_failures", "Delivery failures"

    class Condition(models.TextChoices):
        ABOVE = "above", "Above the threshold"
        BELOW = "below", "Below the threshold"
        DROP = "drop", "Down by threshold % vs the previous window"
        RISE = "rise", "Up by threshold % vs the previous window"

    class Window(models.TextChoices):
        HOUR = "1h", "1 hour"
        DAY = "24h", "24 hours"
        WEEK = "7d", "7 days"
        MONTH = "30d", "30 days"

    name = models.CharField(max_length=120)
    use_case = models.ForeignKey(
        "workflows.UseCase", on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules"
    )
    connector = models.ForeignKey(
        "connectors.Connector", on_delete=models.CASCADE, null=True, blank=True, related_name="alert_rules"
    )
    signal = models.CharField(max_length=20, choices=Signal.choices)
    condition = models.CharField(max_length=10, choices=Condition.choices, default=Condition.ABOVE)
    threshold = models.DecimalField(max_digits=14, decimal_places=4)
    window = models.CharField(max_length=4, choices=Window.choices, default=Window.DAY)
    min_samples = models.PositiveIntegerField(default=1, help_text="Rates and drops need at least this many items")
    severity = models.CharField(max_length=10, choices=Alert.Severity.choices, default=Alert.Severity.WARNING)
    notify_emails = models.CharField(max_length=500, blank=True, help_text="Comma-separated addresses")
    notify_webhook = models.ForeignKey(
        "connectors.Connector",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="A signed-webhook connector that receives firings and recoveries",
    )
    enabled = models.BooleanField(default=True)
    last_value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True, editable=False)
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=clock.now)
    history = GovernedHistory(excluded_fields=["last_value", "last_evaluated_at"])

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(use_case__isnull=True) ^ models.Q(connector__isnull=True), name="alert_rule_scope"
            )
        ]

    def __str__(self):
        return self.name

    @property
    def alert_key(self) -> str:
        return f"rule:{self.pk}"


class CostImport(models.Model):
    """A provider's usage export, compared per day and endpoint with the summed per-call estimates (Run.cost).
    Kept as imported (an immutable record: who, when, which file)."""

    file_name = models.CharField(max_length=200)
    file_sha256 = models.CharField(max_length=64)
    threshold_percent = models.DecimalField(max_digits=6, decimal_places=2, default=10)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(default=clock.now)
    rows = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-uploaded_at", "-pk"]

    def __str__(self):
        return f"{self.file_name} ({self.uploaded_at:%Y-%m-%d})"


class CostImportLine(models.Model):
    """One day × endpoint of an import: the provider's figure and Doorstep's estimate at import time."""

    cost_import = models.ForeignKey(CostImport, on_delete=models.CASCADE, related_name="lines")
    day = models.DateField()
    connector = models.ForeignKey("connectors.Connector", on_delete=models.PROTECT, related_name="+")
    provider_cost = models.DecimalField(max_digits=14, decimal_places=6)
    estimated_cost = models.DecimalField(max_digits=14, decimal_places=6)
    flagged = models.BooleanField(default=False, help_text="Differs by more than the import's threshold")

    class Meta:
        ordering = ["day", "connector_id"]
        constraints = [
            models.UniqueConstraint(fields=["cost_import", "day", "connector"], name="cost_line_once_per_day_endpoint")
        ]

    def __str__(self):
        return f"{self.day} {self.connector_id}: {self.provider_cost} vs {self.estimated_cost}"

    @property
    def difference(self):
        return self.provider_cost - self.estimated_cost

    @property
    def difference_percent(self):
        if not self.estimated_cost:
            return None
        return (self.provider_cost - self.estimated_cost) * 100 / self.estimated_cost
