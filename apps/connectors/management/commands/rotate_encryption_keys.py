"""Re-encrypt every connector's credentials under the newest key of DOORSTEP_ENCRYPTION_KEYS.

Rotating a key: put the new key first in DOORSTEP_ENCRYPTION_KEYS (keep the old ones after it), deploy, run
this command, then remove the old keys. Rows already under the newest key are left alone, so a second run
changes nothing. Each batch is one transaction with a history row per connector (the acting user is the
system; the credentials themselves are never in the history).

A row that no current key decrypts is skipped and reported by id, and the command exits non-zero: the
other rows are still rotated (each is independent, and the broken row was unreadable before the run too),
but the old keys must not be dropped until the reported rows are fixed — re-enter their credentials, or add
back the key they were written with and run again.
"""

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.connectors import crypto
from apps.connectors.models import Connector
from apps.core.actors import Actor

REASON = "Credentials re-encrypted under the newest key"


class Command(BaseCommand):
    help = "Re-encrypt all connector credentials under the newest DOORSTEP_ENCRYPTION_KEYS key."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; write nothing.")
        parser.add_argument("--batch-size", type=int, default=200, help="Connectors per transaction (default 200).")

    def handle(self, *args, dry_run: bool = False, batch_size: int = 200, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        actor = Actor.for_system("rotate_encryption_keys")
        ids = list(Connector.objects.exclude(secrets_ciphertext="").order_by("pk").values_list("pk", flat=True))
        rotated, current, failed = 0, 0, []
        for start in range(0, len(ids), batch_size):
            with transaction.atomic():
                batch = Connector.objects.select_for_update().filter(pk__in=ids[start : start + batch_size])
                for connector in batch.order_by("pk"):
                    if crypto.is_current(connector.secrets_ciphertext):
                        current += 1
                        continue
                    try:
                        token = crypto.rotate(connector.secrets_ciphertext)
                    except InvalidToken:
                        failed.append(connector.pk)
                        continue
                    rotated += 1
                    if dry_run:
                        continue
                    connector.secrets_ciphertext = token
                    connector._history_user = actor.history_user
                    connector._change_reason = REASON
                    connector.save(update_fields=["secrets_ciphertext"])
        verb = "would be re-encrypted" if dry_run else "re-encrypted"
        self.stdout.write(
            f"{rotated} connector(s) {verb}, {current} already under the newest key, {len(failed)} undecryptable."
        )
        if failed:
            raise CommandError(
                "No current key decrypts the credentials of connector(s) "
                + ", ".join(str(pk) for pk in failed)
                + ": keep the old keys until they are re-entered or re-encrypted."
            )
