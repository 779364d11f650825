"""Writes: loading a pack from its file, attaching a pack to a use case, and setting an item's status.
Each write is one transaction, re-checks the permission it needs, and leaves history with the actor."""

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from simple_history.utils import bulk_create_with_history

from apps.core.actors import Actor
from apps.core.exceptions import Conflict, PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.permissions import roles
from apps.workflows.models import UseCase

from .models import ControlItem, ControlPack, UseCaseControlItem
from .pack_files import PackData, pack_read

NOTE_MAX = 2000


def may_load_packs(user) -> bool:
    """Packs are shared reference data: governance officers and admins load them."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or user.groups.filter(name__in=(roles.ADMIN, roles.GOVERNANCE)).exists()


@dataclass(frozen=True)
class PackLoad:
    pack: ControlPack
    created: int
    updated: int
    retired: int
    unchanged: int

    @property
    def summary(self) -> str:
        return (
            f"{self.pack.name} v{self.pack.version}: {self.created} new, {self.updated} updated, "
            f"{self.retired} retired, {self.unchanged} unchanged."
        )


def _save_if_changed(obj, values: dict, *, actor: Actor, reason: str) -> bool:
    """Only rows that change are saved, so loading a pack again adds no history."""
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    if obj.pk is not None and not changed:
        return False
    for name, value in values.items():
        setattr(obj, name, value)
    obj._history_user = actor.history_user
    obj._change_reason = reason
    obj.save()
    return True


def control_pack_load(*, actor: Actor, slug: str) -> PackLoad:
    """Create or update the pack `slug` and its items from apps/governance/packs/<slug>.json, matched by
    (pack, item code): loading twice changes nothing. Items gone from the file are retired, not deleted,
    since use-case checklists may refer to them. Governance officers and admins only (a system actor,
    the management command run without --as, is trusted)."""
    if actor.user is not None and not may_load_packs(actor.user):
        raise PermissionDenied("Only governance officers and admins may load policy packs.")
    data = pack_read(slug)
    reason = f"Loaded from {data.slug}.json version {data.version}"
    try:
        return _pack_upsert(actor, data, reason)
    except IntegrityError:  # two first loads of the same pack at once: the other one won
        raise Conflict(f"The pack {slug} was being loaded at the same time; load it again.", field="slug") from None


def _pack_upsert(actor: Actor, data: PackData, reason: str) -> PackLoad:
    created = updated = retired = unchanged = 0
    with transaction.atomic():
        pack = ControlPack.objects.select_for_update().filter(slug=data.slug).first() or ControlPack(slug=data.slug)
        _save_if_changed(
            pack,
            {
                "name": data.name,
                "source": data.source,
                "url": data.url,
                "version": data.version,
                "description": data.description,
            },
            actor=actor,
            reason=reason,
        )
        existing = {item.code: item for item in pack.items.all()}
        for position, item_data in enumerate(data.items):
            item = existing.pop(item_data.code, None)
            is_new = item is None
            values = {
                "title": item_data.title,
                "text": item_data.text,
                "control": item_data.control,
                "evidence_hint": item_data.evidence,
                "position": position,
                "retired": False,
            }
            item = item or ControlItem(pack=pack, code=item_data.code)
            if _save_if_changed(item, values, actor=actor, reason=reason):
                created += is_new
                updated += not is_new
            else:
                unchanged += 1
        for item in existing.values():
            if _save_if_changed(item, {"retired": True}, actor=actor, reason=f"{reason}: no longer in the pack"):
                retired += 1
            else:
                unchanged += 1
    return PackLoad(pack=pack, created=created, updated=updated, retired=retired, unchanged=unchanged)


def _require_change(actor: Actor, use_case: UseCase) -> None:
    if not has_object_permission(actor.user, "change_usecase", use_case):
        raise PermissionDenied("You may not change this use case.")


def use_case_checklist_apply(*, actor: Actor, use_case: UseCase, pack: ControlPack) -> int:
    """Attach the pack's current items to the use case's checklist, each open; items already there keep
    their status, so applying again after a pack update only adds what is new. Needs change_usecase.
    Returns how many items were added."""
    _require_change(actor, use_case)
    with transaction.atomic():
        # Serialises two officers applying at once (the unique constraint is the last word).
        UseCase.objects.select_for_update().filter(pk=use_case.pk).first()
        items = list(pack.items.filter(retired=False))
        if not items:
            raise ServiceError(f"The pack {pack.name} has no items to apply.", field="pack")
        present = set(
            UseCaseControlItem.objects.filter(use_case=use_case, item__in=items).values_list("item_id", flat=True)
        )
        new = [
            UseCaseControlItem(use_case=use_case, item=item, updated_by=actor.user)
            for item in items
            if item.pk not in present
        ]
        bulk_create_with_history(
            new,
            UseCaseControlItem,
            default_user=actor.history_user,
            default_change_reason=f"Checklist from {pack.name} v{pack.version}",
        )
    return len(new)


def use_case_control_item_set(*, actor: Actor, item: UseCaseControlItem, status: str, note: str) -> UseCaseControlItem:
    """Mark one checklist item open, met or not applicable, with a note (required for not applicable:
    say why). Needs change_usecase on the item's use case; the change is in history with who made it."""
    _require_change(actor, item.use_case)
    if status not in UseCaseControlItem.Status.values:
        raise ServiceError(f"{status!r} is not a status: choose open, met or not applicable.", field="status")
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ServiceError(f"The note is longer than {NOTE_MAX} characters.", field="note")
    if status == UseCaseControlItem.Status.NOT_APPLICABLE and not note:
        raise ServiceError("Say in the note why this item does not apply.", field="note")
    with transaction.atomic():
        item = UseCaseControlItem.objects.select_for_update(of=("self",)).select_related("item").get(pk=item.pk)
        if item.status == status and item.note == note:
            return item
        old = item.get_status_display()
        item.status = status
        item.note = note
        item.updated_by = actor.user
        item._history_user = actor.history_user
        item._change_reason = f"{item.item.code}: {old} → {item.get_status_display()}"
        item.save()
    return item
