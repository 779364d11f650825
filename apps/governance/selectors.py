"""Reads: the packs (shipped files and what is loaded) and a use case's checklist grouped by control."""

from dataclasses import dataclass, field

from django.db.models import Count, Q, QuerySet

from apps.core.exceptions import ServiceError
from apps.workflows import selectors as workflow_selectors
from apps.workflows.controls import Control, use_case_controls, with_control_data
from apps.workflows.models import UseCase

from .models import ControlItem, ControlPack, UseCaseControlItem
from .pack_files import pack_read, pack_slugs


def control_pack_list() -> QuerySet[ControlPack]:
    """Loaded packs with their current (not retired) item count. Packs are reference data: any signed-in
    user may read them; what a use case does about them is guarded by the use case."""
    return ControlPack.objects.annotate(item_count=Count("items", filter=Q(items__retired=False))).order_by("name")


@dataclass
class PackRow:
    slug: str
    name: str
    file_version: str
    pack: ControlPack | None
    items: list[ControlItem] = field(default_factory=list)
    error: str = ""

    @property
    def needs_load(self) -> bool:
        return self.pack is None or self.pack.version != self.file_version


def control_pack_rows() -> list[PackRow]:
    """Every shipped pack file beside what is loaded from it (a file that does not read is shown with its
    error, so the page still lists the others); packs loaded from files since removed come last."""
    loaded = {pack.slug: pack for pack in control_pack_list().prefetch_related("items")}
    rows = []
    for slug in pack_slugs():
        pack = loaded.pop(slug, None)
        try:
            data = pack_read(slug)
        except ServiceError as exc:
            rows.append(PackRow(slug=slug, name=slug, file_version="", pack=pack, error=exc.message))
            continue
        rows.append(PackRow(slug=slug, name=data.name, file_version=data.version, pack=pack))
    rows += [PackRow(slug=p.slug, name=p.name, file_version=p.version, pack=p) for p in loaded.values()]
    for row in rows:
        if row.pack is not None:
            row.items = [item for item in row.pack.items.all() if not item.retired]
    return rows


def use_case_for_checklist(*, user, slug: str) -> UseCase | None:
    """The use case if `user` may view it, with what its controls scorecard reads."""
    return with_control_data(workflow_selectors.use_case_list(user=user)).filter(slug=slug).first()


@dataclass
class ControlGroup:
    control: Control
    entries: list[UseCaseControlItem]

    @property
    def open_count(self) -> int:
        return sum(entry.status == UseCaseControlItem.Status.OPEN for entry in self.entries)


def use_case_checklist(*, use_case: UseCase) -> list[ControlGroup]:
    """The use case's checklist items under the control each is mapped to, in the order of the seven
    controls, each beside Doorstep's own verdict on that control."""
    entries = (
        UseCaseControlItem.objects.filter(use_case=use_case)
        .select_related("item__pack", "updated_by")
        .order_by("item__pack__name", "item__position", "item__code")
    )
    by_control: dict[str, list[UseCaseControlItem]] = {}
    for entry in entries:
        by_control.setdefault(entry.item.control, []).append(entry)
    return [ControlGroup(control=c, entries=by_control.get(c.key, [])) for c in use_case_controls(use_case)]
