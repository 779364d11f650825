"""Grants and API keys. Object permissions go to groups through object_permission_grant only."""

from django.contrib.auth.models import Group
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import restrict
from apps.workflows.models import UseCase

from .models import ApiKey, digest, generate_raw_key


def object_permission_grant(*, group: Group, codename: str, obj) -> None:
    """Give `group` the `codename` permission on `obj` (guardian direct foreign-key row)."""
    assign_perm(codename, group, obj)


def object_permission_revoke(*, group: Group, codename: str, obj) -> None:
    remove_perm(codename, group, obj)


@transaction.atomic
def api_key_create(
    *, actor: Actor, user, name: str, scopes: list[str] | None = None, use_cases=(), expires_at=None
) -> tuple[ApiKey, str]:
    """A new key for `user`; the raw key is returned once and only its SHA-256 digest is stored.
    A user creates their own keys; an admin may create keys for anyone. `use_cases` limits the key to those
    use cases (each one `user` may see); none means every use case the user may see."""
    if actor.user is not None and actor.user != user and not actor.user.is_superuser:
        raise PermissionDenied("Only an admin can create keys for another user.")
    name = (name or "").strip()
    if not name:
        raise ServiceError("A name is required.", field="name")
    unknown = set(scopes or []) - set(ApiKey.Scope.values)
    if unknown:
        raise ServiceError(f"Unknown scope(s): {', '.join(sorted(unknown))}.", field="scopes")
    if ApiKey.objects.filter(user=user, name=name).exists():
        raise ServiceError(f"{user} already has a key named {name!r}.", field="name")
    if expires_at is not None and expires_at <= clock.now():
        raise ServiceError("The expiry must be in the future.", field="expires_at")
    use_cases = list(use_cases)
    visible = set(restrict(UseCase.objects.filter(pk__in=[u.pk for u in use_cases]), user, "view_usecase"))
    hidden = [use_case.name for use_case in use_cases if use_case not in visible]
    if hidden:
        raise ServiceError(f"{user} may not see the use case(s): {', '.join(sorted(hidden))}.", field="use_cases")
    raw = generate_raw_key()
    key = ApiKey(
        user=user, name=name, prefix=raw[:10], key_digest=digest(raw), scopes=scopes or [], expires_at=expires_at
    )
    key._history_user = actor.history_user
    key.save()
    if use_cases:
        key.use_cases.set(use_cases)
    return key, raw


@transaction.atomic
def api_key_revoke(*, actor: Actor, key: ApiKey) -> ApiKey:
    if actor.user != key.user and not actor.user.is_superuser:
        raise PermissionDenied()
    key.revoked_at = key.revoked_at or clock.now()
    key._history_user = actor.history_user
    key.save()
    return key
