from celery import shared_task

from .ledger import ledger_head_export, ledger_seal
from .retention import retention_apply


@shared_task(acks_late=True)
def audit_seal_task() -> int:
    """Seal the audit rows written since the last run (idempotent: sealed rows are never sealed again)."""
    return ledger_seal()


@shared_task(acks_late=True)
def audit_head_export_task() -> int | None:
    """The daily signed export of the ledger's head, outside the database."""
    export = ledger_head_export()
    return export.sequence if export else None


@shared_task(acks_late=True)
def retention_apply_task() -> dict:
    """Daily: raw payloads older than the retention period are deleted; hashes and chains stay."""
    return retention_apply()
