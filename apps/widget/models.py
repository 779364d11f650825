from django.conf import settings
from django.db import models

from apps.core import clock


class WidgetToken(models.Model):
    """One issued widget link: who issued it, for which use case and subject, and until when.

    The link carries only the signed nonce; this row is the audit record and the scope. An immutable
    append, not history-tracked: integrators may issue a link per page view of their app (PITFALLS #3)."""

    nonce = models.CharField(max_length=32, unique=True)
    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.PROTECT, related_name="+")
    subject_key = models.CharField(max_length=120)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Whose run_usecase permission the link exercises; revoking it disables the link",
    )
    issued_by_api_key = models.ForeignKey(
        "permissions.ApiKey", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    issued_by_label = models.CharField(max_length=120)
    issued_at = models.DateTimeField(default=clock.now)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["use_case", "-issued_at"])]

    def __str__(self):
        return f"Widget link {self.pk} for {self.subject_key} ({self.use_case_id})"
