"""The unified audit trail: history rows of governed objects merged with recommendation events,
newest first, in keyset pages (no COUNT, PITFALLS #4). Each source is filtered to what the user may see."""

import datetime as dt
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db.models import Case, Model, OuterRef, Q, QuerySet, Subquery, When
from django.utils.dateparse import parse_datetime

from apps.accounts.models import AccessEvent
from apps.connectors.models import Connector, Destination, SourceDataset
from apps.core.permissions import granted_ids
from apps.governance.models import ControlItem, UseCaseControlItem
from apps.monitoring.models import Alert
from apps.permissions.models import ApiKey
from apps.policies.models import ApprovalRequirement, Policy, PolicyVersion, Rule
from apps.reviews.models import ApprovalRequest, ReviewQueue
from apps.workflows.models import RecommendationEvent, UseCase
from apps.workflows.selectors import recommendation_list

PAGE_SIZE = 50
EVENTS = "event"
# Values never shown in a diff, even to an admin: they are credentials or derived from them.
HIDDEN_FIELDS = {"key_digest", "secrets_ciphertext", "callback_secret_ciphertext"}

# The governed models in a fixed order: the order breaks ties between rows with the same time.
GOVERNED: dict[str, type[Model]] = {
    "usecase": UseCase,
    "policy": Policy,
    "policyversion": PolicyVersion,
    "rule": Rule,
    "reviewqueue": ReviewQueue,
    "connector": Connector,
    "sourcedataset": SourceDataset,
    "destination": Destination,
    "apikey": ApiKey,
    "approvalrequirement": ApprovalRequirement,
    "usecasecontrolitem": UseCaseControlItem,
    "alert": Alert,
    "approvalrequest": ApprovalRequest,
}
ACCESS = "access"
SOURCES = [*GOVERNED, EVENTS, ACCESS]
SOURCE_LABELS = {key: model._meta.verbose_name.capitalize() for key, model in GOVERNED.items()} | {
    EVENTS: "Recommendation event",
    ACCESS: "Access event",
}


@dataclass
class TrailEntry:
    source: str
    pk: int
    at: dt.datetime
    actor: str
    action: str  # "created" / "changed" / "deleted" / an event type label
    subject: str
    object_id: int | None
    changes: list[dict] = field(default_factory=list)
    reason: str = ""
    payload: list[tuple[str, str]] = field(default_factory=list)
    recommendation_id: int | None = None
    event_type: str = ""
    link: tuple = ()  # ("usecase", slug) / ("policy", pk) / ("connectors",) / ("trace", pk): the view makes a URL
    # (version, previous version) of a changed history row: diffed only once the row makes the page.
    versions: tuple | None = field(default=None, repr=False)

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS[self.source]

    @property
    def cursor(self) -> str:
        return f"{self.at.isoformat()}|{SOURCES.index(self.source)}|{self.pk}"


@dataclass(frozen=True)
class Visible:
    """Ids of the objects whose history a user may see, read once per page from the grant tables rather than
    as permission subqueries rebuilt for every source; None where every object is visible (a superuser)."""

    user_id: int
    superuser: bool
    use_cases: list[int] | None
    policies: list[int] | None
    connectors: list[int] | None
    queues: list[int] | None

    @classmethod
    def of(cls, user) -> "Visible":
        return cls(
            user.pk,
            user.is_superuser,
            use_cases=granted_ids(UseCase, user, "view_usecase"),
            policies=granted_ids(Policy, user, "view_policy"),
            connectors=granted_ids(Connector, user, "view_connector"),
            queues=granted_ids(ReviewQueue, user, "view_reviewqueue"),
        )


def _among(field: str, ids: list[int] | None) -> Q:
    return Q() if ids is None else Q(**{f"{field}__in": ids})


def _visible_history(key: str, visible: Visible) -> QuerySet:
    """History rows of one governed model the user may see: superusers all, others through object grants."""
    history = GOVERNED[key].history.model.objects.all()
    match key:
        case "usecase":
            return history.filter(_among("id", visible.use_cases))
        case "policy":
            return history.filter(_among("id", visible.policies))
        case "policyversion" | "approvalrequirement":
            return history.filter(_among("policy_id", visible.policies))
        case "rule":
            if visible.policies is None:
                return history
            versions = PolicyVersion.objects.filter(policy_id__in=visible.policies).values("pk")
            return history.filter(version_id__in=versions)
        case "reviewqueue":
            return history.filter(_among("id", visible.queues))
        case "connector":
            return history.filter(_among("id", visible.connectors))
        case "sourcedataset" | "destination":
            return history.filter(_among("connector_id", visible.connectors))
        case "apikey":
            return history if visible.superuser else history.filter(user_id=visible.user_id)
        case "usecasecontrolitem" | "approvalrequest":
            return history.filter(_among("use_case_id", visible.use_cases))
        case "alert":
            if visible.use_cases is None or visible.connectors is None:
                return history
            return history.filter(_among("use_case_id", visible.use_cases) | _among("connector_id", visible.connectors))
    return history.none()


def parse_cursor(cursor: str) -> tuple[dt.datetime, int, int] | None:
    try:
        at, source, pk = cursor.split("|")
        parsed = parse_datetime(at)
        return (parsed, int(source), int(pk)) if parsed else None
    except (ValueError, AttributeError):
        return None


def _after_cursor(time_field: str, pk_field: str, source_index: int, cursor) -> Q:
    """Rows that sort after the cursor in (time, source, pk) descending order."""
    if cursor is None:
        return Q()
    at, cursor_source, cursor_pk = cursor
    if source_index < cursor_source:
        return Q(**{f"{time_field}__lte": at})
    if source_index > cursor_source:
        return Q(**{f"{time_field}__lt": at})
    return Q(**{f"{time_field}__lt": at}) | Q(**{time_field: at, f"{pk_field}__lt": cursor_pk})


def _short(value, limit: int = 80) -> str:
    text = "—" if value in (None, "") else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _labelled(key: str, rows: QuerySet) -> QuerySet:
    """Names of related objects as subqueries: one query per page, and rows survive a deleted parent."""
    version = PolicyVersion.objects.filter(pk=OuterRef("version_id"))
    match key:
        case "policyversion":
            return rows.annotate(
                policy_name=Subquery(Policy.objects.filter(pk=OuterRef("policy_id")).values("name")[:1])
            )
        case "rule":
            return rows.annotate(
                policy_name=Subquery(version.values("policy__name")[:1]),
                policy_ref=Subquery(version.values("policy_id")[:1]),
                version_number=Subquery(version.values("number")[:1]),
            )
        case "sourcedataset":
            return rows.annotate(
                connector_name=Subquery(Connector.objects.filter(pk=OuterRef("connector_id")).values("name")[:1])
            )
        case "approvalrequirement":
            return rows.annotate(
                policy_name=Subquery(Policy.objects.filter(pk=OuterRef("policy_id")).values("name")[:1])
            ).select_related("group")
        case "usecasecontrolitem":
            return rows.annotate(
                use_case_name=Subquery(UseCase.objects.filter(pk=OuterRef("use_case_id")).values("name")[:1]),
                use_case_slug=Subquery(UseCase.objects.filter(pk=OuterRef("use_case_id")).values("slug")[:1]),
                item_title=Subquery(ControlItem.objects.filter(pk=OuterRef("item_id")).values("title")[:1]),
            )
        case "approvalrequest":
            return rows.annotate(
                use_case_name=Subquery(UseCase.objects.filter(pk=OuterRef("use_case_id")).values("name")[:1])
            )
    return rows


def _subject(key: str, row) -> tuple[str, tuple]:
    match key:
        case "usecase":
            return row.name, ("usecase", row.slug)
        case "policy":
            return row.name, ("policy", row.id)
        case "policyversion":
            return f"{row.policy_name} v{row.number}", ("policy", row.policy_id)
        case "rule":
            link = ("policy", row.policy_ref) if row.policy_ref else ()
            return f"{row.policy_name} v{row.version_number}: rule “{row.name}”", link
        case "sourcedataset":
            return f"{row.connector_name} / {row.name}", ("connectors",)
        case "connector" | "destination":
            return row.name, ("connectors",)
        case "apikey":
            return f"{row.name} ({row.prefix}…)", ("connectors",)
        case "approvalrequirement":
            group = row.group.name if row.group else "a deleted group"
            return f"{row.policy_name}: {row.count} approval(s) from {group}", ("policy", row.policy_id)
        case "usecasecontrolitem":
            return f"{row.use_case_name}: “{row.item_title}”", ("usecase", row.use_case_slug)
        case "alert":
            return row.title, ()
        case "approvalrequest":
            return f"Approval {row.public_id} ({row.use_case_name})", ("trace", row.recommendation_id)
    return row.name, ()


@dataclass(frozen=True)
class TrailFilter:
    """The time window and object the trail is narrowed to (besides actor and type); empty narrows nothing."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    object_id: int | None = None

    def window(self, time_field: str) -> Q:
        condition = Q()
        if self.since:
            condition &= Q(**{f"{time_field}__gte": self.since})
        if self.until:
            condition &= Q(**{f"{time_field}__lt": self.until})
        return condition


def _history_entries(
    key: str, visible: Visible, *, actor_ids: list[int] | None, cursor, limit: int, where: TrailFilter
) -> list[TrailEntry]:
    """`actor_ids`: the accounts the actor filter names (None: no filter), so the filter is an indexed column
    rather than a join to the users table per history row."""
    history_model = GOVERNED[key].history.model
    # The version before each row: a bounded range of the (id, history_date, history_id) index; the tie on
    # history_date stays out of the range condition so the index can serve it (an OR would scan the table).
    previous = history_model.objects.filter(id=OuterRef("id"), history_date__lte=OuterRef("history_date")).exclude(
        history_date=OuterRef("history_date"), history_id__gte=OuterRef("history_id")
    )
    rows = _visible_history(key, visible).filter(
        _after_cursor("history_date", "history_id", SOURCES.index(key), cursor)
    )
    rows = rows.filter(where.window("history_date"))
    if where.object_id is not None:
        rows = rows.filter(id=where.object_id)
    if actor_ids is not None:
        rows = rows.filter(history_user_id__in=actor_ids)
    rows = list(
        _labelled(key, rows.select_related("history_user"))
        .annotate(
            # Only a change has a diff: a creation has no previous version to look for, and the look-up for a
            # version that does not exist would walk the whole index.
            previous_id=Case(
                When(
                    history_type="~",
                    then=Subquery(previous.order_by("-history_date", "-history_id").values("history_id")[:1]),
                )
            )
        )
        .order_by("-history_date", "-history_id")[:limit]
    )
    previous_rows = history_model.objects.in_bulk([row.previous_id for row in rows if row.previous_id])
    entries = []
    for row in rows:
        subject, link = _subject(key, row)
        before = previous_rows.get(row.previous_id)
        entries.append(
            TrailEntry(
                source=key,
                pk=row.history_id,
                at=row.history_date,
                actor=row.history_user.get_username() if row.history_user else "system",
                action={"+": "created", "~": "changed", "-": "deleted"}.get(row.history_type, row.history_type),
                subject=subject,
                object_id=row.id,
                link=link,
                reason=row.history_change_reason or "",
                versions=(row, before) if row.history_type == "~" and before is not None else None,
            )
        )
    return entries


def _diff(versions) -> list[dict]:
    row, before = versions
    return [
        {
            "field": change.field,
            "old": "(hidden)" if change.field in HIDDEN_FIELDS else _short(change.old),
            "new": "(hidden)" if change.field in HIDDEN_FIELDS else _short(change.new),
        }
        for change in row.diff_against(before).changes
    ]


def _event_entries(
    user, *, actor: str, actor_ids: list[int] | None, event_type: str, cursor, limit: int, where: TrailFilter
) -> list[TrailEntry]:
    """An actor that names accounts filters by them (indexed; their key and on-behalf actions included); any
    other actor is a system label such as "system:sla-beat"."""
    events = RecommendationEvent.objects.filter(recommendation__in=recommendation_list(user=user)).filter(
        _after_cursor("at", "pk", SOURCES.index(EVENTS), cursor), where.window("at")
    )
    if where.object_id is not None:
        events = events.filter(recommendation_id=where.object_id)
    if actor_ids:
        events = events.filter(actor_user_id__in=actor_ids)
    elif actor:
        events = events.filter(actor_label__iexact=actor)
    if event_type:
        events = events.filter(type=event_type)
    events = events.select_related("recommendation__use_case").order_by("-at", "-pk")[:limit]
    return [
        TrailEntry(
            source=EVENTS,
            pk=event.pk,
            at=event.at,
            actor=event.actor_label,
            action=event.get_type_display(),
            subject=f"Recommendation {event.recommendation_id} ({event.recommendation.use_case.name}, "
            f"{event.recommendation.subject_key}) #{event.sequence}",
            object_id=event.recommendation_id,
            payload=[(str(k), _short(v, 60)) for k, v in list(event.payload.items())[:6]]
            if isinstance(event.payload, dict)
            else [],
            recommendation_id=event.recommendation_id,
            event_type=event.type,
            link=("trace", event.recommendation_id),
        )
        for event in events
    ]


def _access_entries(user, *, actor: str, kind: str, cursor, limit: int, where: TrailFilter) -> list[TrailEntry]:
    """Logins, failed logins, lockouts, grants, exports…: an admin sees everyone's, others their own."""
    events = AccessEvent.objects.filter(_after_cursor("occurred_at", "id", SOURCES.index(ACCESS), cursor))
    events = events.filter(where.window("occurred_at"))
    if not user.is_superuser:
        events = events.filter(user=user)
    if actor:
        events = events.filter(username__iexact=actor)
    if kind:
        events = events.filter(kind=kind)
    return [
        TrailEntry(
            source=ACCESS,
            pk=event.pk,
            at=event.occurred_at,
            actor=event.username or "anonymous",
            action=event.get_kind_display(),
            subject=event.detail or event.get_kind_display(),
            object_id=event.user_id,
            payload=[(key, value) for key, value in (("ip", event.ip), ("method", event.method)) if value],
            event_type=event.kind,
        )
        for event in events.order_by("-occurred_at", "-id")[:limit]
    ]


def audit_trail(
    *,
    user,
    actor: str = "",
    type: str = "",
    cursor: str = "",
    limit: int = PAGE_SIZE,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    object_id: int | None = None,
) -> tuple[list[TrailEntry], str | None]:
    """One page of the trail, newest first, and the cursor of the next page (None at the end).

    `type` is a governed model key (e.g. "policyversion"), "event" for all recommendation events or
    "event:<type>" for one event type; empty for everything. `since`/`until` bound the time, `object_id` the
    object (with a type: that object's rows; the recommendation for events)."""
    if user is None or not user.is_authenticated:
        return [], None
    position = parse_cursor(cursor) if cursor else None
    actor = actor.strip()
    where = TrailFilter(since=since, until=until, object_id=object_id)
    event_type = ""
    if type.startswith((f"{EVENTS}:", f"{ACCESS}:")):
        type, event_type = type.split(":", 1)
    sources = [type] if type in SOURCES else SOURCES
    if object_id is not None:  # an object id names a governed object or a recommendation, not a person
        sources = [source for source in sources if source != ACCESS]
    entries: list[TrailEntry] = []
    visible = None
    actor_ids = (
        list(get_user_model().objects.filter(username__iexact=actor).values_list("pk", flat=True)) if actor else None
    )
    for source in sources:
        if source == EVENTS:
            entries += _event_entries(
                user,
                actor=actor,
                actor_ids=actor_ids,
                event_type=event_type,
                cursor=position,
                limit=limit + 1,
                where=where,
            )
        elif source == ACCESS:
            entries += _access_entries(
                user, actor=actor, kind=event_type, cursor=position, limit=limit + 1, where=where
            )
        else:
            visible = visible or Visible.of(user)
            entries += _history_entries(
                source, visible, actor_ids=actor_ids, cursor=position, limit=limit + 1, where=where
            )
    entries.sort(key=lambda e: (e.at, SOURCES.index(e.source), e.pk), reverse=True)
    page = entries[:limit]
    for entry in page:
        if entry.versions is not None:
            entry.changes = _diff(entry.versions)
    next_cursor = page[-1].cursor if len(entries) > limit else None
    return page, next_cursor
