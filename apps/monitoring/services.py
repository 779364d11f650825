"""Alerts: raised by jobs that failed, resolved when the trouble is gone; one unresolved alert per key."""

from django.db import IntegrityError, transaction
from django.db.models import F

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied
from apps.core.permissions import has_object_permission

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


def alert_may_act(user, alert: Alert) -> bool:
    """Who may acknowledge or resolve an alert: whoever may change what it is about (the connector or the use
    case); an alert about neither is an admin's."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    if alert.connector_id and has_object_permission(user, "change_connector", alert.connector):
        return True
    return bool(alert.use_case_id and has_object_permission(user, "change_usecase", alert.use_case))


def alert_acknowledge(*, actor: Actor, alert: Alert) -> Alert:
    """Someone is on it: an open alert becomes acknowledged (who and when in its history); an acknowledged or
    resolved one is left as it is. Needs alert_may_act."""
    if not alert_may_act(actor.user, alert):
        raise PermissionDenied("You may not acknowledge this alert.")
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status != Alert.Status.OPEN:
            return alert
        alert.status = Alert.Status.ACKNOWLEDGED
        alert.acknowledged_by = actor.user
        alert._history_user = actor.history_user
        alert._change_reason = "Acknowledged"
        alert.save()
    return alert


def alert_close(*, actor: Actor, alert: Alert, reason: str = "Resolved by hand") -> Alert:
    """Resolve an alert from the alerts page (alert_resolve, with a permission check). Needs alert_may_act.
    If the trouble comes back, the job that saw it raises a new alert."""
    if not alert_may_act(actor.user, alert):
        raise PermissionDenied("You may not resolve this alert.")
    alert_resolve(key=alert.key, actor=actor, reason=reason)
    alert.refresh_from_db()
    return alert
