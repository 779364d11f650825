from django.db import models

from . import clock


class TimeStampedModel(models.Model):
    """Creation and update times read from the service clock (simulated in the demo history)."""

    created_at = models.DateTimeField(default=clock.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(default=clock.now, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            self.updated_at = clock.now()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "updated_at"}
        super().save(*args, **kwargs)


class IdempotencyRecord(models.Model):
    """The first response to an API request sent with an Idempotency-Key, replayed on repeats."""

    scope = models.CharField(max_length=100)
    owner = models.CharField(max_length=100, help_text="user:<id> or key:<id>: keys are per caller")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(default=clock.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "owner", "key"], name="idempotency_unique_key")]

    def __str__(self):
        return f"{self.scope} {self.key}"
