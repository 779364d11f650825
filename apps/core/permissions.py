"""Object-permission reads shared by every app: lists start from these querysets.

Only object-level grants count (direct foreign-key guardian tables, to the user or one of their
groups): a global `view_x` permission never widens a list (PITFALLS #2). Superusers see everything.
"""

from django.db.models import Exists, OuterRef, QuerySet
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model


def restrict(queryset: QuerySet, user, codename: str) -> QuerySet:
    """`queryset` narrowed to the objects on which `user` holds `codename` (e.g. "view_usecase")."""
    if user is None or not user.is_authenticated or not user.is_active:
        return queryset.none()
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


def has_object_permission(user, codename: str, obj) -> bool:
    return restrict(type(obj)._default_manager.filter(pk=obj.pk), user, codename).exists()
