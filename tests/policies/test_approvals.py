"""M of N approval: per-group seats, one seat per person, never the author, a rejection rejects."""

import itertools

import pytest
from django.contrib.auth.models import Group

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.permissions.services import object_permission_grant
from apps.policies.models import Approval, ApprovalRequirement, PolicyVersion
from apps.policies.services import (
    REPLAY_REQUIRED,
    approvals_satisfied,
    policy_approval_requirements_set,
    policy_version_create,
    policy_version_review,
    policy_version_submit,
)
from tests.factories import UserFactory

RULE = {"name": "Low confidence", "condition": "signals.confidence < 0.5", "effect": "review"}


@pytest.fixture
def board(world, replayed):
    """Churn policy needing 2 of Governance + 1 of Security; g1, g2 in governance, s1 in security, both in
    both, the author (governance too) writes a version that is in review and replayed."""
    governance = world.governance.groups.get()
    security = Group.objects.create(name="Security")
    people = {
        "g1": UserFactory(username="g1"),
        "g2": UserFactory(username="g2"),
        "s1": UserFactory(username="s1"),
        "both": UserFactory(username="both"),
        "author": UserFactory(username="author"),
    }
    for name in ("g1", "g2", "both", "author"):
        people[name].groups.add(governance)
    for name in ("s1", "both"):
        people[name].groups.add(security)
    for codename in ("view_policy", "approve_policy"):
        object_permission_grant(group=security, codename=codename, obj=world.churn_policy)
    policy_approval_requirements_set(
        actor=Actor(user=world.admin), policy=world.churn_policy, requirements=[(governance, 2), (security, 1)]
    )
    version = policy_version_create(actor=Actor(user=people["author"]), policy=world.churn_policy, rules=[RULE])
    policy_version_submit(actor=Actor(user=people["author"]), version=version)
    replayed(version, world.admin)
    people["version"] = version
    return people


def _approve(board, *names):
    version = board["version"]
    for name in names:
        version = policy_version_review(
            actor=Actor(user=board[name]), version=version, decision="approve", comment=f"{name} checked"
        )
    return version


def test_two_of_governance_and_one_of_security(board):
    assert _approve(board, "g1", "g2").state == PolicyVersion.State.IN_REVIEW  # security still missing
    assert _approve(board, "s1").state == PolicyVersion.State.APPROVED


def test_a_person_in_both_groups_fills_one_seat(board):
    assert _approve(board, "both", "s1").state == PolicyVersion.State.IN_REVIEW  # one governance seat left
    assert _approve(board, "g1").state == PolicyVersion.State.APPROVED


def test_the_order_of_approvals_never_matters(board):
    version = board["version"]
    # Each order of the same approvers gives the same answer, for a set that fills the seats and one that does not.
    cases = (
        (("both", "s1", "g1"), True),
        (("both", "g1", "g2"), True),  # "both" takes the security seat
        (("both", "s1"), False),  # one governance seat left
        (("s1", "g1", "author"), False),  # the author's row fills nothing
    )
    for names, expected in cases:
        for order in itertools.permutations(names):
            version.approvals.all().delete()
            for name in order:
                Approval.objects.create(version=version, approver=board[name], decision="approve", comment="ok")
            assert approvals_satisfied(version) is expected, order


def test_the_author_never_counts(board):
    version = board["version"]
    with pytest.raises(PermissionDenied):
        _approve(board, "author")
    # Even an approval row of the author's (written around the service) fills no seat.
    Approval.objects.create(version=version, approver=board["author"], decision="approve", comment="mine")
    _approve(board, "g1", "s1")
    version.refresh_from_db()
    assert version.state == PolicyVersion.State.IN_REVIEW and not approvals_satisfied(version)


def test_one_rejection_rejects(board):
    version = _approve(board, "g1", "g2")
    version = policy_version_review(actor=Actor(user=board["s1"]), version=version, decision="reject", comment="No.")
    assert version.state == PolicyVersion.State.REJECTED
    with pytest.raises(ServiceError, match="not in review"):
        _approve(board, "both")


def test_an_approver_outside_the_named_groups_is_refused(board, world):
    outsider = UserFactory(username="approver-elsewhere")
    object_permission_grant(group=world.executive.groups.get(), codename="approve_policy", obj=world.churn_policy)
    outsider.groups.add(world.executive.groups.get())
    with pytest.raises(PermissionDenied, match="Only members of Governance|Only members of"):
        policy_version_review(actor=Actor(user=outsider), version=board["version"], decision="approve", comment="ok")
    assert not board["version"].approvals.exists()


def test_approval_of_a_change_needs_a_current_replay(world, replayed):
    """The replay must be of the rules as they are now; the first version of a policy needs none."""
    version = world.pending_version  # a change to the support policy, which has an active v1
    with pytest.raises(ServiceError) as error:
        policy_version_review(actor=Actor(user=world.governance), version=version, decision="approve", comment="ok")
    assert error.value.message == REPLAY_REQUIRED and not version.approvals.exists()
    stale = replayed(version, world.admin)
    stale.rules_hash = "0" * 64  # a replay of rules the version had before an edit
    stale.save()
    with pytest.raises(ServiceError, match="Replay this version"):
        policy_version_review(actor=Actor(user=world.governance), version=version, decision="approve", comment="ok")
    replayed(version, world.admin)
    version = policy_version_review(
        actor=Actor(user=world.governance), version=version, decision="approve", comment="ok"
    )
    assert version.state == PolicyVersion.State.APPROVED
    # A rejection needs no replay.
    other = policy_version_create(actor=Actor(user=world.admin), policy=world.churn_policy, rules=[RULE])
    policy_version_submit(actor=Actor(user=world.admin), version=other)
    rejected = policy_version_review(actor=Actor(user=world.governance), version=other, decision="reject", comment="no")
    assert rejected.state == PolicyVersion.State.REJECTED


class TestRequirements:
    def test_a_requirement_no_one_can_satisfy_is_refused(self, world):
        governance = world.governance.groups.get()  # one member
        before = list(world.churn_policy.approval_requirements.values_list("group_id", "count"))
        with pytest.raises(ServiceError) as error:
            policy_approval_requirements_set(
                actor=Actor(user=world.admin), policy=world.churn_policy, requirements=[(governance, 2)]
            )
        assert error.value.field == "requirements[0].count" and "could never be given" in error.value.message
        assert list(world.churn_policy.approval_requirements.values_list("group_id", "count")) == before

    def test_overlapping_groups_need_enough_distinct_people(self, world):
        governance = world.governance.groups.get()
        security = Group.objects.create(name="Security")
        world.governance.groups.add(security)  # the one officer is the whole of both groups
        with pytest.raises(ServiceError, match="more distinct people"):
            policy_approval_requirements_set(
                actor=Actor(user=world.admin),
                policy=world.churn_policy,
                requirements=[(governance, 1), (security, 1)],
            )

    def test_count_and_duplicates(self, world):
        governance = world.governance.groups.get()
        for requirements, field in (
            ([(governance, 0)], "requirements[0].count"),
            ([(governance, 1), (governance, 1)], "requirements[1].group"),
        ):
            with pytest.raises(ServiceError) as error:
                policy_approval_requirements_set(
                    actor=Actor(user=world.admin), policy=world.churn_policy, requirements=requirements
                )
            assert error.value.field == field

    def test_only_change_policy_edits_them_and_history_records_who(self, world):
        governance = world.governance.groups.get()
        with pytest.raises(PermissionDenied):
            policy_approval_requirements_set(
                actor=Actor(user=world.executive), policy=world.churn_policy, requirements=[]
            )
        policy_approval_requirements_set(
            actor=Actor(user=world.governance), policy=world.churn_policy, requirements=[(governance, 1)]
        )
        requirement = ApprovalRequirement.objects.get(policy=world.churn_policy)
        assert requirement.history.first().history_user == world.governance
        assert ApprovalRequirement.history.filter(policy_id=world.churn_policy.pk, history_type="-").exists()
