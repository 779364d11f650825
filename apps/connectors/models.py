from django.conf import settings
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.core import clock
from apps.core.history import GovernedHistory
from apps.core.models import TimeStampedModel

from . import crypto


class Connector(TimeStampedModel):
    """A configured link to an outside system: a system of record, a file source, a model endpoint,
    a webhook receiver or a notification channel. `config` holds the non-secret settings of its kind."""

    class Kind(models.TextChoices):
        SQL = "sql", "SQL database (PostgreSQL, MySQL/MariaDB, SQLite)"
        SALESFORCE = "salesforce", "Salesforce"
        HUBSPOT = "hubspot", "HubSpot"
        ZENDESK = "zendesk", "Zendesk"
        REST = "rest", "Generic REST API"
        FILE = "file", "File upload (CSV / JSON Lines)"
        MODEL_OPENAI = "model_openai", "OpenAI-compatible chat endpoint"
        MODEL_HTTP = "model_http", "HTTP JSON model endpoint"
        MODEL_SKLEARN = "model_sklearn", "Local scikit-learn model"
        MODEL_RETRIEVAL = "model_retrieval", "Local retrieval model (TF-IDF)"
        WEBHOOK = "webhook", "Signed webhook"
        EMAIL = "email", "E-mail (SMTP)"
        SLACK = "slack", "Slack-style incoming webhook"

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "Not tested"
        OK = "ok", "Healthy"
        FAILING = "failing", "Failing"

    MODEL_KINDS = (Kind.MODEL_OPENAI, Kind.MODEL_HTTP, Kind.MODEL_SKLEARN, Kind.MODEL_RETRIEVAL)
    SOURCE_KINDS = (Kind.SQL, Kind.SALESFORCE, Kind.HUBSPOT, Kind.ZENDESK, Kind.REST, Kind.FILE)
    WRITE_KINDS = (Kind.SQL, Kind.SALESFORCE, Kind.HUBSPOT, Kind.ZENDESK, Kind.REST)
    NOTIFY_KINDS = (Kind.EMAIL, Kind.SLACK)

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    description = models.TextField(blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="Non-secret settings (paths, tables, prices)")
    # Encrypted JSON of credentials (URLs with passwords, signing secrets); never rendered back.
    secrets_ciphertext = models.TextField(blank=True, editable=False)
    secrets_version = models.PositiveIntegerField(default=0, editable=False)
    health = models.CharField(max_length=10, choices=Health.choices, default=Health.UNKNOWN)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    history = GovernedHistory(excluded_fields=["secrets_ciphertext", "last_success_at", "last_failure_at"])

    monthly_budget = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Model endpoints: cost per calendar month over every use case; empty: none",
    )

    class Meta:
        ordering = ["name"]
        permissions = [("use_connector", "Use the connector in use cases")]

    def __str__(self):
        return self.name

    @property
    def secrets(self) -> dict:
        return crypto.decrypt_secrets(self.secrets_ciphertext)

    def set_secrets(self, secrets: dict) -> None:
        self.secrets_ciphertext = crypto.encrypt_secrets(secrets)
        self.secrets_version += 1

    @property
    def is_model_endpoint(self) -> bool:
        return self.kind in self.MODEL_KINDS

    @property
    def is_source(self) -> bool:
        return self.kind in self.SOURCE_KINDS

    @property
    def can_write(self) -> bool:
        return self.kind in self.WRITE_KINDS


class ConnectorUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Connector, on_delete=models.CASCADE)


class ConnectorGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Connector, on_delete=models.CASCADE)


class SourceDataset(TimeStampedModel):
    """A table or object of a source connector that use cases read: its key, freshness SLA and quality
    rules (the data context contract, control 3). A cached dataset is read from its synced copy."""

    class StaleAction(models.TextChoices):
        REVIEW = "review", "Send to review"
        BLOCK = "block", "Block"

    class Mode(models.TextChoices):
        LIVE = "live", "Read live from the source"
        CACHED = "cached", "Read from the synced copy"

    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=100)
    table = models.CharField(max_length=100, help_text="Table or object, e.g. accounts, Account, companies, tickets")
    key_field = models.CharField(max_length=100, help_text="Field that holds the subject key")
    updated_at_field = models.CharField(max_length=100, blank=True, help_text="Field with the record's as-of time")
    cursor_field = models.CharField(
        max_length=100, blank=True, help_text="Field for incremental reads (defaults to the as-of field)"
    )
    freshness_sla = models.DurationField(null=True, blank=True, help_text="Records older than this are stale")
    stale_action = models.CharField(
        max_length=10,
        choices=StaleAction.choices,
        default=StaleAction.REVIEW,
        help_text="The least verdict for an output built on stale data or data that fails a quality rule",
    )
    quality_rules = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"required": [field, …], "allowed": {field: [value, …]}, "ranges": {field: {"min": x, "max": y}}}',
    )
    store_values = models.BooleanField(
        default=True, help_text="Store the values a run used in its snapshot; off: only their hash is stored"
    )
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.LIVE)
    sync_interval = models.DurationField(null=True, blank=True, help_text="How often beat refreshes a cached copy")
    sync_cursor = models.CharField(max_length=100, blank=True, editable=False)
    last_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    history = GovernedHistory(excluded_fields=["sync_cursor", "last_synced_at"])

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connector", "name"], name="dataset_unique_name")]

    def __str__(self):
        return f"{self.connector.name} / {self.name}"


class DatasetRecord(models.Model):
    """One record of a cached or uploaded dataset, as of its last sync or upload."""

    dataset = models.ForeignKey(SourceDataset, on_delete=models.CASCADE, related_name="records")
    record_id = models.CharField(max_length=200, help_text="The record's own id (the key, or the row number)")
    key = models.CharField(max_length=200, help_text="The subject key")
    data = models.JSONField()
    as_of = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "record_id"], name="dataset_record_unique")]
        indexes = [models.Index(fields=["dataset", "key"])]

    def __str__(self):
        return f"{self.dataset} #{self.record_id}"


class DatasetSync(models.Model):
    """One refresh of a cached dataset or one file upload: what was read, written, and why it failed."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    dataset = models.ForeignKey(SourceDataset, on_delete=models.CASCADE, related_name="syncs")
    trigger = models.CharField(max_length=20, help_text="schedule, manual or upload")
    started_at = models.DateTimeField(default=clock.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    rows_read = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    row_errors = models.JSONField(default=list, blank=True, help_text="[{row, field, message}] of rejected rows")
    cursor_before = models.CharField(max_length=100, blank=True)
    cursor_after = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["dataset", "-started_at"])]

    def __str__(self):
        return f"Sync of {self.dataset} at {self.started_at:%Y-%m-%d %H:%M}: {self.status}"


class Destination(TimeStampedModel):
    """Where approved outputs go: written back through a connector that can write (a SQL table, a CRM task
    or note, a ticket comment, a REST call), a signed webhook, a notification, or a BI table refreshed on
    a schedule. `config` holds the kind's mapping (columns, object, path)."""

    class Kind(models.TextChoices):
        WRITEBACK = "writeback", "Write back to the system of record"
        WEBHOOK = "webhook", "Signed webhook"
        NOTIFY = "notify", "Notification (e-mail or chat)"
        BI_TABLE = "bi_table", "BI table (refreshed on a schedule)"

    # BI tables are refreshed in bulk by beat, not one delivery per output.
    PER_OUTPUT_KINDS = (Kind.WRITEBACK, Kind.WEBHOOK, Kind.NOTIFY)

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="destinations")
    table = models.CharField(max_length=100, blank=True, help_text="Write-back or BI table (SQL)")
    config = models.JSONField(default=dict, blank=True, help_text="The kind's mapping: columns, object, path")
    refresh_cursor = models.CharField(max_length=100, blank=True, editable=False, help_text="BI: last row exported")
    last_refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    history = GovernedHistory(excluded_fields=["refresh_cursor", "last_refreshed_at"])

    def __str__(self):
        return self.name
