"""A small SQL client over the real drivers (sqlite3, psycopg) for sources and write-back tables.

Identifiers come from configuration, never from callers, and are still checked and quoted.
"""

import re
import sqlite3
from contextlib import closing
from urllib.parse import urlparse

import psycopg

from .errors import ConnectorError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def quote(identifier: str) -> str:
    if not _IDENTIFIER.match(identifier or ""):
        raise ConnectorError(f"Invalid SQL identifier: {identifier!r}")
    return f'"{identifier}"'


class SqlClient:
    def __init__(self, url: str, *, timeout: float = 5.0):
        self.url = url
        self.timeout = timeout
        parsed = urlparse(url)
        if parsed.scheme == "sqlite":
            self.dialect = "sqlite"
            # sqlite:////abs/path and sqlite:///abs/path both mean /abs/path.
            self.path = "/" + (parsed.netloc + parsed.path).lstrip("/")
        elif parsed.scheme in ("postgres", "postgresql"):
            self.dialect = "postgresql"
        else:
            raise ConnectorError(f"Unsupported database URL scheme {parsed.scheme!r}: use sqlite:// or postgresql://")

    def _connect(self):
        try:
            if self.dialect == "sqlite":
                # mode=rw: never create an empty database where the source should be.
                conn = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True, timeout=self.timeout)
                conn.row_factory = sqlite3.Row
                return conn
            return psycopg.connect(
                self.url.replace("postgres://", "postgresql://", 1),
                connect_timeout=max(1, int(self.timeout)),
                row_factory=psycopg.rows.dict_row,
            )
        except (sqlite3.Error, psycopg.Error) as exc:
            raise ConnectorError(f"Cannot connect: {exc}") from exc

    def _param(self) -> str:
        return "?" if self.dialect == "sqlite" else "%s"

    def _execute(self, sql: str, params: tuple = (), *, commit: bool = False) -> list[dict]:
        with closing(self._connect()) as conn:
            try:
                cursor = conn.cursor()
                cursor.execute(sql, params)
                rows = [dict(row) for row in cursor.fetchall()] if cursor.description else []
                if commit:
                    conn.commit()
                return rows
            except (sqlite3.Error, psycopg.Error) as exc:
                raise ConnectorError(f"Query failed: {exc}") from exc

    def test(self) -> None:
        self._execute("SELECT 1")

    def list_tables(self) -> list[str]:
        if self.dialect == "sqlite":
            rows = self._execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        else:
            rows = self._execute(
                "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
            )
        return [row["name"] for row in rows if not row["name"].startswith("sqlite_")]

    def fetch_by_key(self, table: str, key_field: str, key: str, *, limit: int = 50) -> list[dict]:
        sql = f"SELECT * FROM {quote(table)} WHERE {quote(key_field)} = {self._param()} LIMIT {int(limit)}"
        return self._execute(sql, (key,))

    def insert_once(self, table: str, row: dict, *, unique_column: str) -> str:
        """Insert `row` unless a row with the same `unique_column` value exists; return the row's id either way."""
        columns = list(row)
        placeholders = ", ".join(self._param() for _ in columns)
        column_sql = ", ".join(quote(c) for c in columns)
        insert = (
            f"INSERT INTO {quote(table)} ({column_sql}) VALUES ({placeholders}) "
            f"ON CONFLICT ({quote(unique_column)}) DO NOTHING"
        )
        rowid = "rowid" if self.dialect == "sqlite" else "ctid"
        select = f"SELECT {rowid} AS id FROM {quote(table)} WHERE {quote(unique_column)} = {self._param()}"
        with closing(self._connect()) as conn:
            try:
                cursor = conn.cursor()
                cursor.execute(insert, tuple(row[c] for c in columns))
                cursor.execute(select, (row[unique_column],))
                found = cursor.fetchone()
                conn.commit()
            except (sqlite3.Error, psycopg.Error) as exc:
                raise ConnectorError(f"Write-back failed: {exc}") from exc
        return str(dict(found)["id"])
