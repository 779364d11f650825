"""One active version per policy, swapped atomically; effective dates; the emergency path and its expiry."""

import datetime as dt
import threading

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.policies.models import PolicyVersion
from apps.policies.selectors import policy_active_version
from apps.policies.services import (
    policy_emergencies_expire,
    policy_version_activate,
    policy_version_create,
    policy_version_emergency_activate,
    policy_version_review,
    policy_version_schedule,
    policy_version_submit,
    policy_versions_activate_due,
)
from apps.policies.tasks import policies_schedule_task

RULE = {"name": "Low confidence", "condition": "signals.confidence < 0.5", "effect": "review"}


def _approved(world, replayed, rules=(RULE,)):
    version = policy_version_create(actor=Actor(user=world.admin), policy=world.churn_policy, rules=list(rules))
    policy_version_submit(actor=Actor(user=world.admin), version=version)
    replayed(version, world.admin)
    version = policy_version_review(
        actor=Actor(user=world.governance), version=version, decision="approve", comment="ok"
    )
    assert version.state == PolicyVersion.State.APPROVED
    return version


def _active(policy):
    return list(PolicyVersion.objects.filter(policy=policy, state="active").values_list("number", flat=True))


def test_the_database_refuses_a_second_active_version(world):
    v1 = PolicyVersion.objects.get(policy=world.churn_policy, state="active")
    draft = policy_version_create(actor=Actor(user=world.admin), policy=world.churn_policy, rules=[RULE])
    draft.state = PolicyVersion.State.ACTIVE
    with pytest.raises(IntegrityError), transaction.atomic():
        draft.save()
    assert _active(world.churn_policy) == [v1.number]


def test_a_failure_mid_activation_leaves_the_old_version_active(world, replayed):
    """Retiring the old version and activating the new one commit together or not at all."""
    v1 = PolicyVersion.objects.get(policy=world.churn_policy, state="active")
    v2 = _approved(world, replayed)
    updates = []

    def fail_second_update(execute, sql, params, many, context):
        if sql.startswith('UPDATE "policies_policyversion"'):
            updates.append(sql)
            if len(updates) == 2:  # v1 is already retired inside the transaction
                raise DatabaseError("connection lost")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_second_update), pytest.raises(DatabaseError):
        policy_version_activate(actor=Actor(user=world.admin), version=v2)
    assert len(updates) == 2
    assert _active(world.churn_policy) == [v1.number]
    v2.refresh_from_db()
    assert v2.state == PolicyVersion.State.APPROVED and v2.history.count() == 3  # created, submitted, approved


@pytest.mark.django_db(transaction=True)
def test_activation_mid_traffic_is_atomic(world, replayed):
    """A reader on another connection (as _recommendations_create reads the active version) sees the old or
    the new version while versions are swapped, never none and never two."""
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent connections: run with DATABASE_URL=postgres://…")
    versions = [_approved(world, replayed, [{**RULE, "name": f"Rule {i}"}]) for i in range(6)]
    policy_id = world.churn_policy.pk
    seen, counts, stop = [], [], threading.Event()

    def reader():
        try:
            while not stop.is_set():
                version = policy_active_version(policy_id=policy_id)
                seen.append(version.number if version else None)
                counts.append(PolicyVersion.objects.filter(policy_id=policy_id, state="active").count())
        finally:
            connection.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in versions:
            policy_version_activate(actor=Actor(user=world.admin), version=version)
    finally:
        stop.set()
        thread.join(10)
    assert seen and None not in seen
    assert set(counts) == {1}
    assert len(set(seen)) > 1  # the reader did run while versions changed
    assert _active(world.churn_policy) == [versions[-1].number]


class TestEffectiveFrom:
    def test_a_version_becomes_active_at_its_date_once(self, world, replayed):
        v2 = _approved(world, replayed)
        start = clock.now()
        policy_version_schedule(
            actor=Actor(user=world.governance), version=v2, effective_from=start + dt.timedelta(hours=1)
        )
        assert policy_versions_activate_due(now=start + dt.timedelta(minutes=30)) == []
        assert _active(world.churn_policy) == [1]
        assert policy_versions_activate_due(now=start + dt.timedelta(hours=2)) == [v2.pk]
        assert policy_versions_activate_due(now=start + dt.timedelta(hours=3)) == []  # idempotent
        assert _active(world.churn_policy) == [v2.number]
        v2.refresh_from_db()
        record = v2.history.first()
        assert record.history_user == world.governance  # who set the date
        assert record.history_change_reason == "Activated at its effective date"

    def test_the_beat_task_activates_due_versions(self, world, replayed):
        v2 = _approved(world, replayed)
        soon = clock.now() + dt.timedelta(minutes=5)
        policy_version_schedule(actor=Actor(user=world.governance), version=v2, effective_from=soon)
        assert policies_schedule_task() == {"activated": [], "emergencies_expired": []}
        with clock.simulated(soon + dt.timedelta(seconds=1)):
            assert policies_schedule_task()["activated"] == [v2.pk]
        assert _active(world.churn_policy) == [v2.number]

    def test_only_an_approved_version_gets_a_date_and_not_in_the_past(self, world, replayed):
        with pytest.raises(ServiceError, match="Only an approved version"):
            policy_version_schedule(
                actor=Actor(user=world.governance), version=world.pending_version, effective_from=clock.now()
            )
        v2 = _approved(world, replayed)
        with pytest.raises(ServiceError) as error:
            policy_version_schedule(
                actor=Actor(user=world.governance), version=v2, effective_from=clock.now() - dt.timedelta(days=1)
            )
        assert error.value.field == "effective_from"
        with pytest.raises(PermissionDenied):
            policy_version_schedule(actor=Actor(user=world.executive), version=v2, effective_from=None)


class TestEmergency:
    def _draft(self, world):
        return policy_version_create(
            actor=Actor(user=world.admin), policy=world.churn_policy, rules=[{**RULE, "effect": "block"}]
        )

    def test_emergency_activation_is_flagged_and_expires_back_to_the_previous_version(self, world):
        v1 = PolicyVersion.objects.get(policy=world.churn_policy, state="active")
        draft = self._draft(world)
        version = policy_version_emergency_activate(
            actor=Actor(user=world.governance), version=draft, reason="Model leaking prices", hours=4
        )
        assert version.state == PolicyVersion.State.ACTIVE and version.emergency
        assert version.emergency_expires_at == version.activated_at + dt.timedelta(hours=4)
        assert world.churn_policy.has_emergency and world.churn_policy.emergency_version == version
        assert policy_active_version(policy_id=world.churn_policy.pk) == version
        assert policy_emergencies_expire(now=version.activated_at + dt.timedelta(hours=3)) == []
        assert policy_emergencies_expire(now=version.emergency_expires_at) == [version.pk]
        assert policy_emergencies_expire(now=version.emergency_expires_at) == []  # idempotent
        version.refresh_from_db()
        v1.refresh_from_db()
        assert version.state == PolicyVersion.State.RETIRED and v1.state == PolicyVersion.State.ACTIVE
        assert not world.churn_policy.has_emergency
        assert v1.history.first().history_change_reason == f"Restored after emergency v{version.number} expired"
        assert v1.history.first().history_user == world.governance
        assert version.history.first().history_change_reason == "Emergency expired"

    def test_never_the_author_and_only_approvers(self, world):
        draft = self._draft(world)
        with pytest.raises(PermissionDenied, match="author"):
            policy_version_emergency_activate(actor=Actor(user=world.admin), version=draft, reason="x", hours=1)
        with pytest.raises(PermissionDenied):
            policy_version_emergency_activate(actor=Actor(user=world.executive), version=draft, reason="x", hours=1)
        assert _active(world.churn_policy) == [1]

    @pytest.mark.parametrize(
        ("reason", "hours", "field"), [(" ", 4, "reason"), ("why", 0, "hours"), ("why", 73, "hours")]
    )
    def test_a_reason_and_a_bounded_duration(self, world, reason, hours, field):
        draft = self._draft(world)
        with pytest.raises(ServiceError) as error:
            policy_version_emergency_activate(
                actor=Actor(user=world.governance), version=draft, reason=reason, hours=hours
            )
        assert error.value.field == field
        draft.refresh_from_db()
        assert draft.state == PolicyVersion.State.DRAFT and not draft.emergency
