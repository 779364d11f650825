"""Policy versions: draft → in review → approved (M of N, never by the author) → active → retired."""

from django.db import transaction

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission

from .evaluation import ConditionError, compile_condition
from .models import Approval, Policy, PolicyVersion, Rule


def _save(obj, actor: Actor, **kwargs):
    obj._history_user = actor.history_user
    obj.save(**kwargs)


@transaction.atomic
def policy_version_create(*, actor: Actor, policy: Policy, rules: list[dict], note: str = "") -> PolicyVersion:
    """A new draft with its rules. Needs change_policy. Every condition must compile (errors name the rule)."""
    if not has_object_permission(actor.user, "change_policy", policy):
        raise PermissionDenied()
    for index, rule in enumerate(rules):
        try:
            compile_condition(rule.get("condition", ""))
        except ConditionError as exc:
            raise ServiceError(
                f"Rule {index + 1} ({rule.get('name', '')}): {exc}", field=f"rules[{index}].condition"
            ) from exc
        if rule.get("effect") not in Rule.Effect.values:
            raise ServiceError(
                f"Rule {index + 1}: unknown effect {rule.get('effect')!r}", field=f"rules[{index}].effect"
            )
    last = PolicyVersion.objects.select_for_update().filter(policy=policy).order_by("-number").first()
    version = PolicyVersion(policy=policy, number=(last.number + 1) if last else 1, author=actor.user, note=note)
    _save(version, actor)
    for order, rule in enumerate(rules):
        _save(
            Rule(
                version=version,
                order=order,
                name=rule["name"],
                description=rule.get("description", ""),
                condition=rule["condition"],
                effect=rule["effect"],
            ),
            actor,
        )
    return version


@transaction.atomic
def policy_version_submit(*, actor: Actor, version: PolicyVersion) -> PolicyVersion:
    """Freeze a draft and ask for approval. Needs change_policy."""
    version = PolicyVersion.objects.select_for_update().get(pk=version.pk)
    if not has_object_permission(actor.user, "change_policy", version.policy):
        raise PermissionDenied()
    if version.state not in (PolicyVersion.State.DRAFT, PolicyVersion.State.REJECTED):
        raise ServiceError(f"Only a draft can be submitted; this version is {version.get_state_display()}.")
    if not version.rules.exists():
        raise ServiceError("A version needs at least one rule.", field="rules")
    version.state = PolicyVersion.State.IN_REVIEW
    version.submitted_at = clock.now()
    _save(version, actor)
    return version


@transaction.atomic
def policy_version_review(*, actor: Actor, version: PolicyVersion, decision: str, comment: str) -> PolicyVersion:
    """One approver's yes/no. Needs approve_policy; the author never approves; M of N approvals approve."""
    version = PolicyVersion.objects.select_for_update(of=("self",)).select_related("policy").get(pk=version.pk)
    if not has_object_permission(actor.user, "approve_policy", version.policy):
        raise PermissionDenied()
    if version.author_id == actor.user.pk:
        raise PermissionDenied("The author of a version cannot approve or reject it (maker-checker).")
    if version.state != PolicyVersion.State.IN_REVIEW:
        raise ServiceError(f"This version is {version.get_state_display()}, not in review.")
    if not comment.strip():
        raise ServiceError("A comment is required.", field="comment")
    if decision not in Approval.Decision.values:
        raise ServiceError(f"Unknown decision {decision!r}.", field="decision")
    if version.approvals.filter(approver=actor.user).exists():
        raise ServiceError("You already reviewed this version.")
    Approval.objects.create(version=version, approver=actor.user, decision=decision, comment=comment)
    if decision == Approval.Decision.REJECT:
        version.state = PolicyVersion.State.REJECTED
    elif approvals_satisfied(version):
        version.state = PolicyVersion.State.APPROVED
    _save(version, actor)
    return version


def approvals_satisfied(version: PolicyVersion) -> bool:
    """Every requirement of the policy (M members of a group) is met by distinct approvers, each counted
    for one requirement only (an approver in two groups fills one seat). A policy without requirements
    needs one approval. Seats are filled by augmenting paths, so the order of approvals never matters."""
    requirements = list(version.policy.approval_requirements.select_related("group"))
    approvers = list(
        version.approvals.filter(decision=Approval.Decision.APPROVE)
        .exclude(approver_id=version.author_id)
        .values_list("approver_id", flat=True)
    )
    if not requirements:
        return len(approvers) >= 1
    seats = [req.group_id for req in requirements for _ in range(req.count)]
    groups_of = {user_id: set(groups) for user_id, groups in _group_ids(approvers).items()}
    holder: dict[int, int] = {}  # seat index → approver

    def place(user_id: int, tried: set[int]) -> bool:
        for seat, group_id in enumerate(seats):
            if group_id in groups_of.get(user_id, ()) and seat not in tried:
                tried.add(seat)
                if seat not in holder or place(holder[seat], tried):
                    holder[seat] = user_id
                    return True
        return False

    for user_id in approvers:
        place(user_id, set())
    return len(holder) == len(seats)


def _group_ids(user_ids: list[int]) -> dict[int, list[int]]:
    from django.contrib.auth import get_user_model

    memberships: dict[int, list[int]] = {user_id: [] for user_id in user_ids}
    through = get_user_model().groups.through
    for user_id, group_id in through.objects.filter(user_id__in=user_ids).values_list("user_id", "group_id"):
        memberships[user_id].append(group_id)
    return memberships


@transaction.atomic
def policy_version_activate(*, actor: Actor, version: PolicyVersion) -> PolicyVersion:
    """Make an approved version the active one, retiring the previous one in the same transaction."""
    version = PolicyVersion.objects.select_for_update(of=("self",)).select_related("policy").get(pk=version.pk)
    if not has_object_permission(actor.user, "change_policy", version.policy):
        raise PermissionDenied()
    if version.state != PolicyVersion.State.APPROVED:
        raise ServiceError("Only an approved version can be activated.")
    now = clock.now()
    for previous in PolicyVersion.objects.select_for_update().filter(
        policy=version.policy, state=PolicyVersion.State.ACTIVE
    ):
        previous.state = PolicyVersion.State.RETIRED
        previous.retired_at = now
        _save(previous, actor)
    version.state = PolicyVersion.State.ACTIVE
    version.activated_at = now
    _save(version, actor)
    return version
