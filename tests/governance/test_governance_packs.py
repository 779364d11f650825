"""Policy packs are data: the shipped files read, map every item to one of the seven controls, and load
idempotently, by officers and admins only (UI, service and command share the rule)."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.governance import pack_files
from apps.governance.models import ControlItem, ControlPack, UseCaseControlItem
from apps.governance.pack_files import pack_read, pack_slugs
from apps.governance.services import control_pack_load, use_case_checklist_apply
from apps.workflows.controls import CONTROL_NAMES, use_case_controls

EU = "eu-ai-act-high-risk"
NIST = "nist-ai-rmf"


def test_shipped_packs_read_and_map_every_item_to_a_real_control():
    assert {EU, NIST} <= set(pack_slugs())
    for slug in pack_slugs():
        data = pack_read(slug)
        assert data.items and data.source and data.version
        assert {item.control for item in data.items} <= set(CONTROL_NAMES), slug
        assert all(item.text and item.title for item in data.items), slug


def test_the_eu_pack_has_the_high_risk_obligations_and_nist_the_four_functions():
    eu = {item.code: item.control for item in pack_read(EU).items}
    assert set(eu) == {f"Art. {n}" for n in (9, 10, 11, 12, 13, 14, 15, 17, 72, 73)}
    assert eu["Art. 10"] == "data" and eu["Art. 14"] == "access" and eu["Art. 72"] == "monitoring"
    functions = {item.code.split()[0] for item in pack_read(NIST).items}
    assert functions == {"GOVERN", "MAP", "MEASURE", "MANAGE"}


def test_the_packs_together_cover_every_control():
    covered = {item.control for slug in (EU, NIST) for item in pack_read(slug).items}
    assert covered == set(CONTROL_NAMES)


def test_loading_twice_is_idempotent_and_audited(world):
    first = control_pack_load(actor=Actor(user=world.governance), slug=EU)
    assert (first.created, first.updated, first.retired, first.unchanged) == (10, 0, 0, 0)
    pack = first.pack
    assert pack.items.count() == 10 and pack.version == "2024-07-12"
    history_rows = ControlItem.history.count() + ControlPack.history.count()
    assert history_rows == 11
    assert {row.history_user for row in ControlItem.history.all()} == {world.governance}

    second = control_pack_load(actor=Actor(user=world.admin), slug=EU)
    assert second.pack.pk == pack.pk
    assert (second.created, second.updated, second.retired, second.unchanged) == (0, 0, 0, 10)
    assert ControlPack.objects.count() == 1 and ControlItem.objects.count() == 10
    assert ControlItem.history.count() + ControlPack.history.count() == history_rows  # nothing rewritten


def _write_pack(directory, items, *, version="1"):
    data = {
        "slug": "house-rules",
        "name": "House rules",
        "source": "Our own",
        "version": version,
        "items": items,
    }
    (directory / "house-rules.json").write_text(json.dumps(data))


def _item(code, control="policy", text="Plain words."):
    return {"code": code, "title": f"Rule {code}", "text": text, "control": control}


def test_a_new_pack_version_updates_adds_and_retires_items_by_code(world, tmp_path, monkeypatch):
    monkeypatch.setattr(pack_files, "PACK_DIR", tmp_path)
    _write_pack(tmp_path, [_item("R1"), _item("R2"), _item("R3")])
    actor = Actor(user=world.governance)
    pack = control_pack_load(actor=actor, slug="house-rules").pack
    use_case_checklist_apply(actor=actor, use_case=world.churn, pack=pack)

    _write_pack(tmp_path, [_item("R1", text="Changed words."), _item("R2"), _item("R4", "data")], version="2")
    result = control_pack_load(actor=actor, slug="house-rules")
    assert (result.created, result.updated, result.retired, result.unchanged) == (1, 1, 1, 1)
    items = {item.code: item for item in pack.items.all()}
    assert items["R1"].text == "Changed words." and items["R3"].retired and not items["R4"].retired
    assert items["R1"].history.first().history_change_reason == "Loaded from house-rules.json version 2"
    # The checklist keeps the retired item (with its status) and the next apply adds only the new one.
    assert UseCaseControlItem.objects.filter(use_case=world.churn, item=items["R3"]).exists()
    assert use_case_checklist_apply(actor=actor, use_case=world.churn, pack=pack) == 1


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([_item("R1", control="ethics")], "house-rules.json item 1 (R1): control 'ethics' is not one of systems"),
        ([_item("R1"), _item("R1")], "house-rules.json item 2: the code 'R1' is used twice."),
        ([{**_item("R1"), "title": ""}], "house-rules.json item 1: 'title' is required."),
        ([{**_item("R1"), "owner": "me"}], "house-rules.json item 1: unknown field(s) owner."),
        ([], "house-rules.json: 'items' must be a non-empty list."),
    ],
)
def test_a_faulty_pack_is_refused_naming_the_item_and_nothing_is_saved(world, tmp_path, monkeypatch, items, message):
    monkeypatch.setattr(pack_files, "PACK_DIR", tmp_path)
    _write_pack(tmp_path, items)
    with pytest.raises(ServiceError) as exc:
        control_pack_load(actor=Actor(user=world.governance), slug="house-rules")
    assert message in exc.value.message
    assert not ControlPack.objects.exists() and not ControlItem.objects.exists()


def test_a_faulty_item_late_in_a_pack_saves_no_earlier_item(world, tmp_path, monkeypatch):
    monkeypatch.setattr(pack_files, "PACK_DIR", tmp_path)
    _write_pack(tmp_path, [_item("R1"), _item("R2"), {**_item("R3"), "text": 7}])
    with pytest.raises(ServiceError, match="item 3: 'text' must be text"):
        control_pack_load(actor=Actor(user=world.governance), slug="house-rules")
    assert not ControlItem.objects.exists()


@pytest.mark.parametrize("slug", ["no-such-pack", "../settings", "", "EU-AI-ACT-HIGH-RISK"])
def test_only_shipped_pack_files_can_be_named(world, slug):
    with pytest.raises(ServiceError, match="No policy pack named") as exc:
        control_pack_load(actor=Actor(user=world.governance), slug=slug)
    assert exc.value.field == "slug"


def test_only_governance_officers_and_admins_load_packs(world, outsider):
    for user in (world.executive, world.reviewer, world.integrator, outsider):
        with pytest.raises(PermissionDenied):
            control_pack_load(actor=Actor(user=user), slug=EU)
    assert not ControlPack.objects.exists()
    assert control_pack_load(actor=Actor(user=world.admin), slug=NIST).created == 14


def test_command_loads_one_or_all_packs_and_again_changes_nothing(world, capsys):
    call_command("load_policy_pack", EU)
    assert "10 new" in capsys.readouterr().out
    call_command("load_policy_pack", "--all")
    out = capsys.readouterr().out
    assert "0 new, 0 updated, 0 retired, 10 unchanged" in out and "14 new" in out
    assert set(ControlPack.objects.values_list("slug", flat=True)) == {EU, NIST}
    assert ControlItem.history.filter(history_user__isnull=False).count() == 0  # run by the system


def test_command_records_the_user_named_and_refuses_others(world):
    with pytest.raises(CommandError, match="Only governance officers and admins"):
        call_command("load_policy_pack", EU, "--as", world.executive.username)
    with pytest.raises(CommandError, match="No user named"):
        call_command("load_policy_pack", EU, "--as", "nobody")
    with pytest.raises(CommandError, match="No policy pack named 'gdpr'"):
        call_command("load_policy_pack", "gdpr")
    with pytest.raises(CommandError, match="or pass --all"):
        call_command("load_policy_pack")
    assert not ControlPack.objects.exists()
    call_command("load_policy_pack", EU, "--as", world.governance.username)
    assert ControlPack.objects.get().history.get().history_user == world.governance


def test_control_keys_match_the_scorecard(world):
    assert [control.key for control in use_case_controls(world.churn)] == list(CONTROL_NAMES)
