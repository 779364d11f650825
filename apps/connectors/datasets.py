"""The data context (control 3): reading a subject's records from a dataset, checking them against the
dataset's freshness SLA and quality rules, and keeping cached and uploaded copies.

- Live datasets are read through their connector's client; cached and file datasets from their
  DatasetRecord rows (refreshed by `dataset_sync` on a schedule, or replaced by `dataset_upload`).
- Freshness: the oldest record's as-of time against the SLA. When the SLA cannot be shown to hold (a
  record without an as-of time), the data counts as stale.
- The gate (`context_gate`): stale data or data failing a quality rule makes the verdict at least the
  dataset's stale action (review or block), whatever the policy's rules say.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import numbers
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.monitoring.services import alert_raise, alert_resolve
from apps.workflows.models import ContextSnapshot

from .clients.errors import ConnectorError
from .clients.registry import client_for
from .models import Connector, DatasetRecord, DatasetSync, SourceDataset

Freshness = ContextSnapshot.Freshness
Quality = ContextSnapshot.Quality

READ_LIMIT = 50  # records of one subject
SYNC_PAGE_SIZE = 1000
SYNC_LEASE = dt.timedelta(minutes=30)  # a sync still "running" after this was abandoned by its worker
MAX_TIE_ROWS = 100_000
MAX_REPORTED_ERRORS = 100
MAX_KEY_LENGTH = 200  # DatasetRecord.key and record_id
QUALITY_KEYS = ("required", "allowed", "ranges")


# --- quality rules ---------------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def quality_rules_validate(rules, fields: list[str] | None = None) -> list[str]:
    """What is wrong with a dataset's quality rules (empty when they are fine); `fields`, when known, are
    the dataset's columns, and a rule naming another field is an error."""
    if rules in (None, ""):
        return []
    if not isinstance(rules, dict):
        return ['Quality rules must be a JSON object: {"required": [...], "allowed": {...}, "ranges": {...}}']
    errors = [f"Unknown key {key!r}: use {', '.join(QUALITY_KEYS)}" for key in rules if key not in QUALITY_KEYS]
    named: list[str] = []
    required = rules.get("required", [])
    if not isinstance(required, list) or not all(isinstance(f, str) and f for f in required):
        errors.append('"required" must be a list of field names')
    else:
        named += required
    allowed = rules.get("allowed", {})
    if not isinstance(allowed, dict):
        errors.append('"allowed" must map each field to its list of allowed values')
    else:
        for name, values in allowed.items():
            named.append(name)
            if not isinstance(values, list) or not values:
                errors.append(f'"allowed" of {name}: give a non-empty list of values')
            elif not all(isinstance(v, str | int | float | bool) for v in values):
                errors.append(f'"allowed" of {name}: values must be text, numbers or true/false')
    ranges = rules.get("ranges", {})
    if not isinstance(ranges, dict):
        errors.append('"ranges" must map each field to {"min": x, "max": y}')
    else:
        for name, bounds in ranges.items():
            named.append(name)
            if not isinstance(bounds, dict) or not bounds or set(bounds) - {"min", "max"}:
                errors.append(f'"ranges" of {name}: give {{"min": x, "max": y}} (either or both)')
            elif not all(_is_number(v) for v in bounds.values()):
                errors.append(f'"ranges" of {name}: min and max must be numbers')
            elif "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
                errors.append(f'"ranges" of {name}: min {bounds["min"]} is above max {bounds["max"]}')
    if fields is not None:
        known = set(fields)
        for name in dict.fromkeys(named):
            if name not in known:
                errors.append(f"Unknown field {name!r} (fields: {', '.join(fields)})")
    return errors


def _missing(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def record_quality_errors(rules: dict, record: dict) -> list[tuple[str, str]]:
    """(field, message) for each rule `record` breaks; `rules` are valid (see quality_rules_validate)."""
    rules = rules or {}
    errors = []
    for name in rules.get("required", []):
        if _missing(record.get(name)):
            errors.append((name, f"{name} is required but empty"))
    for name, values in rules.get("allowed", {}).items():
        value = record.get(name)
        if _missing(value):
            continue
        # A CSV holds text: "1" meets an allowed 1.
        if value not in values and str(value) not in {str(v) for v in values}:
            shown = ", ".join(str(v) for v in values)
            errors.append((name, f"{name} is {value!r}, not one of {shown}"))
    for name, bounds in rules.get("ranges", {}).items():
        value = record.get(name)
        if _missing(value):
            continue
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None:
            errors.append((name, f"{name} is {value!r}, not a number"))
        elif "min" in bounds and number < bounds["min"]:
            errors.append((name, f"{name} is {value}, below the minimum {bounds['min']}"))
        elif "max" in bounds and number > bounds["max"]:
            errors.append((name, f"{name} is {value}, above the maximum {bounds['max']}"))
    return errors


def quality_check(dataset: SourceDataset, records: list[dict], record_ids: list[str] | None = None) -> list[dict]:
    """[{record, field, message}] for every quality rule the records break. Rules that are themselves
    invalid are reported as a failure too: data cannot be shown to meet rules nobody can read."""
    invalid = quality_rules_validate(dataset.quality_rules)
    if invalid:
        return [{"record": "", "field": "", "message": f"The dataset's quality rules are invalid: {invalid[0]}"}]
    record_ids = record_ids or [str(r.get(dataset.key_field, "")) for r in records]
    return [
        {"record": record_id, "field": name, "message": message}
        for record_id, record in zip(record_ids, records, strict=False)
        for name, message in record_quality_errors(dataset.quality_rules, record)
    ]


# --- freshness -------------------------------------------------------------------------------------------


def as_datetime(value) -> dt.datetime | None:
    """An as-of value as an aware datetime: datetimes, dates, ISO strings (a trailing Z too) and Unix
    times. Naive values are taken to be UTC. None when it is not a time."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif _is_number(value):
        seconds = value / 1000 if value > 1e11 else value  # milliseconds since the epoch, as JavaScript writes
        try:
            return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and value.strip():
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def freshness(dataset: SourceDataset, stamps: list[dt.datetime | None], now: dt.datetime):
    """(data as of, verdict): the oldest as-of time of the records read, and whether it meets the SLA."""
    if not stamps:
        return None, Freshness.UNKNOWN
    known = [stamp for stamp in stamps if stamp is not None]
    as_of = min(known) if known else None
    if dataset.freshness_sla is None:
        return as_of, Freshness.UNKNOWN
    if len(known) < len(stamps) or now - as_of > dataset.freshness_sla:
        return as_of, Freshness.STALE
    return as_of, Freshness.FRESH


def age_label(duration: dt.timedelta, *, exact: bool = False) -> str:
    """ "3 days", "24 h", "40 min": an age (rounded down to its largest unit), or an SLA (`exact`: a unit
    that divides it, so 90 minutes stays "90 min")."""
    seconds = max(0, int(duration.total_seconds()))
    if seconds >= 2 * 86400 and not (exact and seconds % 86400):
        return f"{seconds // 86400} days"
    if seconds >= 3600 and not (exact and seconds % 3600):
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


# --- reading a subject -----------------------------------------------------------------------------------


@dataclass
class DataContext:
    """What one read of a subject found, and its verdicts (stored as the run's ContextSnapshot)."""

    records: list[dict]
    record_ids: list[str]
    data_as_of: dt.datetime | None = None
    freshness: str = Freshness.UNKNOWN
    quality: str = Quality.UNCHECKED
    quality_errors: list[dict] = field(default_factory=list)
    content_hash: str = ""


def reads_live(dataset: SourceDataset) -> bool:
    """Whether reading the dataset calls its connector (its health is then what the read saw)."""
    return dataset.mode == SourceDataset.Mode.LIVE and dataset.connector.kind != Connector.Kind.FILE


def content_hash(records: list[dict]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()


def _read(dataset: SourceDataset, key: str, now: dt.datetime) -> tuple[list[dict], list[str], list]:
    """(records, record ids, as-of stamps) of one subject."""
    if reads_live(dataset):
        records = client_for(dataset.connector).read_by_key(dataset.table, dataset.key_field, key, limit=READ_LIMIT)
        records = json.loads(json.dumps(records, default=str))  # plain JSON, as stored and hashed
        ids = [str(record.get(dataset.key_field, key)) for record in records]
        if dataset.updated_at_field:
            stamps = [as_datetime(record.get(dataset.updated_at_field)) for record in records]
        else:
            stamps = [now] * len(records)  # read live: as current as the source itself
        return records, ids, stamps
    if dataset.mode == SourceDataset.Mode.CACHED and dataset.last_synced_at is None:
        raise ServiceError(f"The cached copy of {dataset.name} was never synced", field="dataset")
    rows = list(DatasetRecord.objects.filter(dataset=dataset, key=str(key)).order_by("pk")[:READ_LIMIT])
    return [row.data for row in rows], [row.record_id for row in rows], [row.as_of for row in rows]


def dataset_read(dataset: SourceDataset, key: str) -> list[dict]:
    """The records of one subject: live through the connector, or from the cached or uploaded copy."""
    return _read(dataset, key, clock.now())[0]


def dataset_context(*, dataset: SourceDataset, key: str, now: dt.datetime) -> DataContext:
    """Read one subject and judge it: freshness against the SLA, quality against the rules."""
    records, record_ids, stamps = _read(dataset, key, now)
    as_of, verdict = freshness(dataset, stamps, now)
    errors = quality_check(dataset, records, record_ids) if records else []
    if errors:
        quality = Quality.FAILED
    elif dataset.quality_rules and records:
        quality = Quality.PASSED
    else:
        quality = Quality.UNCHECKED
    return DataContext(
        records=records,
        record_ids=record_ids,
        data_as_of=as_of,
        freshness=verdict,
        quality=quality,
        quality_errors=errors[:MAX_REPORTED_ERRORS],
        content_hash=content_hash(records),
    )


def snapshot_values_recover(snapshot, *, key: str) -> list[dict]:
    """The values of a snapshot that kept only their hash, read again for a retried run: the same data
    or nothing. A source that changed since cannot give back what the run used, so the run must stop."""
    records = dataset_read(snapshot.dataset, key)
    if content_hash(records) != snapshot.content_hash:
        raise ServiceError(
            f"The data of {snapshot.dataset.name} changed since this run read it, and only its hash was kept "
            f"(the dataset does not store values): start a new run. Hash {snapshot.content_hash[:12]}…",
            code="context_changed",
        )
    return records


# --- the gate and how it reads ---------------------------------------------------------------------------


def context_gate(snapshot) -> list[dict]:
    """Findings that hold the verdict at least at the dataset's stale action, one per failed check, named
    so the review page and the trace say why (e.g. "Data context: Accounts is 3 days old, SLA 24 h")."""
    dataset = snapshot.dataset
    findings = []
    if snapshot.freshness == Freshness.STALE:
        sla = age_label(snapshot.freshness_sla, exact=True) if snapshot.freshness_sla else "none"
        if snapshot.data_as_of is None:
            name = f"Data context: {dataset.name} has a record without an as-of time, SLA {sla}"
        else:
            name = (
                f"Data context: {dataset.name} is {age_label(snapshot.fetched_at - snapshot.data_as_of)} old, SLA {sla}"
            )
        findings.append({"name": name, "effect": dataset.stale_action, "gate": "freshness"})
    if snapshot.quality == Quality.FAILED:
        errors = snapshot.quality_errors or [{}]
        count = len(snapshot.quality_errors)
        first = errors[0].get("message", "")
        findings.append(
            {
                "name": f"Data context: {dataset.name} fails {count} quality check{'s' if count != 1 else ''}: {first}",
                "effect": dataset.stale_action,
                "gate": "quality",
            }
        )
    return findings


def snapshot_freshness_label(snapshot, now: dt.datetime | None = None) -> str:
    """ "data as of 3 days ago — SLA 24 h", for the reviewer."""
    now = now or clock.now()
    when = f"{age_label(now - snapshot.data_as_of)} ago" if snapshot.data_as_of else "unknown"
    sla = f"SLA {age_label(snapshot.freshness_sla, exact=True)}" if snapshot.freshness_sla else "no SLA"
    return f"data as of {when} — {sla}"


# --- cached copies: sync ---------------------------------------------------------------------------------


def _record_as_of(dataset: SourceDataset, row: dict, now: dt.datetime) -> dt.datetime | None:
    if dataset.updated_at_field:
        return as_datetime(row.get(dataset.updated_at_field))
    return now  # no as-of field: the copy is as of when it was taken


def datasets_due_for_sync(now: dt.datetime) -> list[int]:
    """Ids of cached datasets whose copy is older than their sync interval (or was never taken)."""
    candidates = SourceDataset.objects.filter(mode=SourceDataset.Mode.CACHED, sync_interval__isnull=False).exclude(
        connector__kind=Connector.Kind.FILE
    )
    return [
        pk
        for pk, last, interval in candidates.values_list("pk", "last_synced_at", "sync_interval")
        if last is None or last + interval <= now
    ]


def _sync_claim(*, actor: Actor, dataset: SourceDataset, trigger: str, now: dt.datetime) -> DatasetSync:
    with transaction.atomic():
        # A no-op UPDATE takes the dataset's row lock on PostgreSQL and the write lock on SQLite (where
        # select_for_update does nothing), so two claims of the same dataset run one after the other.
        SourceDataset.objects.filter(pk=dataset.pk).update(sync_cursor=F("sync_cursor"))
        running = DatasetSync.objects.filter(dataset=dataset, status=DatasetSync.Status.RUNNING)
        if running.filter(started_at__gt=now - SYNC_LEASE).exists():
            raise Conflict(f"A sync of {dataset.name} is already running")
        running.update(
            status=DatasetSync.Status.FAILED, finished_at=now, error="Abandoned: its worker stopped before it finished"
        )
        cursor = SourceDataset.objects.values_list("sync_cursor", flat=True).get(pk=dataset.pk)
        return DatasetSync.objects.create(
            dataset=dataset, trigger=trigger, started_at=now, started_by=actor.user, cursor_before=cursor
        )


def _sync_upsert(dataset: SourceDataset, rows: list[dict], now: dt.datetime, skipped: list[dict]) -> int:
    records: dict[str, DatasetRecord] = {}
    for row in rows:
        key = row.get(dataset.key_field)
        if _missing(key) or len(str(key)) > MAX_KEY_LENGTH:
            skipped.append(
                {"row": "", "field": dataset.key_field, "message": f"A row without a usable key: {row!r}"[:300]}
            )
            continue
        # One record per key (the latest read wins): a cached dataset is keyed by its subject.
        records[str(key)] = DatasetRecord(
            dataset=dataset,
            record_id=str(key),
            key=str(key),
            data=row,
            as_of=_record_as_of(dataset, row, now),
            synced_at=now,
        )
    DatasetRecord.objects.bulk_create(
        records.values(),
        update_conflicts=True,
        unique_fields=["dataset", "record_id"],
        update_fields=["key", "data", "as_of", "synced_at"],
        batch_size=500,
    )
    return len(records)


def _sync_pages(dataset: SourceDataset, sync: DatasetSync, page_size: int, now: dt.datetime) -> tuple[int, int, str]:
    """Read everything past the cursor, page by page, and upsert it. Returns (read, written, new cursor)."""
    client = client_for(dataset.connector)
    cursor_field = dataset.cursor_field or dataset.updated_at_field
    cursor = sync.cursor_before or None
    read = written = 0
    skipped: list[dict] = []
    while True:
        page = client.read_since(dataset.table, cursor_field, cursor, limit=page_size)
        page = json.loads(json.dumps(page, default=str))
        if not page:
            break
        full = len(page) >= page_size
        if full:
            # The next page starts after the last cursor value, so rows sharing it that did not fit would be
            # skipped: leave them all to the next page, or read them whole when they fill the page alone.
            last = str(page[-1][cursor_field])
            kept = [row for row in page if str(row[cursor_field]) != last]
            if kept:
                page = kept
            else:
                page = json.loads(
                    json.dumps(client.read_by_key(dataset.table, cursor_field, last, limit=MAX_TIE_ROWS), default=str)
                )
                if len(page) >= MAX_TIE_ROWS:
                    raise ServiceError(f"More than {MAX_TIE_ROWS:,} rows share the cursor value {last}")
        read += len(page)  # rows taken (a row left to the next page counts there)
        written += _sync_upsert(dataset, page, now, skipped)
        cursor = str(page[-1][cursor_field])
        if len(cursor) > 100:
            raise ServiceError(f"The cursor value of {cursor_field} is longer than 100 characters: use another field")
        if not full:
            break
    sync.row_errors = skipped[:MAX_REPORTED_ERRORS]
    return read, written, cursor or ""


def dataset_sync(*, actor: Actor, dataset: SourceDataset, trigger: str, page_size: int = SYNC_PAGE_SIZE) -> DatasetSync:
    """Refresh the cached copy of `dataset` from its source, incrementally from its cursor. The records
    and the cursor change in one transaction: a failure leaves the previous copy and cursor as they were,
    is recorded on the DatasetSync and raises an alert (resolved by the next success). One sync of a
    dataset at a time (Conflict otherwise). A user needs change_connector on the dataset's connector."""
    from .services import connector_outcome_record

    if actor.user is not None and not has_object_permission(actor.user, "change_connector", dataset.connector):
        raise PermissionDenied("You may not sync this dataset.")
    if dataset.connector.kind == Connector.Kind.FILE:
        raise ServiceError(f"{dataset.name} is refreshed by uploading a file, not by a sync", field="dataset")
    if dataset.mode != SourceDataset.Mode.CACHED:
        raise ServiceError(f"{dataset.name} is read live; only cached datasets are synced", field="dataset")
    if not (dataset.cursor_field or dataset.updated_at_field):
        raise ServiceError(f"{dataset.name} needs a cursor field (or an as-of field) to sync", field="cursor_field")
    now = clock.now()
    sync = _sync_claim(actor=actor, dataset=dataset, trigger=trigger, now=now)
    alert_key = f"dataset-sync:{dataset.pk}"
    try:
        with transaction.atomic():
            read, written, cursor = _sync_pages(dataset, sync, page_size, now)
            SourceDataset.objects.filter(pk=dataset.pk).update(sync_cursor=cursor, last_synced_at=now)
            sync.status = DatasetSync.Status.SUCCEEDED
            sync.rows_read, sync.rows_written, sync.cursor_after = read, written, cursor
            sync.finished_at = clock.now()
            sync.save()
    except Exception as exc:
        error = str(exc) if isinstance(exc, ConnectorError | ServiceError) else f"Unexpected error: {exc!r}"
        DatasetSync.objects.filter(pk=sync.pk).update(
            status=DatasetSync.Status.FAILED, finished_at=clock.now(), error=error[:5000]
        )
        if isinstance(exc, ConnectorError):
            connector_outcome_record(connector=dataset.connector, ok=False, error=error)
        alert_raise(
            key=alert_key,
            kind="dataset_sync",
            title=f"Sync of {dataset.connector.name} / {dataset.name} failed",
            detail=error,
            connector=dataset.connector,
        )
        if not isinstance(exc, ConnectorError | ServiceError):
            raise  # a bug: recorded and alerted, and still loud
        sync.refresh_from_db()
        return sync
    connector_outcome_record(connector=dataset.connector, ok=True)
    alert_resolve(key=alert_key, actor=actor, reason=f"Sync {sync.pk} succeeded")
    dataset.sync_cursor, dataset.last_synced_at = cursor, now
    return sync


# --- uploaded files --------------------------------------------------------------------------------------


def dataset_upload(*, actor: Actor, dataset: SourceDataset, uploaded_file) -> DatasetSync:
    """Replace the records of a file dataset with an uploaded CSV / JSON Lines file, all or nothing: if any
    row fails (no key, a quality rule broken), nothing is written and the DatasetSync lists the row errors
    (the first 100). Needs change_connector on the dataset's connector; the dataset's history records it."""
    if not has_object_permission(actor.user, "change_connector", dataset.connector):
        raise PermissionDenied("You may not upload data for this dataset.")
    if dataset.connector.kind != Connector.Kind.FILE:
        raise ServiceError(f"{dataset.name} is not a file dataset; its data comes from its source", field="file")
    name = getattr(uploaded_file, "name", "") or "upload"
    sync = DatasetSync.objects.create(dataset=dataset, trigger="upload", started_by=actor.user)

    def fail(error: str, row_errors: list[dict] | None = None, rows_read: int = 0) -> DatasetSync:
        sync.status, sync.error, sync.finished_at = DatasetSync.Status.FAILED, error, clock.now()
        sync.row_errors, sync.rows_read = (row_errors or [])[:MAX_REPORTED_ERRORS], rows_read
        sync.save()
        return sync

    invalid = quality_rules_validate(dataset.quality_rules)
    if invalid:
        return fail(f"The dataset's quality rules are invalid: {'; '.join(invalid)}")
    try:
        parsed = client_for(dataset.connector).parse(uploaded_file, dataset=dataset)
    except ConnectorError as exc:
        return fail(f"{name}: {exc}")
    rows_read = len(parsed.rows) + len({error["row"] for error in parsed.errors})
    if parsed.errors:
        count = len(parsed.errors)
        return fail(
            f"{name}: {count} error{'s' if count != 1 else ''} in the rows; nothing was written",
            parsed.errors,
            rows_read,
        )
    now = clock.now()
    records = [
        DatasetRecord(
            dataset=dataset,
            record_id=str(number),
            key=str(record[dataset.key_field]),
            data=record,
            as_of=_record_as_of(dataset, record, now),
            synced_at=now,
        )
        for number, record in parsed.rows
    ]
    with transaction.atomic():
        dataset = SourceDataset.objects.select_for_update().get(pk=dataset.pk)
        DatasetRecord.objects.filter(dataset=dataset).delete()
        DatasetRecord.objects.bulk_create(records, batch_size=2000)
        dataset.last_synced_at = now
        dataset._history_user = actor.history_user
        dataset._change_reason = f"File uploaded: {name}, {len(records)} rows"
        dataset.save()
        sync.status, sync.finished_at = DatasetSync.Status.SUCCEEDED, clock.now()
        sync.rows_read, sync.rows_written = rows_read, len(records)
        sync.save()
    return sync
