"""Tamper evidence for the audit record.

Recommendation events are hash-chained per recommendation as they are written (apps.workflows.events). On top,
the ledger seals every audit source in id order: each seal digests a batch of rows (their full stored values),
names the id range, and is chained to the previous seal. `ledger_verify` re-walks the seals against the rows
as they are now and reports the first broken link: an edited, inserted or deleted row breaks its batch's
digest, an edited seal breaks the chain. A signed export of the ledger's head, written outside the database
(settings.DOORSTEP_AUDIT_DIR), makes a rewrite of the whole table and ledger detectable too.
"""

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Model

from apps.accounts.models import AccessEvent
from apps.core import clock
from apps.workflows.events import chain_verify
from apps.workflows.models import Recommendation, RecommendationEvent

from .models import AuditHeadExport, AuditSeal, AuditSource
from .selectors import GOVERNED

GENESIS = "0" * 64
BATCH = 10_000


def sources() -> dict[str, type[Model]]:
    """Every sealed table: recommendation events, access events and the history of each governed model."""
    history = {f"history:{key}": model.history.model for key, model in GOVERNED.items()}
    return {"event": RecommendationEvent, "access": AccessEvent} | history


def _rows(model: type[Model], first_id: int, last_id: int):
    """The stored values of the rows with first_id ≤ pk ≤ last_id, in pk order."""
    names = [f.attname for f in model._meta.concrete_fields]
    pk = model._meta.pk.attname
    return model.objects.filter(**{f"{pk}__gte": first_id, f"{pk}__lte": last_id}).order_by(pk).values_list(*names)


def _digest(model: type[Model], first_id: int, last_id: int) -> tuple[str, int]:
    digest, count = hashlib.sha256(), 0
    for values in _rows(model, first_id, last_id).iterator(chunk_size=2000):
        digest.update(json.dumps(values, default=str, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\n")
        count += 1
    return digest.hexdigest(), count


def _seal_hash(seal: AuditSeal) -> str:
    body = [
        seal.prev_hash,
        seal.sequence,
        seal.source,
        seal.first_id,
        seal.last_id,
        seal.rows,
        seal.digest,
        seal.sealed_at.isoformat(),
    ]
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()


def ledger_seal(*, immediate: bool = False) -> int:
    """Seal the rows added since the last run; returns the number of seals written. Rows are sealed one run
    after they were first seen (a late-committing transaction is not left out), or at once when `immediate`
    (the demo loader and commands that run alone)."""
    written = 0
    with transaction.atomic():
        last = AuditSeal.objects.select_for_update().order_by("-sequence").first()
        for name, model in sources().items():
            source, _ = AuditSource.objects.select_for_update().get_or_create(name=name)
            newest = model.objects.aggregate(newest=Max(model._meta.pk.attname))["newest"] or 0
            upto = newest if immediate else source.candidate_upto
            first = source.sealed_upto + 1
            while first <= upto:
                last_id = min(upto, first + BATCH - 1)
                digest, count = _digest(model, first, last_id)
                if count:
                    seal = AuditSeal(
                        sequence=(last.sequence + 1) if last else 1,
                        sealed_at=clock.now(),
                        source=name,
                        first_id=first,
                        last_id=last_id,
                        rows=count,
                        digest=digest,
                        prev_hash=last.hash if last else GENESIS,
                    )
                    seal.hash = _seal_hash(seal)
                    seal.save()
                    last, written = seal, written + 1
                first = last_id + 1
            source.sealed_upto = max(source.sealed_upto, upto)
            source.candidate_upto = newest
            source.save()
    return written


@dataclass
class Verification:
    ok: bool = True
    seals: int = 0
    rows: int = 0
    heads: int = 0
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


def _first_broken_event(first_id: int, last_id: int) -> str:
    """Within a broken batch of events: the recommendation and sequence of the first event that no longer
    matches its own chain."""
    ids = (
        RecommendationEvent.objects.filter(pk__gte=first_id, pk__lte=last_id)
        .values_list("recommendation_id", flat=True)
        .distinct()
        .order_by("recommendation_id")
    )
    for recommendation in Recommendation.objects.filter(pk__in=ids).order_by("pk"):
        sequence = chain_verify(recommendation)
        if sequence is not None:
            return f"; first broken event: recommendation {recommendation.pk}, event #{sequence}"
    return "; the events' own chains hold, so a row was added or deleted"


def ledger_verify() -> Verification:
    """Re-walk the seal chain and every sealed batch against the rows as stored now, then the signed head
    exports on disk; the first problem found is reported first."""
    result = Verification()
    models = sources()
    previous = GENESIS
    for seal in AuditSeal.objects.order_by("sequence").iterator():
        result.seals += 1
        if seal.prev_hash != previous or seal.hash != _seal_hash(seal):
            result.fail(f"Seal {seal.sequence} was altered: the chain of seals breaks there.")
            return result
        previous = seal.hash
        model = models.get(seal.source)
        if model is None:
            result.fail(f"Seal {seal.sequence} names an unknown source {seal.source!r}.")
            return result
        digest, count = _digest(model, seal.first_id, seal.last_id)
        result.rows += count
        if (digest, count) != (seal.digest, seal.rows):
            where = f"{seal.source} rows {seal.first_id}–{seal.last_id}"
            detail = _first_broken_event(seal.first_id, seal.last_id) if seal.source == "event" else ""
            result.fail(
                f"Seal {seal.sequence}: {where} changed since sealed ({count} rows now, {seal.rows} then){detail}."
            )
            return result
    _verify_heads(result)
    return result


# --- signed head exports ----------------------------------------------------------------------------------


def _audit_dir() -> Path:
    path = Path(settings.DOORSTEP_AUDIT_DIR)
    (path / "heads").mkdir(parents=True, exist_ok=True)
    return path


def _signing_key() -> Ed25519PrivateKey:
    """The ledger's signing key, kept beside the exports (created on first use, readable by the owner only)."""
    path = _audit_dir() / "signing-key.pem"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _head_body(sequence: int, hash: str, at: str) -> bytes:
    return json.dumps({"sequence": sequence, "hash": hash, "exported_at": at}, separators=(",", ":")).encode()


def ledger_head_export() -> AuditHeadExport | None:
    """Seal what is pending, then write the head (sequence and hash) signed with the ledger key to a file
    outside the database, and record it. None while nothing is sealed."""
    ledger_seal()
    head = AuditSeal.objects.order_by("-sequence").first()
    if head is None:
        return None
    key = _signing_key()
    at = clock.now().isoformat()
    signature = base64.b64encode(key.sign(_head_body(head.sequence, head.hash, at))).decode()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    record = {
        "sequence": head.sequence,
        "hash": head.hash,
        "exported_at": at,
        "signature": signature,
        "public_key": base64.b64encode(public).decode(),
    }
    path = _audit_dir() / "heads" / f"head-{head.sequence:012d}-{at[:10]}.json"
    path.write_text(json.dumps(record, indent=2))
    return AuditHeadExport.objects.create(sequence=head.sequence, hash=head.hash, signature=signature, path=str(path))


def _verify_heads(result: Verification) -> None:
    """Every exported head on disk must be signed by the ledger key and match the seal of its sequence."""
    directory = _audit_dir() / "heads"
    files = sorted(directory.glob("head-*.json"))
    if not files:
        return
    public: Ed25519PublicKey = _signing_key().public_key()
    seals = dict(AuditSeal.objects.values_list("sequence", "hash"))
    for path in files:
        result.heads += 1
        try:
            record = json.loads(path.read_text())
            body = _head_body(record["sequence"], record["hash"], record["exported_at"])
            public.verify(base64.b64decode(record["signature"]), body)
        except (ValueError, KeyError, InvalidSignature) as exc:
            result.fail(f"Head export {path.name} is not signed by the ledger key ({exc.__class__.__name__}).")
            return
        if seals.get(record["sequence"]) != record["hash"]:
            result.fail(
                f"Head export {path.name}: seal {record['sequence']} no longer has the exported hash; "
                "the ledger was rewritten after that export."
            )
            return
