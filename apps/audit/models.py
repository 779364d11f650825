"""The audit ledger: seals over batches of audit rows, chained, so a change behind the app's back is found."""

from django.db import models

from apps.core import clock


class AuditSource(models.Model):
    """How far one source table (recommendation events, a governed model's history, access events) is sealed.
    Rows are sealed one run after they are first seen (`candidate_upto`), so a transaction that took an id
    before a seal but committed after it is not left out."""

    name = models.CharField(max_length=80, primary_key=True)
    sealed_upto = models.BigIntegerField(default=0)
    candidate_upto = models.BigIntegerField(default=0)

    def __str__(self):
        return f"{self.name} sealed to {self.sealed_upto}"


class AuditSeal(models.Model):
    """One batch of rows of one source, by id range: the digest over the rows' contents, chained to the
    previous seal (`prev_hash`) and hashed (`hash`)."""

    sequence = models.PositiveBigIntegerField(unique=True)
    sealed_at = models.DateTimeField(default=clock.now)
    source = models.CharField(max_length=80)
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    rows = models.PositiveIntegerField()
    digest = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["sequence"]

    def __str__(self):
        return f"Seal {self.sequence} ({self.source} {self.first_id}–{self.last_id})"


class AuditHeadExport(models.Model):
    """A signed export of the ledger's head (kept outside the database too, as a file): a rewrite of the whole
    ledger no longer matches the heads exported before it."""

    sequence = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    exported_at = models.DateTimeField(default=clock.now)
    signature = models.TextField()
    path = models.CharField(max_length=500)

    class Meta:
        ordering = ["-exported_at"]

    def __str__(self):
        return f"Head {self.sequence} exported {self.exported_at:%Y-%m-%d}"
