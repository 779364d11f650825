"""Local development and the `make run` demo: SQLite and the filesystem broker unless the environment says otherwise."""

from .base import *  # noqa: F403
from .base import VAR_DIR, env

DEBUG = env.bool("DEBUG", default=True)
if not SECRET_KEY:  # noqa: F405
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        _key_file.write_text(secrets.token_urlsafe(50))
    SECRET_KEY = _key_file.read_text().strip()

if not DOORSTEP_ENCRYPTION_KEYS:  # noqa: F405
    # A dev key under var/, so secrets are encrypted at rest in the demo too.
    _fernet_file = VAR_DIR / "encryption_key"
    if not _fernet_file.exists():
        from cryptography.fernet import Fernet

        _fernet_file.write_text(Fernet.generate_key().decode())
    DOORSTEP_ENCRYPTION_KEYS = [_fernet_file.read_text().strip()]
