from celery import shared_task

from . import services


@shared_task(acks_late=True, reject_on_worker_lost=True)
def policies_schedule_task() -> dict:
    """Beat: activate approved versions whose effective date has come, retire expired emergency versions.
    Both services are idempotent, so a repeated or overlapping run changes nothing twice."""
    return {
        "activated": services.policy_versions_activate_due(),
        "emergencies_expired": services.policy_emergencies_expire(),
    }


@shared_task(acks_late=True, reject_on_worker_lost=True)
def policy_replay_task(replay_id: int) -> str:
    """A redelivered replay starts over (its tallies live in memory); a finished one is left as it is."""
    from .replay import policy_replay_run

    return policy_replay_run(replay_id=replay_id).status
