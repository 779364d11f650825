from celery import shared_task

from . import services


@shared_task(acks_late=True)
def review_leases_release_task():
    """Expired claims go back to their queue."""
    return services.queue_lease_release_expired()
