"""Connector reads: lists narrowed to what the user may see, grants, history with field-level changes, and the
live browse of a source's tables and fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.models import Group
from django.db.models import Count, Q, QuerySet

from apps.core.exceptions import PermissionDenied
from apps.core.permissions import has_object_permission, restrict
from apps.permissions.models import ApiKey

from .clients.base import FieldInfo
from .clients.registry import client_for
from .models import (
    Connector,
    ConnectorGroupObjectPermission,
    ConnectorUserObjectPermission,
    DatasetSync,
    Destination,
    SourceDataset,
)
from .services import ACCESS_CODENAMES, connector_may_test, stored_secrets

HISTORY_LIMIT = 50
# Bookkeeping fields a reader of the history does not need to see change.
HISTORY_SKIP = {"updated_at", "created_at", "secrets_ciphertext", "sync_cursor", "last_synced_at"}


def connector_list(*, user, kind: str | None = None) -> QuerySet[Connector]:
    """Connectors on which `user` holds view_connector (object grants only; superusers see all), each with
    its count of unresolved alerts."""
    connectors = restrict(Connector.objects.all(), user, "view_connector")
    if kind:
        connectors = connectors.filter(kind=kind)
    return connectors.annotate(open_alerts=Count("alerts", filter=~Q(alerts__status="resolved"))).order_by("name")


def connector_get(*, user, pk: int) -> Connector:
    """One visible connector; raises Connector.DoesNotExist otherwise."""
    return restrict(Connector.objects.all(), user, "view_connector").get(pk=pk)


def connector_secrets_set(*, connector: Connector) -> set[str]:
    """Names of the credentials that are set (never their values)."""
    return {name for name, value in stored_secrets(connector).items() if value}


def api_key_list(*, user) -> QuerySet[ApiKey]:
    """The user's own API keys, newest first (an admin manages others' keys in the admin)."""
    return ApiKey.objects.filter(user=user).prefetch_related("use_cases").order_by("-created_at", "-pk")


@dataclass
class Access:
    """Who holds what on a connector: {group or user: [codenames]}."""

    groups: list[tuple[Group, list[str]]] = field(default_factory=list)
    users: list[tuple[object, list[str]]] = field(default_factory=list)


def connector_access(*, connector: Connector) -> Access:
    order = {codename: i for i, codename in enumerate(ACCESS_CODENAMES)}
    groups: dict = {}
    for row in ConnectorGroupObjectPermission.objects.filter(content_object=connector).select_related(
        "group", "permission"
    ):
        groups.setdefault(row.group, []).append(row.permission.codename)
    users: dict = {}
    for row in ConnectorUserObjectPermission.objects.filter(content_object=connector).select_related(
        "user", "permission"
    ):
        users.setdefault(row.user, []).append(row.permission.codename)

    def ordered(mapping):
        return [(who, sorted(codes, key=lambda c: order.get(c, 99))) for who, codes in mapping.items()]

    return Access(
        groups=sorted(ordered(groups), key=lambda item: item[0].name),
        users=sorted(ordered(users), key=lambda item: item[0].get_username()),
    )


@dataclass
class HistoryEntry:
    at: object
    who: str
    action: str
    reason: str
    changes: list[tuple[str, str, str]]  # (what, before, after)


def _short(value, limit: int = 120) -> str:
    text = "—" if value in (None, "", {}, []) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _changes(new, old) -> list[tuple[str, str, str]]:
    if old is None:
        return []
    rows = []
    # diff_against compares editable fields only; the credentials version is not editable, so it is read here.
    if getattr(new, "secrets_version", None) != getattr(old, "secrets_version", None):
        rows.append(("credentials", "", f"credentials changed (version {new.secrets_version})"))
    for change in new.diff_against(old, excluded_fields=[f for f in HISTORY_SKIP if hasattr(new, f)]).changes:
        if change.field == "config" and isinstance(change.old, dict) and isinstance(change.new, dict):
            for key in sorted({*change.old, *change.new}):
                if change.old.get(key) != change.new.get(key):
                    rows.append((f"setting {key}", _short(change.old.get(key)), _short(change.new.get(key))))
        else:
            rows.append((change.field.replace("_", " "), _short(change.old), _short(change.new)))
    return rows


def history_entries(obj, *, limit: int = HISTORY_LIMIT) -> list[HistoryEntry]:
    """The object's history, newest first: who, when, why and what changed field by field. Credentials show
    only as a new version, never a value."""
    records = list(obj.history.select_related("history_user").order_by("-history_date", "-history_id")[: limit + 1])
    entries = []
    for i, record in enumerate(records[:limit]):
        previous = records[i + 1] if i + 1 < len(records) else None
        user = record.history_user
        entries.append(
            HistoryEntry(
                at=record.history_date,
                who=(user.get_full_name() or user.get_username()) if user else "system",
                action={"+": "created", "~": "changed", "-": "deleted"}[record.history_type],
                reason=record.history_change_reason or "",
                changes=_changes(record, previous) if record.history_type == "~" else [],
            )
        )
    return entries


def connector_datasets(*, connector: Connector) -> QuerySet[SourceDataset]:
    return connector.datasets.order_by("name")


def connector_destinations(*, connector: Connector) -> QuerySet[Destination]:
    return connector.destinations.order_by("name")


def dataset_get(*, user, connector_pk: int, pk: int) -> SourceDataset:
    """A dataset of a connector the user may see; raises SourceDataset.DoesNotExist otherwise."""
    connector = connector_get(user=user, pk=connector_pk)
    return SourceDataset.objects.select_related("connector").get(connector=connector, pk=pk)


def dataset_syncs(*, dataset: SourceDataset, limit: int = 10) -> list[DatasetSync]:
    return list(dataset.syncs.select_related("started_by").order_by("-started_at", "-pk")[:limit])


def destination_get(*, user, connector_pk: int, pk: int) -> Destination:
    connector = connector_get(user=user, pk=connector_pk)
    return Destination.objects.select_related("connector").get(connector=connector, pk=pk)


def groups_for_grants() -> QuerySet[Group]:
    return Group.objects.order_by("name")


def _browse_allowed(user, connector: Connector) -> None:
    # Browsing calls the source with the stored credentials: the same right as a connection test.
    if not connector_may_test(user, connector):
        raise PermissionDenied("You may not browse this connector.")


def connector_objects(*, user, connector: Connector) -> list[str]:
    """Tables or objects of a source, read live. Needs use_connector or change_connector; raises
    ConnectorError (and whatever the client raises) for the view to show."""
    _browse_allowed(user, connector)
    return list(client_for(connector).list_objects())


def connector_fields(*, user, connector: Connector, obj: str) -> list[FieldInfo]:
    """Fields of one table or object of a source, read live. Same permission as connector_objects."""
    _browse_allowed(user, connector)
    return list(client_for(connector).list_fields(obj))


def connector_can(user, connector: Connector) -> dict[str, bool]:
    """What the user may do on the connector's pages."""
    change = has_object_permission(user, "change_connector", connector)
    return {"change": change, "test": change or has_object_permission(user, "use_connector", connector)}
