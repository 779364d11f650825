"""The BI table: approved outputs exported incrementally into a real SQLite file and a real PostgreSQL
database, keyed by recommendation id, with the documented columns (docs/bi-table.md)."""

import datetime as dt
import os
import secrets
import sqlite3
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings as django_settings

from apps.connectors.clients.errors import ConnectorError
from apps.connectors.models import Connector, Destination
from apps.core import clock
from apps.core.actors import Actor
from apps.delivery import bi, services
from apps.delivery.models import Delivery
from apps.delivery.tasks import bi_tables_refresh_task
from apps.monitoring.models import Alert
from apps.reviews.services import review_task_decide
from apps.workflows.models import Recommendation
from tests.delivery.helpers import make_connector

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
LATER = dt.timedelta(minutes=2)  # past bi.SETTLE, so what was decided now is exported


def _sqlite_target(tmp_path):
    path = tmp_path / "warehouse.sqlite3"
    sqlite3.connect(path).close()  # the warehouse exists; the table is created by the first refresh

    def rows(table):
        with sqlite3.connect(path) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY recommendation_id')]

    yield f"sqlite:///{path}", rows


def _postgres_target():
    name = f"doorstep_bi_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        if os.environ.get("DOORSTEP_REQUIRE_SERVICES"):
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"

    def rows(table):
        with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
            return conn.execute(f'SELECT * FROM "{table}" ORDER BY recommendation_id').fetchall()

    try:
        yield url, rows
    finally:
        # FORCE: the SQL client's cached engine still holds a connection to it.
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request, tmp_path):
    """(SQLAlchemy URL, rows(table) -> list[dict]) of a throw-away target database."""
    target = _sqlite_target(tmp_path) if request.param == "sqlite" else _postgres_target()
    yield next(target)
    target.close()


@pytest.fixture
def bi_destination(world, warehouse):
    url, _ = warehouse
    connector = make_connector(Connector.Kind.SQL, "Warehouse", secrets={"url": url})
    destination = Destination.objects.create(
        name="Churn insights for Qlik", kind=Destination.Kind.BI_TABLE, connector=connector, table="doorstep_outputs"
    )
    world.churn.destinations.add(destination)
    return destination


def _refresh(destination, *, at=None) -> int:
    with clock.simulated(at or clock.now() + LATER):
        return bi.bi_table_refresh(destination=destination)


def test_exports_what_passed_then_only_new_rows(world, allowed, queued_recommendation, bi_destination, warehouse):
    _, rows = warehouse
    first = allowed(2, text="Call the sponsor.")
    queued = queued_recommendation(subject_key="ACC-0010")
    edited = queued_recommendation(subject_key="ACC-0011", text="Offer 20% off.")
    review_task_decide(
        actor=Actor(user=world.reviewer), task=edited.review_task, decision="edit", edited_text="Offer 10% off."
    )
    rejected = queued_recommendation(subject_key="ACC-0012")
    review_task_decide(
        actor=Actor(user=world.reviewer), task=rejected.review_task, decision="reject", reason_code="inaccurate"
    )
    allowed(1, use_case=world.replies, text="Restart the router.", context={"subject": "Router down"})  # not linked

    assert _refresh(bi_destination, at=clock.now()) == 0  # decided under a minute ago: not yet
    assert _refresh(bi_destination) == 3
    exported = rows("doorstep_outputs")
    assert [row["recommendation_id"] for row in exported] == sorted([first[0].pk, first[1].pk, edited.pk])
    by_id = {row["recommendation_id"]: row for row in exported}
    row = by_id[first[0].pk]
    assert row["use_case"] == "churn-risk" and row["use_case_name"] == "Churn risk on CRM accounts"
    assert row["business_unit"] == "Sales" and row["subject_key"] == "ACC-0001"
    assert row["status"] == "delivering" and row["text"] == "Call the sponsor."
    assert row["score"] == pytest.approx(0.81) and row["confidence"] == pytest.approx(0.92)
    assert row["policy_version"] == "Churn retention policy v1" and row["reviewer_edited"] in (False, 0)
    assert row["cost"] == pytest.approx(0.0) and row["delivered_at"] is None and row["decided_at"] is not None
    assert row["trace_url"] == f"{django_settings.DOORSTEP_BASE_URL}/audit/recommendations/{first[0].pk}/"
    assert by_id[edited.pk]["text"] == "Offer 10% off." and by_id[edited.pk]["reviewer_edited"] in (True, 1)
    assert queued.pk not in by_id and rejected.pk not in by_id
    bi_destination.refresh_from_db()
    cursor = bi_destination.refresh_cursor
    assert cursor.endswith(f"|{max(first[1].pk, edited.pk)}") and bi_destination.last_refreshed_at is not None
    assert not bi_destination.history.filter(history_type="~").exists()  # telemetry, not a change

    # Incremental: nothing new, nothing written; a new output, only that row.
    assert _refresh(bi_destination) == 0
    exported_at = {row["recommendation_id"]: row["exported_at"] for row in rows("doorstep_outputs")}
    (later,) = allowed(1, text="Send the QBR deck.", start=20)
    assert _refresh(bi_destination) == 1
    again = rows("doorstep_outputs")
    assert [row["recommendation_id"] for row in again][-1] == later.pk and len(again) == 4
    assert all(row["exported_at"] == exported_at[row["recommendation_id"]] for row in again[:-1])


def test_rows_delivered_since_the_last_refresh_are_exported_again(world, allowed, bi_destination, warehouse):
    _, rows = warehouse
    (recommendation,) = allowed()
    assert _refresh(bi_destination) == 1
    assert rows("doorstep_outputs")[0]["status"] == "delivering"
    # Delivered afterwards (the demo CRM write-back is the use case's other destination).
    with clock.simulated(clock.now() + LATER):
        services.delivery_send(delivery_id=Delivery.objects.get(recommendation=recommendation).pk)
    with clock.simulated(clock.now() + 2 * LATER):
        assert bi.bi_table_refresh(destination=bi_destination) == 1
    (row,) = rows("doorstep_outputs")
    assert row["status"] == "delivered" and row["delivered_at"] is not None


def test_a_failed_refresh_keeps_its_cursor_and_raises_an_alert(world, allowed, tmp_path):
    connector = make_connector(
        Connector.Kind.SQL, "Missing warehouse", secrets={"url": f"sqlite:///{tmp_path / 'not-there.sqlite3'}"}
    )
    destination = Destination.objects.create(
        name="Broken BI", kind=Destination.Kind.BI_TABLE, connector=connector, table="doorstep_outputs"
    )
    world.churn.destinations.add(destination)
    allowed(2)
    with pytest.raises(ConnectorError):
        _refresh(destination)
    destination.refresh_from_db()
    assert destination.refresh_cursor == "" and destination.last_refreshed_at is None
    alert = Alert.objects.get(key=f"bi-table:{destination.pk}")
    assert alert.status == "open" and alert.connector == connector
    connector.refresh_from_db()
    assert connector.health == "failing"

    # The database appears: the next run exports everything from the start, and the alert is resolved.
    sqlite3.connect(tmp_path / "not-there.sqlite3").close()
    assert bi_tables_refresh_task.apply().get() == 0  # beat's task runs now, still within a minute
    with clock.simulated(clock.now() + LATER):
        assert bi_tables_refresh_task() == 2
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_a_bi_table_needs_a_sql_connector(world):
    hook = make_connector(Connector.Kind.WEBHOOK, "Not a database", config={"url": "https://example.com/h"})
    destination = Destination.objects.create(
        name="Wrong", kind=Destination.Kind.BI_TABLE, connector=hook, table="doorstep_outputs"
    )
    with pytest.raises(ConnectorError, match="not a system of record|cannot hold a BI table"):
        bi.bi_table_refresh(destination=destination)


def test_beat_refreshes_bi_tables_every_five_minutes():
    entry = django_settings.CELERY_BEAT_SCHEDULE["refresh-bi-tables"]
    assert entry == {"task": "apps.delivery.tasks.bi_tables_refresh_task", "schedule": 300.0}


def test_cost_and_status_of_a_recommendation_row():
    """The row builder alone, on an unsaved output: types the BI tool relies on."""
    from apps.workflows.models import UseCase

    use_case = UseCase(slug="s", name="S", business_unit="Ops")
    recommendation = Recommendation(
        pk=5,
        use_case=use_case,
        subject_key="K",
        content={"text": "t", "score": "0.5"},
        cost=Decimal("0.000400"),
        status="approved",
        decided_at=clock.now(),
    )
    recommendation.edited = False
    row = bi.bi_row(recommendation, exported_at=clock.now())
    assert set(row) == set(bi.COLUMN_TYPES)
    assert row["score"] == 0.5 and row["cost"] == pytest.approx(0.0004) and row["proposed_action"] == {}
