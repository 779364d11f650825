"""Plain helpers of the delivery tests (fixtures are in conftest.py)."""

import socket
import sqlite3

from apps.connectors.models import Connector


def free_port() -> int:
    """A port nobody listens on (yet): a receiver that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def crm_task_rows(world) -> list[sqlite3.Row]:
    """What the demo CRM holds in its write-back table."""
    with sqlite3.connect(world.source_db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM crm_tasks ORDER BY task_id").fetchall()


def make_connector(kind: str, name: str, *, config: dict | None = None, secrets: dict | None = None) -> Connector:
    connector = Connector(name=name, kind=kind, config=config or {})
    if secrets:
        connector.set_secrets(secrets)
    connector.save()
    return connector
