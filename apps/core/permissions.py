"""Object-permission reads shared by every app: lists start from these querysets.

Only object-level grants count (direct foreign-key guardian tables, to the user or one of their
groups): a global `view_x` permission never widens a list (PITFALLS #2). Superusers see everything.

A request made with an API key limited to some use cases (apps.permissions.authentication) narrows both
further, for superusers too: use cases outside the key's list do not exist for that request.
"""

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

SCOPED_BY_KEY = "workflows.UseCase"


def key_use_cases(user) -> frozenset[int] | None:
    """The use cases the request's API key is limited to; None when it is not (or there is no key)."""
    return getattr(user, "api_key_use_cases", None)


def restrict(queryset: QuerySet, user, codename: str) -> QuerySet:
    """`queryset` narrowed to the objects on which `user` holds `codename` (e.g. "view_usecase")."""
    if user is None or not user.is_authenticated or not user.is_active:
        return queryset.none()
    limited_to = key_use_cases(user)
    if limited_to is not None and queryset.model._meta.label == SCOPED_BY_KEY:
        queryset = queryset.filter(pk__in=limited_to)
    if user.is_superuser:
        return queryset
    model = queryset.model
    user_grants = get_user_obj_perms_model(model).objects.filter(
        content_object=OuterRef("pk"), user=user, permission__codename=codename
    )
    group_grants = get_group_obj_perms_model(model).objects.filter(
        content_object=OuterRef("pk"), group__user=user, permission__codename=codename
    )
    return queryset.filter(Exists(user_grants) | Exists(group_grants))


def granted_ids(model, user, codename: str) -> list[int] | None:
    """Ids of the `model` objects on which `user` holds `codename`, read from the grant tables alone (as many
    rows as grants, however many objects exist); None means every object (a superuser's, unless a key limits
    the use cases)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return []
    limited_to = key_use_cases(user) if model._meta.label == SCOPED_BY_KEY else None
    if user.is_superuser:
        return None if limited_to is None else sorted(limited_to)
    by_user = get_user_obj_perms_model(model).objects.filter(user=user, permission__codename=codename)
    by_group = get_group_obj_perms_model(model).objects.filter(group__user=user, permission__codename=codename)
    ids = set(by_user.values_list("content_object_id", flat=True)) | set(
        by_group.values_list("content_object_id", flat=True)
    )
    return sorted(ids if limited_to is None else ids & limited_to)


def has_object_permission(user, codename: str, obj) -> bool:
    """Whether `user` holds `codename` on `obj` (same rule as `restrict`). Plain SQL on purpose: it runs on
    every write and on the ingestion hot path, where building the ORM subqueries cost more than the query."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    model = type(obj)
    limited_to = key_use_cases(user)
    if limited_to is not None and model._meta.label == SCOPED_BY_KEY and obj.pk not in limited_to:
        return False
    if user.is_superuser:
        return True
    user_table = get_user_obj_perms_model(model)._meta.db_table
    group_table = get_group_obj_perms_model(model)._meta.db_table
    membership_table = get_user_model().groups.through._meta.db_table
    sql = (
        f"SELECT 1 FROM {group_table} g JOIN {membership_table} m ON m.group_id = g.group_id "
        "JOIN auth_permission p ON p.id = g.permission_id "
        "WHERE g.content_object_id = %s AND m.user_id = %s AND p.codename = %s "
        f"UNION ALL SELECT 1 FROM {user_table} u JOIN auth_permission p ON p.id = u.permission_id "
        "WHERE u.content_object_id = %s AND u.user_id = %s AND p.codename = %s LIMIT 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [obj.pk, user.pk, codename, obj.pk, user.pk, codename])
        return cursor.fetchone() is not None
