from dataclasses import dataclass, field

from django.db.models import Prefetch, QuerySet

from apps.core.permissions import restrict

from .models import Approval, Policy, PolicyVersion, Rule


def policy_list(*, user) -> QuerySet[Policy]:
    return restrict(Policy.objects.all(), user, "view_policy")


def policy_active_version(*, policy_id: int) -> PolicyVersion | None:
    return (
        PolicyVersion.objects.select_related("policy")
        .filter(policy_id=policy_id, state=PolicyVersion.State.ACTIVE)
        .first()
    )


def policy_versions_awaiting_approval(*, user) -> QuerySet[PolicyVersion]:
    """Versions in review on policies the user may approve, excluding their own (maker-checker)."""
    policies = restrict(Policy.objects.all(), user, "approve_policy")
    return (
        PolicyVersion.objects.filter(policy__in=policies, state=PolicyVersion.State.IN_REVIEW)
        .exclude(author=user)
        .select_related("policy", "author")
        .order_by("submitted_at")
    )


def policy_detail(*, user, pk: int) -> Policy:
    """The policy with its versions and rules; raises Policy.DoesNotExist when not visible to `user`."""
    return (
        policy_list(user=user)
        .prefetch_related(
            Prefetch(
                "versions",
                queryset=PolicyVersion.objects.select_related("author").prefetch_related(
                    Prefetch("rules", queryset=Rule.objects.select_related("review_queue").order_by("order", "pk")),
                    Prefetch("approvals", queryset=Approval.objects.select_related("approver")),
                ),
            )
        )
        .get(pk=pk)
    )


def policy_version_get(*, user, policy_id: int, pk: int) -> PolicyVersion:
    """One version of a policy visible to `user`; raises PolicyVersion.DoesNotExist otherwise."""
    return (
        PolicyVersion.objects.filter(policy__in=policy_list(user=user), policy_id=policy_id)
        .select_related("policy", "author")
        .prefetch_related(
            Prefetch("rules", queryset=Rule.objects.order_by("order", "pk")),
            Prefetch("approvals", queryset=Approval.objects.select_related("approver")),
        )
        .get(pk=pk)
    )


def policy_version_baseline(version: PolicyVersion) -> PolicyVersion | None:
    """What a version is compared with by default: the active version, or else the one numbered before it."""
    versions = PolicyVersion.objects.filter(policy_id=version.policy_id).exclude(pk=version.pk)
    return (
        versions.filter(state=PolicyVersion.State.ACTIVE).first()
        or versions.filter(number__lt=version.number).order_by("-number").first()
    )


DIFF_FIELDS = (
    "condition",
    "effect",
    "description",
    "reviewers",
    "review_queue_id",
    "redact_fields",
    "redact_patterns",
)


@dataclass
class RuleChange:
    name: str
    status: str  # added, removed, changed, unchanged
    old: Rule | None
    new: Rule | None
    fields: list[str] = field(default_factory=list)  # what changed: DIFF_FIELDS, and order


def policy_version_diff(version: PolicyVersion, against: PolicyVersion | None) -> list[RuleChange]:
    """Rules added, removed and changed between `against` and `version`, matched by name (case-insensitive,
    names are unique within a version), in the order of `version` with removed rules last. "order" counts as
    changed when a rule's place among the rules both versions share differs (an added or removed rule alone
    moves nothing)."""
    new_rules = list(version.rules.order_by("order", "pk"))
    old_rules = {rule.name.lower(): rule for rule in against.rules.order_by("order", "pk")} if against else {}
    new_keys = {rule.name.lower() for rule in new_rules}
    old_rank = {key: rank for rank, key in enumerate(k for k in old_rules if k in new_keys)}
    new_rank = {key: rank for rank, key in enumerate(r.name.lower() for r in new_rules if r.name.lower() in old_rules)}
    changes = []
    for rule in new_rules:
        key = rule.name.lower()
        old = old_rules.pop(key, None)
        if old is None:
            changes.append(RuleChange(rule.name, "added", None, rule))
            continue
        fields = [name for name in DIFF_FIELDS if getattr(old, name) != getattr(rule, name)]
        if old_rank[key] != new_rank[key]:
            fields.append("order")
        changes.append(RuleChange(rule.name, "changed" if fields else "unchanged", old, rule, fields))
    changes += [RuleChange(old.name, "removed", old, None) for old in old_rules.values()]
    return changes


def policy_history(*, policy: Policy, limit: int = 100) -> list:
    """Every recorded change of the policy's versions, rules and approval requirements, newest first."""
    from .models import ApprovalRequirement

    records = [
        *PolicyVersion.history.filter(policy_id=policy.pk).select_related("history_user")[:limit],
        *Rule.history.filter(version__policy_id=policy.pk).select_related("history_user")[:limit],
        *ApprovalRequirement.history.filter(policy_id=policy.pk).select_related("history_user", "group")[:limit],
    ]
    return sorted(records, key=lambda record: record.history_date, reverse=True)[:limit]
