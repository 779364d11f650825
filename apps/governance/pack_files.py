"""Reading the pack files in apps/governance/packs/: a pack is data, checked here before it is loaded."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from apps.core.exceptions import ServiceError
from apps.workflows.controls import CONTROL_NAMES

PACK_DIR = Path(__file__).resolve().parent / "packs"
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")
PACK_FIELDS = {"slug", "name", "source", "url", "version", "description", "items"}
ITEM_FIELDS = {"code", "title", "text", "control", "evidence"}


@dataclass(frozen=True)
class PackItemData:
    code: str
    title: str
    text: str
    control: str
    evidence: str


@dataclass(frozen=True)
class PackData:
    slug: str
    name: str
    source: str
    url: str
    version: str
    description: str
    items: tuple[PackItemData, ...]


def pack_slugs() -> list[str]:
    """The packs shipped with Doorstep, by file name."""
    return sorted(path.stem for path in PACK_DIR.glob("*.json") if SLUG.match(path.stem))


def _text(data: dict, key: str, where: str, *, required: bool = True, max_length: int | None = None) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ServiceError(f"{where}: {key!r} must be text.", field="slug")
    value = value.strip()
    if required and not value:
        raise ServiceError(f"{where}: {key!r} is required.", field="slug")
    if max_length is not None and len(value) > max_length:
        raise ServiceError(f"{where}: {key!r} is longer than {max_length} characters.", field="slug")
    return value


def pack_read(slug: str) -> PackData:
    """The pack file `slug`.json, checked: known fields only, every item mapped to one of the seven
    controls, codes unique. Any fault is a ServiceError naming the file and the item."""
    if not isinstance(slug, str) or slug not in pack_slugs():
        raise ServiceError(f"No policy pack named {slug!r}. Known packs: {', '.join(pack_slugs())}.", field="slug")
    where = f"{slug}.json"
    try:
        data = json.loads((PACK_DIR / where).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ServiceError(f"{where} cannot be read: {exc}", field="slug") from None
    if not isinstance(data, dict):
        raise ServiceError(f"{where}: expected an object.", field="slug")
    unknown = set(data) - PACK_FIELDS
    if unknown:
        raise ServiceError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}.", field="slug")
    if data.get("slug") != slug:
        raise ServiceError(f"{where}: its slug must be {slug!r}, the file's name.", field="slug")
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise ServiceError(f"{where}: 'items' must be a non-empty list.", field="slug")
    items, codes = [], set()
    for index, raw in enumerate(raw_items, start=1):
        at = f"{where} item {index}"
        if not isinstance(raw, dict):
            raise ServiceError(f"{at}: expected an object.", field="slug")
        unknown = set(raw) - ITEM_FIELDS
        if unknown:
            raise ServiceError(f"{at}: unknown field(s) {', '.join(sorted(unknown))}.", field="slug")
        code = _text(raw, "code", at, max_length=40)
        if code in codes:
            raise ServiceError(f"{at}: the code {code!r} is used twice.", field="slug")
        codes.add(code)
        control = raw.get("control")
        if control not in CONTROL_NAMES:
            raise ServiceError(
                f"{at} ({code}): control {control!r} is not one of {', '.join(CONTROL_NAMES)}.", field="slug"
            )
        items.append(
            PackItemData(
                code=code,
                title=_text(raw, "title", at, max_length=200),
                text=_text(raw, "text", at),
                control=control,
                evidence=_text(raw, "evidence", at, required=False),
            )
        )
    return PackData(
        slug=slug,
        name=_text(data, "name", where, max_length=120),
        source=_text(data, "source", where, max_length=300),
        url=_text(data, "url", where, required=False, max_length=200),
        version=_text(data, "version", where, max_length=40),
        description=_text(data, "description", where, required=False),
        items=tuple(items),
    )
