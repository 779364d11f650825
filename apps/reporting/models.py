from decimal import Decimal

from django.db import models


class DailyRollup(models.Model):
    """Figures of one use case on one day, recomputed exactly from recommendations and events."""

    use_case = models.ForeignKey("workflows.UseCase", on_delete=models.CASCADE, related_name="rollups")
    day = models.DateField()
    recommendations = models.PositiveIntegerField(default=0)
    reviewed = models.PositiveIntegerField(default=0)
    approved = models.PositiveIntegerField(default=0)
    edited = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    blocked = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    shown = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    acted_on = models.PositiveIntegerField(default=0)
    model_cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    review_seconds = models.FloatField(default=0)
    cycle_seconds_total = models.FloatField(default=0, help_text="Created to delivered, summed")
    cycle_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["use_case", "day"]
        constraints = [models.UniqueConstraint(fields=["use_case", "day"], name="rollup_unique_day")]

    def __str__(self):
        return f"{self.use_case_id} on {self.day}"
