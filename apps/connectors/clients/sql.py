"""SQL sources and write-back tables over SQLAlchemy Core: PostgreSQL, MySQL/MariaDB, SQLite, and any
other SQLAlchemy URL whose driver is installed.

Tables and columns come from configuration, never from end users; they are still checked against the
reflected table (an unknown name is a clear error, not an SQL error) and quoted by SQLAlchemy. Values are
always bound parameters. Rows come back as plain JSON values (datetimes as ISO strings, decimals as
floats), the same shape every other client returns, so snapshots, caches and hashes treat them alike.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from urllib.parse import quote as url_quote
from urllib.parse import unquote as url_unquote

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url

from apps.core import clock

from .base import Client, FieldInfo, WriteRequest
from .errors import ConnectorError

CONNECT_TIMEOUT_S = 5
MAX_ENGINES = 32  # one per distinct URL; the oldest is disposed when a new one would exceed this
# Reads reuse a table's reflection for a minute: reflecting costs more than the read itself (about ten
# catalogue queries), and a reused Table also reuses its compiled statements. A failed read forgets it.
TABLE_CACHE_SECONDS = 60.0
MAX_TABLES = 256
UPSERT_CHUNK = 500  # rows per statement: SQLite allows 32766 bound values, MySQL's packet size is finite
DELIVERY_ID_COLUMN = "doorstep_delivery_id"

# A URL without a driver means the drivers we ship (SQLAlchemy's defaults, psycopg2 and mysqlclient, are absent).
DEFAULT_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
SYSTEM_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB", "sqlite": "SQLite"}

COLUMN_TYPES = {
    "text": sa.Text,
    "integer": sa.BigInteger,
    "float": sa.Double,
    "timestamp": lambda: sa.DateTime(timezone=True),
    "json": sa.JSON,
    "boolean": sa.Boolean,
}

_engines: OrderedDict[str, Engine] = OrderedDict()
_engines_lock = threading.Lock()
_tables: OrderedDict[tuple[str, str], tuple[float, sa.Table]] = OrderedDict()
_tables_lock = threading.Lock()


# --- URLs and engines ------------------------------------------------------------------------------------


def _parse_url(raw: str) -> URL:
    if not raw:
        raise ConnectorError("No database URL in the credentials", permanent=True)
    try:
        url = make_url(raw.strip())
    except sa_exc.ArgumentError:
        raise ConnectorError(
            "Not a database URL: use postgresql://user:password@host:5432/db, "
            "mysql+pymysql://user:password@host:3306/db or sqlite:////absolute/path.db",
            permanent=True,
        ) from None
    if url.drivername in DEFAULT_DRIVERS:
        url = url.set(drivername=DEFAULT_DRIVERS[url.drivername])
    try:
        url.get_dialect()
    except sa_exc.NoSuchModuleError:
        raise ConnectorError(
            f"Unsupported database URL scheme {url.drivername!r}: use postgresql://, mysql+pymysql:// or sqlite:///",
            permanent=True,
        ) from None
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        if not url.database.startswith("file:"):
            # mode=rw: a mistyped path fails instead of creating an empty database where the source should be.
            url = url.set(database="file:" + url_quote(url.database), query={**url.query, "mode": "rw", "uri": "true"})
    return url


def _connect_args(url: URL) -> dict:
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite":
        return {"timeout": CONNECT_TIMEOUT_S}
    if driver in ("psycopg", "psycopg2", "pymysql"):
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def _engine(url: URL) -> Engine:
    key = url.render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is not None:
            _engines.move_to_end(key)
            return engine
        options = {"pool_pre_ping": True, "connect_args": _connect_args(url)}
        if url.get_backend_name() == "sqlite":
            # Opening a file is cheap; pooled handles would keep a replaced or deleted file open.
            options["poolclass"] = sa.NullPool
        else:
            options.update(pool_size=2, max_overflow=4, pool_recycle=1800)
        try:
            engine = sa.create_engine(url, **options)
        except ImportError as exc:
            raise ConnectorError(
                f"The driver for {url.drivername} is not installed ({exc.name})", permanent=True
            ) from None
        _engines[key] = engine
        while len(_engines) > MAX_ENGINES:
            _engines.popitem(last=False)[1].dispose()
        return engine


# --- errors ----------------------------------------------------------------------------------------------

_CONNECT_FAILURES = (
    # (pattern in the driver's message, message for the integrator, permanent)
    (
        r"password authentication failed|access denied|role \".*\" does not exist",
        "{where} refused the user name or password",
        True,
    ),
    (r"database \".*\" does not exist|unknown database", "Database {database!r} does not exist on {where}", True),
    (
        r"could not translate host name|failed to resolve host|name or service not known|nodename nor servname"
        r"|temporary failure in name resolution|getaddrinfo failed",
        "Cannot resolve the host name {host!r}",
        True,
    ),
    (r"connection refused|errno 111", "Nothing answers at {address} (connection refused)", False),
    (r"timed? ?out", "No answer from {address} within {timeout} s", False),
    (r"unable to open database file", "Cannot open the SQLite database file {database} (missing or unreadable)", True),
)


def _driver_message(error: BaseException, password: str | None) -> str:
    orig = getattr(error, "orig", None) or error
    text = " ".join(str(arg) for arg in orig.args) if getattr(orig, "args", None) else str(orig)
    text = " ".join(text.split())
    if password and len(password) >= 3:  # shorter ones would garble the message; drivers never echo them anyway
        text = text.replace(password, "***")
    return text[:300]


# --- values ----------------------------------------------------------------------------------------------


def plain(value):
    """A database value as JSON: what snapshots, cached copies and hashes hold."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def _parse_datetime(value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        moment = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _python_type(column: sa.Column):
    try:
        return column.type.python_type
    except NotImplementedError:  # raw (NullType) columns: the value is compared as given
        return None


def _coerce(column: sa.Column, value):
    """`value` (a string from configuration or a cursor) as the column's Python type. ValueError when it
    cannot be one: then no row can equal it."""
    kind = _python_type(column)
    if value is None or kind is None or isinstance(value, kind):
        return value
    if kind is dt.datetime:
        return _parse_datetime(value)
    if kind is dt.date:
        return dt.date.fromisoformat(str(value)[:10])
    if kind in (int, float, decimal.Decimal):
        try:
            return kind(str(value).strip())
        except (decimal.InvalidOperation, TypeError) as exc:
            raise ValueError(str(exc)) from exc
    if kind is str:
        return str(value)
    return value


def _raw_sqlite_dates(inspector, table, column_info):
    """SQLite stores dates as whatever text it was given: read them as stored, so one odd value cannot
    fail the whole read (SQLAlchemy's DATETIME type would try to parse each one)."""
    if isinstance(column_info["type"], sa.Date | sa.DateTime | sa.Time):
        column_info["type"] = sa.types.NullType()


# --- the client ------------------------------------------------------------------------------------------


class SqlClient(Client):
    system = "The database"

    def __init__(self, connector):
        super().__init__(connector)
        self.url = _parse_url(self.secrets.get("url", ""))

    @classmethod
    def from_url(cls, url: str) -> SqlClient:
        """A client for callers that hold only a URL (scripts, the BI export of a raw URL)."""
        client = cls.__new__(cls)
        client.connector, client.config, client.secrets = None, {}, {"url": url}
        client.url = _parse_url(url)
        return client

    # connections and errors

    def _address(self) -> str:
        port = self.url.port or DEFAULT_PORTS.get(self.url.get_backend_name())
        return f"{self.url.host or 'localhost'}" + (f":{port}" if port else "")

    def _where(self) -> str:
        if self.url.get_backend_name() == "sqlite":
            return "the SQLite database"
        return f"the database server at {self._address()}"

    def _error(self, error: BaseException, doing: str) -> ConnectorError:
        message = _driver_message(error, self.url.password)
        lowered = message.lower()
        if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError) or not isinstance(
            error, sa_exc.DBAPIError
        ):
            for pattern, template, permanent in _CONNECT_FAILURES:
                if re.search(pattern, lowered):
                    database = self.url.database or ""
                    if database.startswith("file:"):
                        database = url_unquote(database.removeprefix("file:"))
                    text = template.format(
                        where=self._where(),
                        database=database,
                        host=self.url.host or "localhost",
                        address=self._address(),
                        timeout=CONNECT_TIMEOUT_S,
                    )
                    return ConnectorError(f"{text[0].upper()}{text[1:]}. ({message})", permanent=permanent)
        return ConnectorError(f"{doing} failed: {message}", permanent=isinstance(error, sa_exc.ProgrammingError))

    def _connect(self) -> Connection:
        try:
            return _engine(self.url).connect()
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, "Connecting") from exc

    def _begin(self):
        try:
            return _engine(self.url).begin()
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, "Connecting") from exc

    def _table(self, conn: Connection, name: str, *, cached_with: tuple[str, ...] = ()) -> sa.Table:
        """The reflected table or view; `schema.table` names a table outside the default schema. Reads name
        the columns they need in `cached_with` and may reuse a reflection of the last TABLE_CACHE_SECONDS
        that has them (a column added since is found by reflecting again)."""
        key = (self.url.render_as_string(hide_password=False), name)
        if cached_with:
            with _tables_lock:
                hit = _tables.get(key)
            if hit is not None and time.monotonic() - hit[0] < TABLE_CACHE_SECONDS:
                if all(column in hit[1].c for column in cached_with):
                    return hit[1]
        schema, _, table_name = name.rpartition(".") if "." in name else (None, "", name)
        listeners = [("column_reflect", _raw_sqlite_dates)] if conn.dialect.name == "sqlite" else []
        try:
            table = sa.Table(
                table_name,
                sa.MetaData(),
                schema=schema or None,
                autoload_with=conn,
                listeners=listeners,
                resolve_fks=False,
            )
        except sa_exc.NoSuchTableError:
            raise ConnectorError(f"No table or view {name!r} in {self._where()}", permanent=True) from None
        with _tables_lock:
            _tables[key] = (time.monotonic(), table)
            _tables.move_to_end(key)
            while len(_tables) > MAX_TABLES:
                _tables.popitem(last=False)
        return table

    def _forget(self, name: str) -> None:
        with _tables_lock:
            _tables.pop((self.url.render_as_string(hide_password=False), name), None)

    @staticmethod
    def _column(table: sa.Table, name: str, role: str = "column") -> sa.Column:
        if name not in table.c:
            raise ConnectorError(
                f"The {role} {name!r} is not a column of {table.name} (columns: {', '.join(table.c.keys())})",
                permanent=True,
            )
        return table.c[name]

    @staticmethod
    def _rows(result) -> list[dict]:
        return [{key: plain(value) for key, value in row._mapping.items()} for row in result]

    # the source side

    def test(self) -> str:
        try:
            with self._connect() as conn:
                dialect = conn.dialect
                inspector = sa.inspect(conn)
                tables = sorted(inspector.get_table_names()) + sorted(inspector.get_view_names())
                if dialect.name == "sqlite":
                    version = sqlite3.sqlite_version
                else:
                    version = ".".join(str(part) for part in (dialect.server_version_info or ())[:3]) or "?"
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, "Listing tables") from exc
        system = "MariaDB" if getattr(dialect, "is_mariadb", False) else SYSTEM_NAMES.get(dialect.name, dialect.name)
        shown = ", ".join(tables[:8]) + ("…" if len(tables) > 8 else "")
        count = f"{len(tables)} table{'s' if len(tables) != 1 else ''}"
        return f"Connected to {system} {version}; {count}" + (f": {shown}" if tables else "")

    def list_objects(self) -> list[str]:
        try:
            with self._connect() as conn:
                inspector = sa.inspect(conn)
                return sorted(inspector.get_table_names()) + sorted(inspector.get_view_names())
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, "Listing tables") from exc

    def list_fields(self, obj: str) -> list[FieldInfo]:
        try:
            with self._connect() as conn:
                table = self._table(conn, obj)
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, f"Reading the columns of {obj}") from exc
        return [FieldInfo(column.name, str(column.type) if _python_type(column) else "") for column in table.c]

    def read_by_key(self, obj: str, key_field: str, key: str, *, limit: int = 50) -> list[dict]:
        try:
            with self._connect() as conn:
                table = self._table(conn, obj, cached_with=(key_field,))
                column = self._column(table, key_field, "key field")
                try:
                    value = _coerce(column, key)
                except ValueError:
                    return []  # e.g. "ACC-1" against an integer key: no row can match
                # Primary-key order, so a re-read returns the same records in the same order (and the same hash).
                query = sa.select(table).where(column == value).order_by(*table.primary_key.columns).limit(int(limit))
                return self._rows(conn.execute(query))
        except sa_exc.SQLAlchemyError as exc:
            self._forget(obj)  # the table may have changed under the cached reflection
            raise self._error(exc, f"Reading {obj}") from exc

    def read_since(self, obj: str, cursor_field: str, cursor: str | None, *, limit: int = 1000) -> list[dict]:
        """Rows with a cursor value above `cursor`, ascending. Rows without a cursor value are never read:
        an incremental reader could not tell when they changed."""
        try:
            with self._connect() as conn:
                table = self._table(conn, obj, cached_with=(cursor_field,))
                column = self._column(table, cursor_field, "cursor field")
                query = sa.select(table).where(column.is_not(None))
                if cursor not in (None, ""):
                    try:
                        query = query.where(column > _coerce(column, cursor))
                    except ValueError:
                        raise ConnectorError(
                            f"The sync cursor {cursor!r} does not fit the column {cursor_field} of {obj}",
                            permanent=True,
                        ) from None
                query = query.order_by(column, *table.primary_key.columns).limit(int(limit))
                return self._rows(conn.execute(query))
        except sa_exc.SQLAlchemyError as exc:
            self._forget(obj)  # the table may have changed under the cached reflection
            raise self._error(exc, f"Reading {obj}") from exc

    # the write side

    def write(self, request: WriteRequest) -> str:
        """Insert the output once per delivery: a retried delivery finds its row by the UNIQUE
        doorstep_delivery_id column and returns the same id (the row's primary key, or the delivery id)."""
        target = request.target
        table_name = target.get("table") or ""
        if not table_name:
            raise ConnectorError("The destination names no table", permanent=True)
        try:
            with self._begin() as conn:
                table = self._table(conn, table_name)
                values = {
                    self._column(table, target.get("subject_column", "subject_key"), "subject column").name: (
                        request.subject_key
                    ),
                    self._column(table, target.get("text_column", "body"), "text column").name: request.text,
                    DELIVERY_ID_COLUMN: request.idempotency_key,
                }
                if target.get("title_column"):
                    values[self._column(table, target["title_column"], "title column").name] = request.title
                delivery_column = self._column(table, DELIVERY_ID_COLUMN, "delivery id column")
                if not self._is_unique(conn, table, DELIVERY_ID_COLUMN):
                    raise ConnectorError(
                        f"The write-back table {table_name} needs a UNIQUE {DELIVERY_ID_COLUMN} column, "
                        "so that a retried delivery never writes twice",
                        permanent=True,
                    )
                # Who wrote it, readable in the system of record: "doorstep:<use case>".
                author = f"doorstep:{request.payload['use_case']}" if request.payload.get("use_case") else "doorstep"
                for name, value in (("created_by", author), ("created_at", clock.now())):
                    if name in table.c:  # optional bookkeeping columns: written when the table has them
                        values[name] = self._for_column(conn, table.c[name], value)
                self._insert_once(conn, table, values, delivery_column)
                pk = list(table.primary_key.columns)
                if len(pk) != 1:
                    return request.idempotency_key
                found = conn.execute(sa.select(pk[0]).where(delivery_column == request.idempotency_key)).scalar()
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, f"Writing to {table_name}") from exc
        if found is None:
            raise ConnectorError(f"The row for {request.idempotency_key} was not written to {table_name}")
        return str(found)

    @staticmethod
    def _is_unique(conn: Connection, table: sa.Table, column: str) -> bool:
        if [c.name for c in table.primary_key.columns] == [column]:
            return True
        if conn.dialect.name == "sqlite":
            # SQLAlchemy finds SQLite's inline UNIQUE only after simple types (not "VARCHAR(50) UNIQUE"); the
            # index list holds every unique constraint, inline or not.
            quoted = conn.dialect.identifier_preparer.quote(table.name)
            for index in conn.exec_driver_sql(f"PRAGMA index_list({quoted})").mappings():
                if index["unique"] and not index["partial"]:
                    name = conn.dialect.identifier_preparer.quote(index["name"])
                    if [r["name"] for r in conn.exec_driver_sql(f"PRAGMA index_info({name})").mappings()] == [column]:
                        return True
            return False
        inspector = sa.inspect(conn)
        uniques = [c["column_names"] for c in inspector.get_unique_constraints(table.name, schema=table.schema)]
        uniques += [i["column_names"] for i in inspector.get_indexes(table.name, schema=table.schema) if i["unique"]]
        return [column] in uniques

    @staticmethod
    def _for_column(conn: Connection, column: sa.Column, value):
        if not isinstance(value, dt.datetime):
            return value
        if _python_type(column) is not dt.datetime:
            return value.isoformat()  # a text column (SQLite dates are read raw, so they count as text)
        if conn.dialect.name in ("mysql", "mariadb", "sqlite"):
            return value.astimezone(dt.UTC).replace(tzinfo=None)  # no time zone in the column: store UTC
        return value

    @staticmethod
    def _insert_once(conn: Connection, table: sa.Table, values: dict, unique: sa.Column) -> None:
        name = conn.dialect.name
        if name == "postgresql":
            conn.execute(postgresql.insert(table).values(values).on_conflict_do_nothing(index_elements=[unique]))
        elif name == "sqlite":
            conn.execute(sqlite.insert(table).values(values).on_conflict_do_nothing(index_elements=[unique]))
        elif name in ("mysql", "mariadb"):
            # A no-op update on the duplicate rather than INSERT IGNORE, which would also turn real errors
            # (a NULL in a NOT NULL column, a truncated value) into warnings and write a mangled row.
            statement = mysql.insert(table).values(values)
            conn.execute(statement.on_duplicate_key_update({unique.name: statement.inserted[unique.name]}))
        elif conn.execute(sa.select(sa.literal(1)).where(unique == values[unique.name])).first() is None:
            conn.execute(sa.insert(table).values(values))

    def upsert_rows(self, table: str, rows: list[dict], *, key_column: str, column_types: dict[str, str]) -> int:
        """Create `table` if it is missing (columns from `column_types`, `key_column` its primary key), then
        insert or update every row by its key, all in one transaction. Returns the number of rows written."""
        unknown = {kind for kind in column_types.values() if kind not in COLUMN_TYPES}
        if unknown:
            raise ConnectorError(f"Unknown column type(s) {', '.join(sorted(unknown))}: use {', '.join(COLUMN_TYPES)}")
        if key_column not in column_types:
            raise ConnectorError(f"The key column {key_column!r} is not among the columns", permanent=True)
        columns = [
            # A primary key must have a bounded length on MySQL (TEXT cannot be one).
            sa.Column(
                name,
                sa.String(255) if name == key_column and kind == "text" else COLUMN_TYPES[kind](),
                primary_key=name == key_column,
                autoincrement=False,  # the caller's keys, never generated ones
            )
            for name, kind in column_types.items()
        ]
        schema, _, name = table.rpartition(".") if "." in table else (None, "", table)
        target = sa.Table(name, sa.MetaData(), *columns, schema=schema or None)
        try:
            with self._begin() as conn:
                if sa.inspect(conn).has_table(name, schema=schema or None):
                    existing = set(self._table(conn, table).c.keys())
                    missing = [column for column in column_types if column not in existing]
                    if missing:
                        raise ConnectorError(
                            f"The table {table} has no column(s) {', '.join(missing)}: add them or drop the table "
                            "so it is created again",
                            permanent=True,
                        )
                else:
                    target.create(conn)
                prepared = [self._prepare_row(conn, target, row) for row in rows]
                for start in range(0, len(prepared), UPSERT_CHUNK):
                    conn.execute(self._upsert(conn, target, key_column), prepared[start : start + UPSERT_CHUNK])
        except sa_exc.SQLAlchemyError as exc:
            raise self._error(exc, f"Writing to {table}") from exc
        return len(rows)

    @staticmethod
    def _prepare_row(conn: Connection, target: sa.Table, row: dict) -> dict:
        """Every column of the table (a missing value is NULL: one statement takes uniform rows)."""
        prepared = {}
        for column in target.c:
            value = row.get(column.name)
            if value is not None and _python_type(column) is dt.datetime:
                value = SqlClient._for_column(conn, column, _parse_datetime(value))
            prepared[column.name] = value
        return prepared

    @staticmethod
    def _upsert(conn: Connection, table: sa.Table, key_column: str):
        others = [column.name for column in table.c if column.name != key_column]
        name = conn.dialect.name
        if name in ("postgresql", "sqlite"):
            statement = (postgresql if name == "postgresql" else sqlite).insert(table)
            if not others:
                return statement.on_conflict_do_nothing(index_elements=[key_column])
            return statement.on_conflict_do_update(
                index_elements=[key_column], set_={column: statement.excluded[column] for column in others}
            )
        if name in ("mysql", "mariadb"):
            statement = mysql.insert(table)
            update = others or [key_column]
            return statement.on_duplicate_key_update({column: statement.inserted[column] for column in update})
        raise ConnectorError(f"Upserting rows is not supported on {name}", permanent=True)
