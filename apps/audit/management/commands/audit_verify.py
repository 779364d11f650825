from django.core.management.base import BaseCommand, CommandError

from apps.audit.ledger import ledger_seal, ledger_verify


class Command(BaseCommand):
    help = (
        "Re-walk the audit ledger: the chain of seals, every sealed batch of audit rows as stored now, and the "
        "signed head exports on disk. Exits 1 and names the first broken link when anything was changed."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--seal", action="store_true", help="Seal every row not yet sealed before verifying (run alone)"
        )

    def handle(self, *args, seal, **options):
        if seal:
            written = ledger_seal(immediate=True)
            self.stdout.write(f"Sealed pending rows: {written} new seal(s).")
        result = ledger_verify()
        summary = f"{result.seals} seals, {result.rows} rows, {result.heads} signed head export(s) checked"
        if not result.ok:
            raise CommandError(f"Audit ledger BROKEN ({summary}). {result.problems[0]}")
        self.stdout.write(self.style.SUCCESS(f"Audit ledger intact: {summary}."))
