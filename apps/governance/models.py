"""Starter policy packs (EU AI Act, NIST AI RMF, ...) loaded from JSON, and the checklist a use case
keeps against them. Each checklist item is mapped to one of the seven Doorstep controls."""

from django.conf import settings
from django.db import models

from apps.core.history import GovernedHistory
from apps.core.models import TimeStampedModel
from apps.workflows.controls import CONTROL_NAMES

CONTROL_CHOICES = list(CONTROL_NAMES.items())


class ControlPack(TimeStampedModel):
    """A set of obligations from one framework, loaded from apps/governance/packs/<slug>.json."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    source = models.CharField(max_length=300, help_text="The text the pack summarises, as one would cite it")
    url = models.URLField(blank=True)
    version = models.CharField(max_length=40, help_text="Version of the pack file last loaded")
    description = models.TextField(blank=True)
    history = GovernedHistory()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ControlItem(TimeStampedModel):
    """One obligation of a pack, e.g. "Art. 14 Human oversight", mapped to the control that evidences it."""

    pack = models.ForeignKey(ControlPack, on_delete=models.PROTECT, related_name="items")
    code = models.CharField(max_length=40)
    title = models.CharField(max_length=200)
    text = models.TextField()
    control = models.CharField(max_length=12, choices=CONTROL_CHOICES)
    evidence_hint = models.TextField(blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    # An item dropped from a later version of the pack file: kept, since checklists may refer to it.
    retired = models.BooleanField(default=False)
    history = GovernedHistory()

    class Meta:
        ordering = ["pack", "position", "code"]
        constraints = [models.UniqueConstraint(fields=["pack", "code"], name="control_item_unique_code")]

    def __str__(self):
        return f"{self.code} {self.title}"


class UseCaseControlItem(TimeStampedModel):
    """Where one use case stands on one pack item; every change is in history with who made it."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        MET = "met", "Met"
        NOT_APPLICABLE = "not_applicable", "Not applicable"

    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.CASCADE, related_name="control_items")
    item = models.ForeignKey(ControlItem, on_delete=models.PROTECT, related_name="use_case_items")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    note = models.TextField(blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    history = GovernedHistory()

    class Meta:
        ordering = ["use_case", "item__pack__name", "item__position"]
        constraints = [models.UniqueConstraint(fields=["use_case", "item"], name="use_case_control_item_once")]

    def __str__(self):
        return f"{self.use_case} · {self.item.code}"
