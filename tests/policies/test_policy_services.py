import pytest

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.policies import evaluation
from apps.policies.models import PolicyVersion
from apps.policies.services import (
    policy_version_activate,
    policy_version_create,
    policy_version_review,
    policy_version_submit,
)

RULE = {"name": "Low confidence", "condition": "signals.confidence < 0.5", "effect": "review"}


def test_maker_checker_author_never_approves(world):
    governance = Actor(user=world.governance)
    version = policy_version_create(actor=governance, policy=world.churn_policy, rules=[RULE])
    policy_version_submit(actor=governance, version=version)
    with pytest.raises(PermissionDenied):
        policy_version_review(actor=governance, version=version, decision="approve", comment="mine")
    version.refresh_from_db()
    assert version.state == PolicyVersion.State.IN_REVIEW and not version.approvals.exists()


def test_activation_retires_the_previous_version(world, replayed):
    active = PolicyVersion.objects.get(policy=world.churn_policy, state="active")
    version = policy_version_create(actor=Actor(user=world.admin), policy=world.churn_policy, rules=[RULE])
    policy_version_submit(actor=Actor(user=world.admin), version=version)
    with pytest.raises(ServiceError):
        policy_version_review(actor=Actor(user=world.governance), version=version, decision="approve", comment=" ")
    replayed(version, world.admin)
    policy_version_review(actor=Actor(user=world.governance), version=version, decision="approve", comment="ok")
    policy_version_activate(actor=Actor(user=world.admin), version=version)
    active.refresh_from_db()
    assert active.state == PolicyVersion.State.RETIRED
    assert PolicyVersion.objects.filter(policy=world.churn_policy, state="active").get() == version
    assert version.history.first().history_user == world.admin


def test_bad_cel_is_refused_with_the_rule_named(world):
    with pytest.raises(ServiceError) as error:
        policy_version_create(
            actor=Actor(user=world.governance),
            policy=world.churn_policy,
            rules=[RULE, {"name": "Broken", "condition": "signals.confidence <", "effect": "review"}],
        )
    assert error.value.field == "rules[1].condition" and "Broken" in error.value.message
    with pytest.raises(ServiceError) as error:
        policy_version_create(
            actor=Actor(user=world.governance),
            policy=world.churn_policy,
            rules=[{"name": "Typo", "condition": "outptu.text == ''", "effect": "block"}],
        )
    assert "outptu" in error.value.message
    assert PolicyVersion.objects.filter(policy=world.churn_policy).count() == 1  # nothing saved half


def test_only_granted_officers_edit_a_policy(world):
    with pytest.raises(PermissionDenied):
        policy_version_create(actor=Actor(user=world.executive), policy=world.churn_policy, rules=[RULE])


def test_a_rule_that_cannot_be_evaluated_sends_to_review(world):
    version = PolicyVersion.objects.get(policy=world.replies_policy, state="active")
    verdict = evaluation.evaluate(
        version,
        output={"text": "Here is how to reset your password."},
        context={},  # no "subject": the privacy rule cannot be evaluated
        action={},
        use_case={},
        subject="TCK-1",
        confidence=0.9,
        freshness="fresh",
        cost=0.0,
    )
    assert verdict.effect == "review"
    assert any(f["name"] == "Privacy request" and "error" in f for f in verdict.fired)


def test_redaction_removes_pii_from_the_delivered_text(world):
    version = PolicyVersion.objects.get(policy=world.replies_policy, state="active")
    verdict = evaluation.evaluate(
        version,
        output={"text": "Write to ana@globex.example or call +1 415 555 0123."},
        context={"subject": "Password"},
        action={},
        use_case={},
        subject="TCK-1",
        confidence=0.9,
        freshness="fresh",
        cost=0.0,
    )
    assert verdict.effect == "redact" and verdict.redactions == 2
    assert "ana@globex.example" not in verdict.output["text"] and "[email redacted]" in verdict.output["text"]


def test_a_draft_edited_after_it_was_evaluated_is_judged_by_its_new_rules_once_submitted(world):
    governance = Actor(user=world.governance)
    version = policy_version_create(actor=governance, policy=world.churn_policy, rules=[RULE])
    assert evaluation.rules_for(version)[0][3] == "signals.confidence < 0.5"  # e.g. the rule test panel
    version.rules.update(condition="signals.confidence < 0.9")  # edited while still a draft
    policy_version_submit(actor=governance, version=version)
    version.refresh_from_db()
    assert evaluation.rules_for(version)[0][3] == "signals.confidence < 0.9"
