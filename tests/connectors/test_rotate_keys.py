"""Key rotation: `manage.py rotate_encryption_keys` re-encrypts every connector's credentials under the newest
key, so the old key can be dropped; a row no key decrypts is reported and the command fails."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.test import override_settings

from apps.connectors.models import Connector

pytestmark = pytest.mark.django_db
KEY_A, KEY_B, KEY_C = (Fernet.generate_key().decode() for _ in range(3))
REASON = "Credentials re-encrypted under the newest key"


def _connector(name, secrets, keys):
    with override_settings(DOORSTEP_ENCRYPTION_KEYS=keys):
        connector = Connector(name=name, kind="webhook", config={"url": "https://example.com/h"})
        if secrets:
            connector.set_secrets(secrets)
        connector.save()
    return connector


def _rotate(*args) -> str:
    out = io.StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out)
    return out.getvalue()


def test_rotation_moves_every_row_to_the_newest_key(db):
    first = _connector("one", {"signing_secret": "alpha"}, [KEY_A])
    second = _connector("two", {"signing_secret": "beta"}, [KEY_A])
    _connector("no secrets", {}, [KEY_A])
    with override_settings(DOORSTEP_ENCRYPTION_KEYS=[KEY_B, KEY_A]):
        before = first.history.count()
        assert "2 connector(s) would be re-encrypted" in _rotate("--dry-run")
        assert Connector.objects.get(pk=first.pk).secrets_ciphertext == first.secrets_ciphertext
        assert first.history.count() == before

        assert _rotate("--batch-size", "1") == (
            "2 connector(s) re-encrypted, 0 already under the newest key, 0 undecryptable.\n"
        )
        # A second run finds nothing to do and writes no history.
        assert "0 connector(s) re-encrypted, 2 already under the newest key" in _rotate()
    with override_settings(DOORSTEP_ENCRYPTION_KEYS=[KEY_B]):  # the old key is gone
        for connector, value in ((first, "alpha"), (second, "beta")):
            connector.refresh_from_db()
            assert connector.secrets == {"signing_secret": value}
            assert connector.secrets_version == 1  # same credentials, new encryption
            latest = connector.history.first()
            assert latest.history_change_reason == REASON and latest.history_user is None
            assert connector.history.filter(history_change_reason=REASON).count() == 1


def test_an_undecryptable_row_is_reported_and_the_others_still_rotate(db):
    good = _connector("good", {"signing_secret": "alpha"}, [KEY_A])
    lost = _connector("lost", {"signing_secret": "gamma"}, [KEY_C])
    with override_settings(DOORSTEP_ENCRYPTION_KEYS=[KEY_B, KEY_A]):
        out = io.StringIO()
        with pytest.raises(CommandError, match=rf"connector\(s\) {lost.pk}: keep the old keys"):
            call_command("rotate_encryption_keys", stdout=out)
        assert "1 connector(s) re-encrypted, 0 already under the newest key, 1 undecryptable." in out.getvalue()
    untouched = Connector.objects.get(pk=lost.pk)
    assert untouched.secrets_ciphertext == lost.secrets_ciphertext
    with override_settings(DOORSTEP_ENCRYPTION_KEYS=[KEY_B]):
        good.refresh_from_db()
        assert good.secrets == {"signing_secret": "alpha"}
