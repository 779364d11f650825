"""A use case's checklist against a pack: applying needs change_usecase, statuses are audited with who,
and the checklist sits under the seven controls beside Doorstep's own verdict on each."""

import pytest

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.governance.models import UseCaseControlItem
from apps.governance.selectors import use_case_checklist, use_case_for_checklist
from apps.governance.services import use_case_checklist_apply, use_case_control_item_set
from apps.workflows.controls import CONTROL_NAMES, use_case_controls

Status = UseCaseControlItem.Status


def test_applying_a_pack_adds_each_item_open_once(world, eu_pack):
    actor = Actor(user=world.governance)
    assert use_case_checklist_apply(actor=actor, use_case=world.churn, pack=eu_pack) == 10
    assert use_case_checklist_apply(actor=actor, use_case=world.churn, pack=eu_pack) == 0
    entries = UseCaseControlItem.objects.filter(use_case=world.churn)
    assert entries.count() == 10 and set(entries.values_list("status", flat=True)) == {Status.OPEN}
    assert not UseCaseControlItem.objects.filter(use_case=world.replies).exists()
    created = UseCaseControlItem.history.filter(history_type="+")
    assert created.count() == 10 and {row.history_user for row in created} == {world.governance}


def test_applying_needs_change_on_that_use_case(world, eu_pack, outsider, support_officer):
    for user in (world.executive, world.integrator, world.reviewer, outsider, support_officer):
        with pytest.raises(PermissionDenied):
            use_case_checklist_apply(actor=Actor(user=user), use_case=world.churn, pack=eu_pack)
    assert not UseCaseControlItem.objects.exists()
    # The support officer may on their own business unit's use case.
    assert use_case_checklist_apply(actor=Actor(user=support_officer), use_case=world.replies, pack=eu_pack) == 10


@pytest.fixture
def entry(world, eu_pack):
    use_case_checklist_apply(actor=Actor(user=world.governance), use_case=world.churn, pack=eu_pack)
    return UseCaseControlItem.objects.get(use_case=world.churn, item__code="Art. 14")


def test_a_status_change_is_in_history_with_who_and_what(world, entry):
    actor = Actor(user=world.governance)
    use_case_control_item_set(actor=actor, item=entry, status="met", note="Queue has 2 reviewers")
    entry.refresh_from_db()
    assert (entry.status, entry.note, entry.updated_by) == (Status.MET, "Queue has 2 reviewers", world.governance)
    latest, created = entry.history.all()[:2]
    assert latest.history_user == world.governance and latest.status == "met"
    assert latest.history_change_reason == "Art. 14: Open → Met"
    assert created.status == "open"
    # The same status and note again is no change: no new history row.
    use_case_control_item_set(actor=Actor(user=world.admin), item=entry, status="met", note=" Queue has 2 reviewers ")
    assert entry.history.count() == 2


def test_not_applicable_needs_a_note_and_bad_input_changes_nothing(world, entry):
    actor = Actor(user=world.governance)
    with pytest.raises(ServiceError, match="why this item does not apply") as exc:
        use_case_control_item_set(actor=actor, item=entry, status="not_applicable", note="  ")
    assert exc.value.field == "note"
    with pytest.raises(ServiceError, match="'done' is not a status") as exc:
        use_case_control_item_set(actor=actor, item=entry, status="done", note="")
    assert exc.value.field == "status"
    with pytest.raises(ServiceError) as exc:
        use_case_control_item_set(actor=actor, item=entry, status="met", note="x" * 2001)
    assert exc.value.field == "note"
    entry.refresh_from_db()
    assert entry.status == Status.OPEN and entry.history.count() == 1


def test_setting_a_status_needs_change_on_the_use_case(world, entry, outsider, support_officer):
    for user in (world.executive, outsider, support_officer, world.reviewer):
        with pytest.raises(PermissionDenied):
            use_case_control_item_set(actor=Actor(user=user), item=entry, status="met", note="")
    entry.refresh_from_db()
    assert entry.status == Status.OPEN and entry.history.count() == 1


def test_checklist_is_grouped_under_the_seven_controls_with_their_verdicts(world, entry, django_assert_max_num_queries):
    use_case = use_case_for_checklist(user=world.governance, slug=world.churn.slug)
    with django_assert_max_num_queries(3):
        groups = use_case_checklist(use_case=use_case)
    assert [group.control.key for group in groups] == list(CONTROL_NAMES)
    verdicts = {control.key: control.passed for control in use_case_controls(use_case)}
    assert {group.control.key: group.control.passed for group in groups} == verdicts
    codes = {group.control.key: [e.item.code for e in group.entries] for group in groups}
    assert codes["access"] == ["Art. 14"] and codes["data"] == ["Art. 10"]
    assert codes["monitoring"] == ["Art. 12", "Art. 72", "Art. 73"]
    assert sum(len(group.entries) for group in groups) == 10
    assert groups[[g.control.key for g in groups].index("access")].open_count == 1


def test_checklist_use_case_is_only_found_for_users_who_may_view_it(world, outsider, support_officer):
    assert use_case_for_checklist(user=outsider, slug=world.churn.slug) is None
    assert use_case_for_checklist(user=support_officer, slug=world.churn.slug) is None
    assert use_case_for_checklist(user=world.executive, slug=world.churn.slug) == world.churn
