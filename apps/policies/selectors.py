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
                    Prefetch("rules", queryset=Rule.objects.order_by("order", "pk")),
                    Prefetch("approvals", queryset=Approval.objects.select_related("approver")),
                ),
            )
        )
        .get(pk=pk)
    )
