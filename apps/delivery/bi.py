"""BI tables: the approved, scored outputs of a destination's use cases, as one table in a SQL database
that Qlik, Power BI, Metabase or Tableau load on their own schedule (schema: docs/bi-table.md).

Refreshed by beat every five minutes, incrementally: a keyset cursor "<decided_at ISO>|<id>" on the
Destination marks the last exported output, and rows are upserted by recommendation id, so a refresh
that fails half-way (cursor unchanged) simply writes the same rows again next time. Outputs are
exported once they are a minute old (SETTLE): a transaction that stamped its decision time just before
a refresh read, and committed just after, would otherwise fall behind the cursor and never be exported.
"""

import datetime as dt

from django.db.models import Exists, OuterRef, Q

from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.registry import client_for
from apps.connectors.models import Destination
from apps.connectors.services import connector_outcome_record
from apps.core import clock
from apps.core.actors import Actor
from apps.monitoring.services import alert_raise, alert_resolve
from apps.workflows.models import Recommendation, RecommendationEvent

from .notifications import trace_url
from .services import PASSED_STATUSES

KEY_COLUMN = "recommendation_id"
COLUMN_TYPES = {
    "recommendation_id": "integer",
    "use_case": "text",
    "use_case_name": "text",
    "business_unit": "text",
    "subject_key": "text",
    "status": "text",
    "score": "float",
    "confidence": "float",
    "text": "text",
    "proposed_action": "json",
    "policy_version": "text",
    "decided_at": "timestamp",
    "delivered_at": "timestamp",
    "reviewer_edited": "boolean",
    "cost": "float",
    "trace_url": "text",
    "exported_at": "timestamp",
}
BATCH_SIZE = 1000
SETTLE = dt.timedelta(minutes=1)


def cursor_format(recommendation: Recommendation) -> str:
    return f"{recommendation.decided_at.isoformat()}|{recommendation.pk}"


def cursor_parse(value: str) -> tuple[dt.datetime, int] | None:
    """The position after which to export; None for an empty cursor (export from the start)."""
    if not value:
        return None
    at, _, pk = value.rpartition("|")
    try:
        return dt.datetime.fromisoformat(at), int(pk)
    except ValueError:
        raise ConnectorError(f"The BI table's cursor {value!r} is unreadable", permanent=True) from None


def _score(recommendation: Recommendation) -> float | None:
    content = recommendation.final_content if recommendation.final_content is not None else recommendation.content
    value = content.get("score") if isinstance(content, dict) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def bi_row(recommendation: Recommendation, *, exported_at: dt.datetime) -> dict:
    """One output as a row of the BI table (COLUMN_TYPES); `recommendation` carries `edited`."""
    use_case = recommendation.use_case
    return {
        "recommendation_id": recommendation.pk,
        "use_case": use_case.slug,
        "use_case_name": use_case.name,
        "business_unit": use_case.business_unit,
        "subject_key": recommendation.subject_key,
        "status": recommendation.status,
        "score": _score(recommendation),
        "confidence": recommendation.confidence,
        "text": recommendation.text,
        "proposed_action": recommendation.proposed_action or {},
        "policy_version": str(recommendation.policy_version) if recommendation.policy_version_id else None,
        "decided_at": recommendation.decided_at,
        "delivered_at": recommendation.delivered_at,
        "reviewer_edited": recommendation.edited,
        "cost": float(recommendation.cost),
        "trace_url": trace_url(recommendation),
        "exported_at": exported_at,
    }


def _exportable(destination: Destination, horizon: dt.datetime):
    edited = RecommendationEvent.objects.filter(recommendation=OuterRef("pk"), type=RecommendationEvent.Type.EDITED)
    return (
        Recommendation.objects.filter(
            use_case__in=destination.use_cases.all(),
            status__in=PASSED_STATUSES,
            decided_at__isnull=False,
            decided_at__lte=horizon,
        )
        .select_related("use_case", "policy_version__policy")
        .annotate(edited=Exists(edited))
    )


def _client(destination: Destination):
    if destination.kind != Destination.Kind.BI_TABLE:
        raise ConnectorError(f"{destination.name} is not a BI table destination", permanent=True)
    if not destination.table:
        raise ConnectorError(f"The BI table destination {destination.name} names no table", permanent=True)
    client = client_for(destination.connector)
    if not hasattr(client, "upsert_rows"):
        raise ConnectorError(
            f"A {destination.connector.get_kind_display()} connector cannot hold a BI table; use a SQL database",
            permanent=True,
        )
    return client


def bi_table_refresh(*, destination: Destination) -> int:
    """Export into the destination's table the outputs of its use cases that passed (allowed by the
    policy or approved/edited by a reviewer, and whatever their delivery became since), decided after
    the cursor; then export again those delivered since the last refresh (status and delivered_at
    changed). The cursor advances only after its batch is written. Returns the rows written; raises
    ConnectorError (cursor unchanged, an alert raised). A system job (beat): no user permission."""
    destination = Destination.objects.select_related("connector").get(pk=destination.pk)
    now = clock.now()
    horizon = now - SETTLE
    alert_key = f"bi-table:{destination.pk}"
    written = 0
    try:
        client = _client(destination)
        exportable = _exportable(destination, horizon)

        def upsert(batch: list[Recommendation]) -> int:
            rows = [bi_row(recommendation, exported_at=now) for recommendation in batch]
            return client.upsert_rows(destination.table, rows, key_column=KEY_COLUMN, column_types=COLUMN_TYPES)

        cursor = destination.refresh_cursor
        while True:
            rows = exportable
            position = cursor_parse(cursor)
            if position is not None:
                at, pk = position
                rows = rows.filter(Q(decided_at__gt=at) | Q(decided_at=at, pk__gt=pk))
            batch = list(rows.order_by("decided_at", "pk")[:BATCH_SIZE])
            if not batch:
                break
            written += upsert(batch)
            advanced = cursor_format(batch[-1])
            # Compare-and-set: when an overlapping refresh moved the cursor first, it carries on alone.
            if not Destination.objects.filter(pk=destination.pk, refresh_cursor=cursor).update(refresh_cursor=advanced):
                return written
            cursor = advanced
            if len(batch) < BATCH_SIZE:
                break
        if destination.last_refreshed_at is not None:
            since = destination.last_refreshed_at - SETTLE
            delivered = exportable.filter(delivered_at__gt=since, delivered_at__lte=horizon)
            last_pk = 0
            while batch := list(delivered.filter(pk__gt=last_pk).order_by("pk")[:BATCH_SIZE]):
                written += upsert(batch)
                last_pk = batch[-1].pk
        # Saved with update(): the cursor and refresh time are telemetry, not a change for the history.
        Destination.objects.filter(pk=destination.pk).update(last_refreshed_at=now)
    except ConnectorError as exc:
        connector_outcome_record(connector=destination.connector, ok=False, error=str(exc))
        alert_raise(
            key=alert_key,
            kind="bi_table",
            title=f"BI table {destination.name} was not refreshed",
            detail=str(exc),
            connector=destination.connector,
        )
        raise
    connector_outcome_record(connector=destination.connector, ok=True)
    alert_resolve(key=alert_key, actor=Actor.for_system("bi_table_refresh"), reason="Refreshed again")
    return written
