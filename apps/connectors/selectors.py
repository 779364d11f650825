from django.db.models import QuerySet

from apps.core.permissions import restrict
from apps.permissions.models import ApiKey

from .models import Connector


def connector_list(*, user) -> QuerySet[Connector]:
    """Connectors on which `user` holds view_connector (object grants only; superusers see all)."""
    return restrict(Connector.objects.all(), user, "view_connector").order_by("name")


def connector_get(*, user, pk: int) -> Connector:
    """One visible connector; raises Connector.DoesNotExist otherwise."""
    return connector_list(user=user).get(pk=pk)


def api_key_list(*, user) -> QuerySet[ApiKey]:
    """The user's own API keys, newest first (an admin manages others' keys in the admin)."""
    return ApiKey.objects.filter(user=user).order_by("-created_at", "-pk")
