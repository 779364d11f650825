from datetime import timedelta

from apps.core import clock

from .models import Delivery


def deliveries_unsent(*, older_than: timedelta = timedelta(minutes=5)) -> list[int]:
    """Deliveries never attempted although created a while ago: their task was lost (broker down when the
    write committed, or a purged queue). Retried ones have attempts > 0 and are their task's to finish."""
    cutoff = clock.now() - older_than
    unsent = Delivery.objects.filter(status=Delivery.Status.PENDING, attempts=0, created_at__lt=cutoff)
    return list(unsent.values_list("pk", flat=True)[:1000])
