"""Every object permission granted or revoked is an access event (who, on what, to whom), whichever code path
made it: the connector access page, the demo loader, a use case being proposed, the admin."""

from django.apps import apps
from django.db.models.signals import post_delete, post_save
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords


def _current_user():
    """The user of the request being served, when there is one (simple-history's middleware keeps it)."""
    request = getattr(HistoricalRecords.context, "request", None)
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def _record(row, kind: str) -> None:
    from apps.accounts.models import AccessEvent

    holder = f"group {row.group}" if hasattr(row, "group_id") else f"user {row.user}"
    target = row._meta.get_field("content_object").related_model._meta.verbose_name
    detail = f"{row.permission.codename} on {target} #{row.content_object_id} to {holder}"
    user = _current_user()
    AccessEvent.objects.create(
        kind=kind, user=user, username=user.get_username() if user else "system", detail=detail[:255]
    )


def _granted(sender, instance, created, **kwargs):
    if created:
        _record(instance, "grant")


def _revoked(sender, instance, **kwargs):
    _record(instance, "revoke")


def connect() -> None:
    for model in apps.get_models():
        if issubclass(model, GroupObjectPermissionBase | UserObjectPermissionBase):
            post_save.connect(_granted, sender=model, dispatch_uid=f"grant-{model._meta.label}")
            post_delete.connect(_revoked, sender=model, dispatch_uid=f"revoke-{model._meta.label}")
