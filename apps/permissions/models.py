import hashlib
import secrets

from django.conf import settings
from django.db import models

from apps.core import clock
from apps.core.history import GovernedHistory

KEY_PREFIX = "dsk_"


def digest(raw_key: str) -> str:
    """SHA-256 of a high-entropy key: cheap per request, useless to an attacker (PITFALLS #8)."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def generate_raw_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKey(models.Model):
    class Scope(models.TextChoices):
        RECOMMENDATIONS_WRITE = "recommendations:write", "Submit recommendations"
        RUNS_WRITE = "runs:write", "Trigger runs"
        FEEDBACK_WRITE = "feedback:write", "Send feedback events"
        USE_CASES_WRITE = "use_cases:write", "Move use cases through their lifecycle"
        APPROVALS_WRITE = "approvals:write", "Request blocking approvals (and poll them)"
        READ = "read", "Read"

    name = models.CharField(max_length=100)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=12, help_text="First characters of the key, to recognise it in lists")
    key_digest = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list, blank=True, help_text="Empty means every scope the user holds")
    use_cases = models.ManyToManyField(
        "workflows.UseCase", blank=True, related_name="+", help_text="Empty means every use case the user may see"
    )
    created_at = models.DateTimeField(default=clock.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    history = GovernedHistory(excluded_fields=["last_used_at"], m2m_fields=["use_cases"])

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="api_key_unique_name_per_user")]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self) -> bool:
        now = clock.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def allows(self, scope: str) -> bool:
        return not self.scopes or scope in self.scopes
