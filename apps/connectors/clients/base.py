"""What every system-of-record client offers: the source side (test, browse, read) and the write side.

A client wraps one Connector (its config and decrypted secrets) and speaks the remote's own protocol.
Methods a kind cannot do raise a permanent ConnectorError naming the kind, so the UI can say why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConnectorError


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str = ""


@dataclass(frozen=True)
class WriteRequest:
    """One approved output to write into the system of record.

    `idempotency_key` is stable per delivery ("dlv-<id>"): a client writes it with the record (or looks
    it up first) so a retried delivery never writes twice. `target` is the Destination's table and config."""

    idempotency_key: str
    subject_key: str
    title: str
    text: str
    target: dict
    payload: dict = field(default_factory=dict)


class Client:
    system = "The remote system"

    def __init__(self, connector):
        self.connector = connector
        self.config = connector.config or {}
        self.secrets = connector.secrets

    def _unsupported(self, what: str):
        return ConnectorError(f"A {self.connector.get_kind_display()} connector cannot {what}", permanent=True)

    def test(self) -> str:
        """Prove the credentials and the address work; return what was seen (for the integrator)."""
        raise self._unsupported("be tested")

    def list_objects(self) -> list[str]:
        raise self._unsupported("list tables or objects")

    def list_fields(self, obj: str) -> list[FieldInfo]:
        raise self._unsupported("list fields")

    def read_by_key(self, obj: str, key_field: str, key: str, *, limit: int = 50) -> list[dict]:
        raise self._unsupported("read records")

    def read_since(self, obj: str, cursor_field: str, cursor: str | None, *, limit: int = 1000) -> list[dict]:
        """Records whose `cursor_field` is greater than `cursor` (all when None), ascending by it."""
        raise self._unsupported("read incrementally")

    def write(self, request: WriteRequest) -> str:
        """Write one approved output; return the external id of what was created."""
        raise self._unsupported("write back")
