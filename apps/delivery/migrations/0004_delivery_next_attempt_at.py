from django.db import migrations, models

import apps.core.clock


def fill(apps, schema_editor):
    """Pending rows are due since they were created (the sweeper's old rule); finished rows are not due."""
    Delivery = apps.get_model("delivery", "Delivery")
    Delivery.objects.exclude(status="pending").update(next_attempt_at=None)
    Delivery.objects.filter(status="pending").update(next_attempt_at=models.F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("delivery", "0003_delivery_attempt_log"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="next_attempt_at",
            field=models.DateTimeField(
                blank=True,
                default=apps.core.clock.now,
                help_text="While pending: when the worker is due to try (again); the sweeper resends what is long overdue",
                null=True,
            ),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["status", "next_attempt_at"], name="delivery_status_due"),
        ),
    ]
