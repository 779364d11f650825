"""The SQL client against real databases: a SQLite file, and throw-away databases on the local PostgreSQL
and MariaDB servers. A server that does not answer skips its tests, unless DOORSTEP_REQUIRE_SERVICES=1
(CI), where it fails them."""

import datetime as dt
import json
import os
import secrets
import socket
import sqlite3

import pytest
import sqlalchemy as sa

from apps.connectors.clients.base import WriteRequest
from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.sql import SqlClient
from apps.connectors.models import Connector

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MYSQL_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/test"
T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


def _connector(url: str) -> Connector:
    connector = Connector(name="Source", kind=Connector.Kind.SQL)
    connector.set_secrets({"url": url})
    return connector


def _server_or_skip(admin_url: str, what: str) -> sa.Engine:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        if os.environ.get("DOORSTEP_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{what} is required (DOORSTEP_REQUIRE_SERVICES=1) but does not answer: {exc.orig}")
        pytest.skip(f"{what} does not answer at {admin_url}")
    return engine


@pytest.fixture
def sqlite_url(tmp_path):
    path = tmp_path / "source.sqlite3"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_url():
    admin = _server_or_skip(PG_ADMIN, "PostgreSQL")
    name = f"doorstep_src_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def mariadb_url():
    admin = _server_or_skip(MYSQL_ADMIN, "MariaDB")
    name = f"doorstep_src_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def source_url(request):
    return request.getfixturevalue(
        {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mariadb": "mariadb_url"}[request.param]
    )


def _setup(url: str, *statements: str, rows: dict[str, list[dict]] | None = None) -> None:
    """Build the source the way its owners would: plain DDL and inserts, outside the client under test."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
        for table, values in (rows or {}).items():
            conn.execute(sa.Table(table, sa.MetaData(), autoload_with=conn).insert(), values)
    engine.dispose()


def _accounts(url: str) -> None:
    timestamp = "TIMESTAMP WITH TIME ZONE" if url.startswith("postgresql") else "DATETIME"
    _setup(
        url,
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, account_id VARCHAR(20) NOT NULL, name VARCHAR(100), "
        f"arr NUMERIC(12, 2), updated_at {timestamp})",
        "CREATE VIEW big_accounts AS SELECT account_id, arr FROM accounts WHERE arr > 1000",
        rows={
            "accounts": [
                {
                    "id": i,
                    "account_id": f"ACC-{i}",
                    "name": f"Account {i}",
                    "arr": 500.5 * i,
                    "updated_at": T0 + dt.timedelta(hours=i),
                }
                for i in range(1, 6)
            ]
        },
    )


def _write_back_table(url: str, *, unique: bool = True) -> None:
    autoincrement = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "SERIAL PRIMARY KEY"}
    pk = autoincrement.get(url.split(":")[0], "INTEGER PRIMARY KEY AUTO_INCREMENT")
    _setup(
        url,
        f"CREATE TABLE crm_tasks (task_id {pk}, account_id VARCHAR(20) NOT NULL, subject VARCHAR(200) NOT NULL, "
        "body TEXT NOT NULL, created_by VARCHAR(50) NOT NULL, "
        f"doorstep_delivery_id VARCHAR(50) NOT NULL{' UNIQUE' if unique else ''}, created_at VARCHAR(40) NOT NULL)",
    )


def test_test_lists_the_server_and_its_tables(source_url):
    _accounts(source_url)
    message = SqlClient(_connector(source_url)).test()
    system = {"sqlite": "SQLite 3.", "postgresql": "PostgreSQL 1", "mysql+pymysql": "MariaDB 1"}[
        source_url.split(":")[0]
    ]
    assert message.startswith(f"Connected to {system}"), message
    assert "2 tables: accounts, big_accounts" in message


def test_lists_tables_views_and_columns(source_url):
    _accounts(source_url)
    client = SqlClient(_connector(source_url))
    assert client.list_objects() == ["accounts", "big_accounts"]
    fields = {field.name: field.type for field in client.list_fields("accounts")}
    assert list(fields) == ["id", "account_id", "name", "arr", "updated_at"]
    assert "INT" in fields["id"].upper() and "CHAR" in fields["account_id"].upper()
    with pytest.raises(ConnectorError, match="No table or view 'nope'"):
        client.list_fields("nope")


def test_reads_a_subject_by_key_as_plain_values(source_url):
    _accounts(source_url)
    client = SqlClient(_connector(source_url))
    (record,) = client.read_by_key("accounts", "account_id", "ACC-3")
    assert record["id"] == 3 and record["name"] == "Account 3" and record["arr"] == pytest.approx(1501.5)
    # Times come back as ISO text, whatever the driver returned, and mean the same moment.
    as_of = dt.datetime.fromisoformat(record["updated_at"].replace(" ", "T"))
    assert (as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.UTC)) == T0 + dt.timedelta(hours=3)
    assert client.read_by_key("big_accounts", "account_id", "ACC-3") == [{"account_id": "ACC-3", "arr": 1501.5}]
    assert client.read_by_key("accounts", "account_id", "ACC-99") == []
    # A key is a bound value, never SQL; a non-number against an integer column matches nothing.
    assert client.read_by_key("accounts", "account_id", "x' OR '1'='1") == []
    assert client.read_by_key("accounts", "id", "ACC-3") == []
    assert [r["account_id"] for r in client.read_by_key("accounts", "id", "4")] == ["ACC-4"]


def test_reads_incrementally_by_cursor(source_url):
    _accounts(source_url)
    client = SqlClient(_connector(source_url))
    first = client.read_since("accounts", "updated_at", None, limit=2)
    assert [r["account_id"] for r in first] == ["ACC-1", "ACC-2"]
    rest = client.read_since("accounts", "updated_at", first[-1]["updated_at"], limit=10)
    assert [r["account_id"] for r in rest] == ["ACC-3", "ACC-4", "ACC-5"]
    assert client.read_since("accounts", "id", "4") == [client.read_by_key("accounts", "id", "5")[0]]
    assert client.read_since("accounts", "updated_at", rest[-1]["updated_at"]) == []


def test_config_names_are_checked_against_the_table(sqlite_url):
    _accounts(sqlite_url)
    client = SqlClient(_connector(sqlite_url))
    with pytest.raises(ConnectorError, match="The key field 'owner' is not a column of accounts") as caught:
        client.read_by_key("accounts", "owner", "x")
    assert "columns: id, account_id, name, arr, updated_at" in str(caught.value) and caught.value.permanent
    with pytest.raises(ConnectorError, match="cursor field 'changed' is not a column"):
        client.read_since("accounts", "changed", None)
    with pytest.raises(ConnectorError, match="No table or view 'accounts; DROP TABLE accounts'"):
        client.read_by_key("accounts; DROP TABLE accounts", "id", "1")
    assert len(client.read_since("accounts", "id", None)) == 5


def test_a_changed_table_is_read_as_it_is_now(sqlite_url):
    _accounts(sqlite_url)
    client = SqlClient(_connector(sqlite_url))
    assert "owner" not in client.read_by_key("accounts", "account_id", "ACC-1")[0]
    _setup(sqlite_url, "ALTER TABLE accounts ADD COLUMN owner VARCHAR(50)", "UPDATE accounts SET owner = 'ana'")
    assert [r["account_id"] for r in client.read_by_key("accounts", "owner", "ana")] == [
        f"ACC-{i}" for i in range(1, 6)
    ]
    _setup(
        sqlite_url,
        "DROP VIEW big_accounts",
        "DROP TABLE accounts",
        "CREATE TABLE accounts (account_id VARCHAR(20) PRIMARY KEY, tier TEXT)",
        "INSERT INTO accounts VALUES ('ACC-1', 'gold')",
    )
    # The reflection reused for speed names a dropped column once; the failure forgets it.
    with pytest.raises(ConnectorError, match="Reading accounts failed: no such column"):
        client.read_by_key("accounts", "account_id", "ACC-1")
    assert client.read_by_key("accounts", "account_id", "ACC-1") == [{"account_id": "ACC-1", "tier": "gold"}]


def test_write_back_inserts_once_per_delivery(source_url):
    _write_back_table(source_url)
    client = SqlClient(_connector(source_url))
    request = WriteRequest(
        idempotency_key="dlv-41",
        subject_key="ACC-3",
        title="Churn risk: ACC-3",
        text="Call the sponsor this week.",
        target={"table": "crm_tasks", "subject_column": "account_id", "text_column": "body", "title_column": "subject"},
    )
    first = client.write(request)
    assert client.write(request) == first  # the retried delivery finds its row
    (row,) = client.read_by_key("crm_tasks", "doorstep_delivery_id", "dlv-41")
    assert str(row["task_id"]) == first
    assert row["account_id"] == "ACC-3" and row["body"] == "Call the sponsor this week."
    assert row["subject"] == "Churn risk: ACC-3" and row["created_by"] == "doorstep" and row["created_at"]
    other = client.write(WriteRequest("dlv-42", "ACC-4", "t", "Other", {**request.target, "title_column": "subject"}))
    assert other != first and len(client.read_since("crm_tasks", "task_id", None)) == 2


def test_write_back_refuses_a_table_that_cannot_tell_a_retry(sqlite_url):
    _write_back_table(sqlite_url, unique=False)
    client = SqlClient(_connector(sqlite_url))
    request = WriteRequest("dlv-1", "ACC-1", "t", "x", {"table": "crm_tasks", "subject_column": "account_id"})
    with pytest.raises(ConnectorError, match="needs a UNIQUE doorstep_delivery_id column"):
        client.write(request)
    mistyped = {"table": "crm_tasks", "subject_column": "account_id", "text_column": "note"}
    with pytest.raises(ConnectorError, match="text column 'note' is not a column of crm_tasks"):
        client.write(WriteRequest("dlv-1", "ACC-1", "t", "x", mistyped))
    assert client.read_since("crm_tasks", "task_id", None) == []


def test_upsert_rows_creates_the_table_then_updates_by_key(source_url):
    client = SqlClient(_connector(source_url))
    types = {"recommendation_id": "text", "score": "float", "seats": "integer", "approved_at": "timestamp",
             "detail": "json", "accepted": "boolean"}  # fmt: skip
    rows = [
        {"recommendation_id": "r1", "score": 0.25, "seats": 10, "approved_at": "2026-11-20T09:00:00+01:00",
         "detail": {"why": "low usage"}, "accepted": True},
        {"recommendation_id": "r2", "score": 0.5, "seats": 20, "approved_at": T0, "detail": None, "accepted": False},
    ]  # fmt: skip
    assert client.upsert_rows("doorstep_outputs", rows, key_column="recommendation_id", column_types=types) == 2
    changed = [{**rows[1], "score": 0.75}, {"recommendation_id": "r3", "score": 1.0}]
    assert client.upsert_rows("doorstep_outputs", changed, key_column="recommendation_id", column_types=types) == 2
    table = {r["recommendation_id"]: r for r in client.read_since("doorstep_outputs", "recommendation_id", None)}
    assert sorted(table) == ["r1", "r2", "r3"]
    assert table["r2"]["score"] == 0.75 and table["r3"]["seats"] is None
    assert table["r1"]["seats"] == 10 and bool(table["r1"]["accepted"]) is True
    detail = table["r1"]["detail"]
    assert (detail if isinstance(detail, dict) else json.loads(detail)) == {"why": "low usage"}
    approved = dt.datetime.fromisoformat(table["r1"]["approved_at"].replace(" ", "T"))
    assert (approved if approved.tzinfo else approved.replace(tzinfo=dt.UTC)) == T0  # 09:00+01:00 is 08:00 UTC


def test_upsert_rows_reports_a_table_of_another_shape(sqlite_url):
    _accounts(sqlite_url)
    client = SqlClient(_connector(sqlite_url))
    with pytest.raises(ConnectorError, match="The table accounts has no column"):
        client.upsert_rows(
            "accounts", [{"id": 1, "score": 1.0}], key_column="id", column_types={"id": "integer", "score": "float"}
        )
    with pytest.raises(ConnectorError, match="Unknown column type"):
        client.upsert_rows("new_table", [], key_column="id", column_types={"id": "uuid"})
    assert len(client.read_since("accounts", "id", None)) == 5


def test_from_url_serves_callers_without_a_connector(sqlite_url):
    _accounts(sqlite_url)
    assert SqlClient.from_url(sqlite_url).read_by_key("accounts", "account_id", "ACC-1")[0]["id"] == 1


# --- bad configurations: a clear message, never a traceback --------------------------------------------


def _error(url: str) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        SqlClient(_connector(url)).test()
    return caught.value


def test_wrong_password_names_the_server_and_hides_the_password(mariadb_url):
    error = _error(mariadb_url.replace("root@", "root:s3cret-guess@"))
    assert str(error).startswith("The database server at 127.0.0.1:3306 refused the user name or password")
    assert "s3cret-guess" not in str(error) and error.permanent


def test_unknown_database(postgres_url):
    error = _error(postgres_url + "_missing")
    assert "Database 'doorstep_src_" in str(error) and "does not exist on the database server at 127.0.0.1:5432" in str(
        error
    )


def test_unknown_host():
    error = _error("postgresql://postgres:pw@nohost.invalid:5432/db")
    assert str(error).startswith("Cannot resolve the host name 'nohost.invalid'")


def test_closed_port():
    with socket.socket() as probe:  # a port nobody listens on: bound, then released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = _error(f"mysql+pymysql://root@127.0.0.1:{port}/db")
    assert str(error).startswith(f"Nothing answers at 127.0.0.1:{port} (connection refused)") and not error.permanent


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://files.example/db", "Unsupported database URL scheme 'ftp'"),
        ("not a url", "Not a database URL"),
        ("", "No database URL in the credentials"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(ConnectorError, match=message):
        SqlClient(_connector(url))


def test_a_missing_sqlite_file_is_not_created(tmp_path):
    path = tmp_path / "typo.sqlite3"
    error = _error(f"sqlite:///{path}")
    assert str(error).startswith(f"Cannot open the SQLite database file {path}")
    assert not path.exists()
