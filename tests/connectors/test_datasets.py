"""The data context's rules (quality, freshness) and the cached copies that beat keeps in sync."""

import datetime as dt
import sqlite3

import pytest
from django.contrib.auth.models import Group

from apps.connectors import datasets
from apps.connectors.models import Connector, DatasetRecord, DatasetSync, SourceDataset
from apps.connectors.tasks import datasets_sync_due_task
from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied, ServiceError
from apps.monitoring.models import Alert
from apps.permissions.services import object_permission_grant
from tests.factories import UserFactory

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


# --- quality rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "errors"),
    [
        ({}, []),
        ({"required": ["nps"], "allowed": {"region": ["EMEA", 1]}, "ranges": {"nps": {"min": 0, "max": 10}}}, []),
        ([], ['Quality rules must be a JSON object: {"required": [...], "allowed": {...}, "ranges": {...}}']),
        ({"mandatory": ["nps"]}, ["Unknown key 'mandatory': use required, allowed, ranges"]),
        ({"required": "nps"}, ['"required" must be a list of field names']),
        ({"allowed": {"region": "EMEA"}}, ['"allowed" of region: give a non-empty list of values']),
        ({"allowed": {"region": [{"x": 1}]}}, ['"allowed" of region: values must be text, numbers or true/false']),
        ({"ranges": {"nps": {"min": 10, "max": 0}}}, ['"ranges" of nps: min 10 is above max 0']),
        ({"ranges": {"nps": {"min": "0"}}}, ['"ranges" of nps: min and max must be numbers']),
        ({"ranges": {"nps": {"low": 0}}}, ['"ranges" of nps: give {"min": x, "max": y} (either or both)']),
        ({"ranges": []}, ['"ranges" must map each field to {"min": x, "max": y}']),
    ],
)
def test_quality_rules_are_validated(rules, errors):
    assert datasets.quality_rules_validate(rules) == errors


def test_quality_rules_may_only_name_known_fields():
    rules = {"required": ["nps", "owner"], "ranges": {"owner": {"max": 1}}}
    assert datasets.quality_rules_validate(rules, fields=["account_id", "nps"]) == [
        "Unknown field 'owner' (fields: account_id, nps)"
    ]


def test_quality_check_lists_each_broken_rule_per_record():
    dataset = SourceDataset(
        name="Accounts",
        key_field="account_id",
        quality_rules={
            "required": ["arr"],
            "allowed": {"tier": ["gold", "silver"]},
            "ranges": {"nps": {"min": 0, "max": 10}, "arr": {"min": 0}},
        },
    )
    records = [
        {"account_id": "A", "arr": 10.0, "tier": "gold", "nps": 10},
        {"account_id": "B", "arr": None, "tier": "bronze", "nps": -3},
        {"account_id": "C", "arr": " ", "tier": None, "nps": "n/a"},
    ]
    assert datasets.quality_check(dataset, records) == [
        {"record": "B", "field": "arr", "message": "arr is required but empty"},
        {"record": "B", "field": "tier", "message": "tier is 'bronze', not one of gold, silver"},
        {"record": "B", "field": "nps", "message": "nps is -3, below the minimum 0"},
        {"record": "C", "field": "arr", "message": "arr is required but empty"},
        {"record": "C", "field": "nps", "message": "nps is 'n/a', not a number"},
    ]
    dataset.quality_rules = {"ranges": {"nps": {"min": 5, "max": 1}}}
    (error,) = datasets.quality_check(dataset, records)
    assert error["message"] == 'The dataset\'s quality rules are invalid: "ranges" of nps: min 5 is above max 1'


# --- freshness -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-25T10:00:00+00:00", dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)),
        ("2026-11-25T10:00:00Z", dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)),
        ("2026-11-25 11:00:00+01:00", dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)),
        ("2026-11-25 10:00:00", dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)),  # naive: UTC
        (dt.datetime(2026, 11, 25, 10), dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)),
        (dt.date(2026, 11, 25), dt.datetime(2026, 11, 25, tzinfo=dt.UTC)),
        (1795600800, dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)),
        (1795600800000, dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (True, None),
    ],
)
def test_as_of_values_are_read_robustly(value, expected):
    assert datasets.as_datetime(value) == expected


@pytest.mark.parametrize(
    ("sla", "stamps", "verdict"),
    [
        (DAY, [NOW - dt.timedelta(hours=2), NOW - dt.timedelta(hours=20)], "fresh"),
        (DAY, [NOW - dt.timedelta(hours=2), NOW - dt.timedelta(days=3)], "stale"),
        (DAY, [NOW - dt.timedelta(hours=2), None], "stale"),  # the SLA cannot be shown to hold
        (None, [NOW - dt.timedelta(days=30)], "unknown"),
        (DAY, [], "unknown"),
    ],
)
def test_freshness_is_the_oldest_record_against_the_sla(sla, stamps, verdict):
    as_of, result = datasets.freshness(SourceDataset(freshness_sla=sla), stamps, NOW)
    assert result == verdict
    assert as_of == min((s for s in stamps if s), default=None)


def test_labels_read_as_people_say_them():
    assert datasets.age_label(dt.timedelta(days=3, hours=5)) == "3 days"
    assert datasets.age_label(dt.timedelta(hours=24)) == "24 h"
    assert datasets.age_label(dt.timedelta(minutes=42)) == "42 min"
    assert datasets.age_label(dt.timedelta(hours=2, minutes=5)) == "2 h"
    assert datasets.age_label(dt.timedelta(minutes=90), exact=True) == "90 min"
    assert datasets.age_label(dt.timedelta(hours=36), exact=True) == "36 h"
    assert datasets.age_label(dt.timedelta(days=3), exact=True) == "3 days"


# --- sync of cached datasets -----------------------------------------------------------------------------


def _source(path, rows):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS accounts (account_id TEXT PRIMARY KEY, nps INTEGER, updated_at TEXT)")
        conn.executemany("INSERT OR REPLACE INTO accounts VALUES (?, ?, ?)", rows)
    return path


def _row(i, hours_ago, nps=5):
    return (f"ACC-{i}", nps, (NOW - dt.timedelta(hours=hours_ago)).isoformat())


@pytest.fixture
def source(tmp_path):
    return _source(tmp_path / "crm.sqlite3", [_row(i, 10 - i) for i in range(1, 6)])


@pytest.fixture
def cached(db, source):
    connector = Connector(name="CRM", kind=Connector.Kind.SQL)
    connector.set_secrets({"url": f"sqlite:///{source}"})
    connector.save()
    return SourceDataset.objects.create(
        connector=connector,
        name="Accounts",
        table="accounts",
        key_field="account_id",
        updated_at_field="updated_at",
        freshness_sla=DAY,
        mode=SourceDataset.Mode.CACHED,
        sync_interval=dt.timedelta(minutes=15),
    )


@pytest.fixture
def system():
    return Actor.for_system("test")


def _sync(dataset, actor, **kwargs):
    with clock.simulated(NOW):
        return datasets.dataset_sync(actor=actor, dataset=dataset, trigger="manual", page_size=2, **kwargs)


def _copy(dataset):
    return dict(DatasetRecord.objects.filter(dataset=dataset).values_list("key", "data__nps"))


def test_a_sync_copies_the_source_page_by_page_then_only_what_changed(cached, source, system):
    sync = _sync(cached, system)
    assert sync.status == DatasetSync.Status.SUCCEEDED, sync.error
    assert (sync.rows_read, sync.rows_written) == (5, 5)
    assert _copy(cached) == {f"ACC-{i}": 5 for i in range(1, 6)}
    cached.refresh_from_db()
    assert cached.sync_cursor == _row(5, 5)[2] and cached.last_synced_at == NOW
    record = DatasetRecord.objects.get(dataset=cached, key="ACC-1")
    assert record.as_of == NOW - dt.timedelta(hours=9) and record.record_id == "ACC-1"

    _source(source, [_row(2, 1, nps=9), _row(6, 1)])  # one change, one new account
    again = _sync(cached, system)
    assert again.cursor_before == sync.cursor_after and (again.rows_read, again.rows_written) == (2, 2)
    assert _copy(cached)["ACC-2"] == 9 and len(_copy(cached)) == 6

    # Read from the copy: what the run would see.
    assert datasets.dataset_read(cached, "ACC-2")[0]["nps"] == 9


def test_rows_sharing_a_cursor_value_across_pages_are_all_copied(cached, source, system):
    _source(source, [_row(i, 0) for i in range(7, 10)])  # three rows with the same updated_at, pages of two
    sync = _sync(cached, system)
    assert sync.status == DatasetSync.Status.SUCCEEDED, sync.error
    assert sorted(_copy(cached)) == sorted([f"ACC-{i}" for i in (1, 2, 3, 4, 5, 7, 8, 9)])


def test_a_failure_mid_way_leaves_the_copy_and_cursor_as_they_were(cached, source, system):
    assert _sync(cached, system).status == DatasetSync.Status.SUCCEEDED
    cached.refresh_from_db()
    cursor, copy = cached.sync_cursor, _copy(cached)
    # The source now fails on its third page: json() raises on one row, as a broken view or table would.
    with sqlite3.connect(source) as conn:
        conn.execute("ALTER TABLE accounts RENAME TO accounts_data")
        conn.execute(
            "CREATE VIEW accounts AS SELECT account_id, updated_at, "
            "CAST(json(CASE WHEN nps < 0 THEN 'broken' ELSE nps END) AS INTEGER) AS nps FROM accounts_data"
        )
        conn.executemany(
            "INSERT INTO accounts_data VALUES (?, ?, ?)",
            [_row(i, 0.1 * (20 - i), nps=-1 if i == 15 else 1) for i in range(10, 16)],
        )
    failed = _sync(cached, system)
    assert failed.status == DatasetSync.Status.FAILED and "Reading accounts failed: malformed JSON" in failed.error
    cached.refresh_from_db()
    assert cached.sync_cursor == cursor and _copy(cached) == copy  # pages one and two were not kept
    alert = Alert.objects.get(key=f"dataset-sync:{cached.pk}")
    assert (
        alert.status == Alert.Status.OPEN and alert.connector == cached.connector and "malformed JSON" in alert.detail
    )
    assert alert.title == "Sync of CRM / Accounts failed"

    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE accounts_data SET nps = 2 WHERE account_id = 'ACC-15'")
    recovered = _sync(cached, system)
    assert recovered.status == DatasetSync.Status.SUCCEEDED and recovered.rows_written == 6
    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED and _copy(cached)["ACC-15"] == 2


def test_one_sync_of_a_dataset_at_a_time(cached, system):
    running = DatasetSync.objects.create(dataset=cached, trigger="schedule", started_at=NOW - dt.timedelta(minutes=5))
    with pytest.raises(Conflict, match="A sync of Accounts is already running"):
        _sync(cached, system)
    # A sync "running" for longer than the lease lost its worker: it is closed, and a new one runs.
    DatasetSync.objects.filter(pk=running.pk).update(started_at=NOW - dt.timedelta(hours=2))
    assert _sync(cached, system).status == DatasetSync.Status.SUCCEEDED
    running.refresh_from_db()
    assert running.status == DatasetSync.Status.FAILED and running.error.startswith("Abandoned")


def test_who_and_what_may_sync(cached, system):
    with pytest.raises(PermissionDenied):
        _sync(cached, Actor(user=UserFactory()))
    group = Group.objects.create(name="Integrators")
    object_permission_grant(group=group, codename="change_connector", obj=cached.connector)
    integrator = UserFactory()
    integrator.groups.add(group)
    assert _sync(cached, Actor(user=integrator)).started_by == integrator
    cached.mode = SourceDataset.Mode.LIVE
    with pytest.raises(ServiceError, match="read live; only cached datasets are synced"):
        _sync(cached, system)


def test_beat_syncs_the_datasets_that_are_due(cached, source, system):
    fresh = SourceDataset.objects.create(
        connector=cached.connector,
        name="Recently synced",
        table="accounts",
        key_field="account_id",
        updated_at_field="updated_at",
        mode=SourceDataset.Mode.CACHED,
        sync_interval=dt.timedelta(hours=1),
        last_synced_at=NOW - dt.timedelta(minutes=10),
    )
    SourceDataset.objects.create(
        connector=cached.connector, name="Live", table="accounts", key_field="account_id", sync_interval=DAY
    )
    with clock.simulated(NOW):
        assert datasets_sync_due_task() == 1  # eager in tests: the sync ran
    cached.refresh_from_db()
    fresh.refresh_from_db()
    assert cached.last_synced_at == NOW and fresh.last_synced_at == NOW - dt.timedelta(minutes=10)
    assert cached.syncs.get().trigger == "schedule" and len(_copy(cached)) == 5
