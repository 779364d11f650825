"""Alerts: raised by jobs that failed, resolved when the trouble is gone; one unresolved alert per key."""

from django.db import IntegrityError, transaction
from django.db.models import F

from apps.core import clock
from apps.core.actors import Actor

from .models import Alert


def alert_raise(
    *, key: str, kind: str, title: str, detail: str = "", severity: str = Alert.Severity.WARNING, **about
) -> Alert:
    """Open an alert, or count one more occurrence of the unresolved alert with the same key.
    `about`: use_case= or connector= the alert concerns (for permissions and links)."""
    now = clock.now()
    for _ in range(2):
        updated = Alert.objects.exclude(status=Alert.Status.RESOLVED).filter(key=key)
        if updated.update(occurrences=F("occurrences") + 1, last_seen_at=now, detail=detail):
            return updated.get()
        try:
            with transaction.atomic():
                alert = Alert(key=key, kind=kind, title=title, detail=detail, severity=severity, **about)
                alert._change_reason = "Raised"
                alert.save()
                return alert
        except IntegrityError:  # raised at the same moment elsewhere: count it as an occurrence
            continue
    return Alert.objects.exclude(status=Alert.Status.RESOLVED).get(key=key)


def alert_resolve(*, key: str, actor: Actor, reason: str) -> int:
    """Resolve the unresolved alert with `key` (if any), with who and why in its history."""
    resolved = 0
    with transaction.atomic():
        for alert in Alert.objects.select_for_update().exclude(status=Alert.Status.RESOLVED).filter(key=key):
            alert.status = Alert.Status.RESOLVED
            alert.resolved_at = clock.now()
            alert._history_user = actor.history_user
            alert._change_reason = reason
            alert.save()
            resolved += 1
    return resolved
