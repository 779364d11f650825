"""Secrets at rest: MultiFernet over DOORSTEP_ENCRYPTION_KEYS (newest first), so keys rotate without downtime."""

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def _keys() -> list[Fernet]:
    keys = settings.DOORSTEP_ENCRYPTION_KEYS
    if not keys:
        raise RuntimeError("DOORSTEP_ENCRYPTION_KEYS is empty: set at least one Fernet key")
    return [Fernet(k.encode() if isinstance(k, str) else k) for k in keys]


def _fernet() -> MultiFernet:
    return MultiFernet(_keys())


def encrypt_secrets(secrets: dict) -> str:
    return _fernet().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


def decrypt_secrets(token: str) -> dict:
    if not token:
        return {}
    return json.loads(_fernet().decrypt(token.encode()))


def rotate(token: str) -> str:
    """Re-encrypt under the newest key."""
    return _fernet().rotate(token.encode()).decode() if token else token


def is_current(token: str) -> bool:
    """Whether `token` is already encrypted under the newest key (rotating it again would change nothing)."""
    try:
        _keys()[0].decrypt(token.encode())
    except InvalidToken:
        return False
    return True
