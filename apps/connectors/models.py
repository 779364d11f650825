from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from apps.core.models import TimeStampedModel

from . import crypto


class Connector(TimeStampedModel):
    """A configured link to an outside system: a source database, a model endpoint or a webhook receiver."""

    class Kind(models.TextChoices):
        SQL = "sql", "SQL database"
        MODEL_SKLEARN = "model_sklearn", "Local scikit-learn model"
        MODEL_RETRIEVAL = "model_retrieval", "Local retrieval model (TF-IDF)"
        WEBHOOK = "webhook", "Signed webhook"

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "Not tested"
        OK = "ok", "Healthy"
        FAILING = "failing", "Failing"

    MODEL_KINDS = (Kind.MODEL_SKLEARN, Kind.MODEL_RETRIEVAL)

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
    history = HistoricalRecords(excluded_fields=["secrets_ciphertext", "last_success_at", "last_failure_at"])

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


class ConnectorUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Connector, on_delete=models.CASCADE)


class ConnectorGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Connector, on_delete=models.CASCADE)


class SourceDataset(TimeStampedModel):
    """A table of a SQL connector that use cases read, with its key and freshness SLA."""

    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=100)
    table = models.CharField(max_length=100)
    key_field = models.CharField(max_length=100, help_text="Column that holds the subject key")
    updated_at_field = models.CharField(max_length=100, blank=True, help_text="Column with the record's as-of time")
    freshness_sla = models.DurationField(null=True, blank=True, help_text="Records older than this are stale")
    required_fields = models.JSONField(default=list, blank=True)
    history = HistoricalRecords()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connector", "name"], name="dataset_unique_name")]

    def __str__(self):
        return f"{self.connector.name} / {self.name}"


class Destination(TimeStampedModel):
    """Where approved outputs go: a write-back table in a system of record, or a signed webhook."""

    class Kind(models.TextChoices):
        SQL_WRITEBACK = "sql_writeback", "Write-back to a SQL table"
        WEBHOOK = "webhook", "Signed webhook"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    connector = models.ForeignKey(Connector, on_delete=models.PROTECT, related_name="destinations")
    table = models.CharField(max_length=100, blank=True, help_text="Write-back table (SQL)")
    config = models.JSONField(
        default=dict, blank=True, help_text="Write-back columns: subject_column, text_column, title_column"
    )
    history = HistoricalRecords()

    def __str__(self):
        return self.name
