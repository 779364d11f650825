"""Policy versions: draft → in review → approved (M of N, never by the author) → active → retired."""

import datetime as dt
import re

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.reviews.models import ReviewQueue

from .evaluation import ConditionError, compile_condition
from .models import Approval, ApprovalRequirement, Policy, PolicyVersion, Rule

EMERGENCY_MAX_HOURS = 72
REPLAY_REQUIRED = "Replay this version on recent outputs before approving (the last replay is older than the last edit)"


def _save(obj, actor: Actor, reason: str = "", **kwargs):
    obj._history_user = actor.history_user
    if reason:
        obj._change_reason = reason[:100]  # simple-history's column is 100 characters
    obj.save(**kwargs)


MAX_REVIEWERS = 5
MAX_REDACTIONS = 20
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def rule_parameter_errors(rule: dict, label: str, key: str) -> dict[str, str]:
    """Faults of an effect's parameters, including a parameter that the rule's effect would never use."""
    errors: dict[str, str] = {}
    effect = rule.get("effect")
    reviewers = rule.get("reviewers", 1)
    queue = rule.get("review_queue")
    fields, patterns = rule.get("redact_fields") or [], rule.get("redact_patterns") or []
    if isinstance(reviewers, bool) or not isinstance(reviewers, int) or not 1 <= reviewers <= MAX_REVIEWERS:
        errors[f"{key}.reviewers"] = f"{label}: reviewers is a whole number from 1 to {MAX_REVIEWERS}."
    elif effect != Rule.Effect.REVIEW and (reviewers != 1 or queue):
        errors[f"{key}.reviewers"] = f"{label}: reviewers and a queue only apply to a rule that requires review."
    if queue is not None and not (isinstance(queue, ReviewQueue) or ReviewQueue.objects.filter(pk=queue).exists()):
        errors[f"{key}.review_queue"] = f"{label}: no such review queue."
    if not isinstance(fields, list) or not all(isinstance(f, str) and _FIELD_NAME.match(f) for f in fields):
        errors[f"{key}.redact_fields"] = f"{label}: redacted fields are output field names (letters, digits, _)."
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        errors[f"{key}.redact_patterns"] = f"{label}: redacted patterns are non-empty regular expressions."
    else:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors[f"{key}.redact_patterns"] = f"{label}: pattern {pattern!r} is not valid: {exc}."
                break
    if isinstance(fields, list) and isinstance(patterns, list):
        if len(fields) + len(patterns) > MAX_REDACTIONS:
            errors[f"{key}.redact_patterns"] = f"{label}: at most {MAX_REDACTIONS} redacted fields and patterns."
        elif effect != Rule.Effect.REDACT and (fields or patterns):
            errors[f"{key}.redact_fields"] = f"{label}: redacted fields and patterns only apply to a redact rule."
    return errors


def rules_errors(rules: list[dict]) -> dict[str, str]:
    """Every fault of a rule list, keyed `rules[i].field`: empty name, duplicate name, a condition that does
    not compile (with line and column), an unknown effect, effect parameters that are wrong or contradict the
    effect. Forms show them all; services refuse on any."""
    errors: dict[str, str] = {}
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        label = f"Rule {index + 1}" + (f" ({rule.get('name')})" if rule.get("name") else "")
        name = str(rule.get("name") or "").strip()
        if not name:
            errors[f"rules[{index}].name"] = f"{label}: a name is required."
        elif name.lower() in seen:
            errors[f"rules[{index}].name"] = f"{label}: another rule already has this name."
        seen.add(name.lower())
        try:
            compile_condition(str(rule.get("condition") or ""))
        except ConditionError as exc:
            errors[f"rules[{index}].condition"] = f"{label}: {exc}"
        if rule.get("effect") not in Rule.Effect.values:
            errors[f"rules[{index}].effect"] = f"{label}: unknown effect {rule.get('effect')!r}."
        errors.update(rule_parameter_errors(rule, label, f"rules[{index}]"))
    return errors


@transaction.atomic
def policy_version_create(*, actor: Actor, policy: Policy, rules: list[dict], note: str = "") -> PolicyVersion:
    """A new draft with its rules. Needs change_policy. Every condition must compile (errors name the rule)."""
    if not has_object_permission(actor.user, "change_policy", policy):
        raise PermissionDenied()
    if not rules:
        raise ServiceError("A version needs at least one rule.", field="rules")
    errors = rules_errors(rules)
    if errors:
        field, message = next(iter(errors.items()))
        raise ServiceError(message, field=field)
    last = PolicyVersion.objects.select_for_update().filter(policy=policy).order_by("-number").first()
    version = PolicyVersion(policy=policy, number=(last.number + 1) if last else 1, author=actor.user, note=note)
    _save(version, actor)
    for order, rule in enumerate(rules):
        _save(
            Rule(
                version=version,
                order=order,
                name=rule["name"].strip(),
                description=rule.get("description", ""),
                condition=rule["condition"],
                effect=rule["effect"],
                reviewers=rule.get("reviewers", 1),
                review_queue_id=getattr(rule.get("review_queue"), "pk", rule.get("review_queue")),
                redact_fields=rule.get("redact_fields") or [],
                redact_patterns=rule.get("redact_patterns") or [],
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
    """One approver's yes/no, with a comment. Needs approve_policy on the policy and, when the policy names
    approver groups, membership of one of them; the author never reviews (maker-checker). A rejection
    rejects; the version is approved once every requirement is met (M of N, see approvals_satisfied).
    Approving a change to a policy that has an active version needs a replay of the current rules: the
    first version of a policy has no production baseline and no past decisions to replay against."""
    version = PolicyVersion.objects.select_for_update(of=("self",)).select_related("policy").get(pk=version.pk)
    if not has_object_permission(actor.user, "approve_policy", version.policy):
        raise PermissionDenied()
    if version.author_id == actor.user.pk:
        raise PermissionDenied("The author of a version cannot approve or reject it (maker-checker).")
    group_ids = set(version.policy.approval_requirements.values_list("group_id", flat=True))
    if group_ids and not actor.user.groups.filter(pk__in=group_ids).exists():
        names = ", ".join(sorted(Group.objects.filter(pk__in=group_ids).values_list("name", flat=True)))
        raise PermissionDenied(f"Only members of {names} review versions of this policy.")
    if version.state != PolicyVersion.State.IN_REVIEW:
        raise ServiceError(f"This version is {version.get_state_display()}, not in review.")
    if decision not in Approval.Decision.values:
        raise ServiceError(f"Unknown decision {decision!r}.", field="decision")
    if not comment.strip():
        raise ServiceError("A comment is required.", field="comment")
    if version.approvals.filter(approver=actor.user).exists():
        raise ServiceError("You already reviewed this version.")
    if decision == Approval.Decision.APPROVE and _replay_required(version) and not _replay_is_current(version):
        raise ServiceError(REPLAY_REQUIRED, code="replay_required")
    Approval.objects.create(version=version, approver=actor.user, decision=decision, comment=comment.strip())
    if decision == Approval.Decision.REJECT:
        version.state = PolicyVersion.State.REJECTED
    elif approvals_satisfied(version):
        version.state = PolicyVersion.State.APPROVED
    _save(version, actor, f"{decision.capitalize()}d: {comment.strip()}")
    return version


def _replay_required(version: PolicyVersion) -> bool:
    return PolicyVersion.objects.filter(policy_id=version.policy_id, state=PolicyVersion.State.ACTIVE).exists()


def _replay_is_current(version: PolicyVersion) -> bool:
    from .replay import replay_is_current  # the replay module imports these services

    return replay_is_current(version)


def approvals_satisfied(version: PolicyVersion) -> bool:
    """Every requirement of the policy (M members of a group) is met by distinct approvers, each counted
    for one requirement only (an approver in two groups fills one seat). A policy without requirements
    needs one approval. The author never counts."""
    requirements = list(version.policy.approval_requirements.all())
    approvers = list(
        version.approvals.filter(decision=Approval.Decision.APPROVE)
        .exclude(approver_id=version.author_id)
        .values_list("approver_id", flat=True)
    )
    if not requirements:
        return len(approvers) >= 1
    return _seats_filled([(req.group_id, req.count) for req in requirements], approvers)


def _seats_filled(requirements: list[tuple[int, int]], user_ids: list[int]) -> bool:
    """Whether `user_ids` can fill every seat (group, count), one seat each. Seats are filled by augmenting
    paths (bipartite matching), so the order of the users never matters."""
    seats = [group_id for group_id, count in requirements for _ in range(count)]
    groups_of = _group_ids(user_ids)
    holder: dict[int, int] = {}  # seat index → user

    def place(user_id: int, tried: set[int]) -> bool:
        for seat, group_id in enumerate(seats):
            if group_id in groups_of.get(user_id, ()) and seat not in tried:
                tried.add(seat)
                if seat not in holder or place(holder[seat], tried):
                    holder[seat] = user_id
                    return True
        return False

    for user_id in user_ids:
        place(user_id, set())
    return len(holder) == len(seats)


def _group_ids(user_ids: list[int]) -> dict[int, set[int]]:
    memberships: dict[int, set[int]] = {user_id: set() for user_id in user_ids}
    through = get_user_model().groups.through
    for user_id, group_id in through.objects.filter(user_id__in=user_ids).values_list("user_id", "group_id"):
        memberships[user_id].add(group_id)
    return memberships


@transaction.atomic
def policy_approval_requirements_set(
    *, actor: Actor, policy: Policy, requirements: list[tuple[Group, int]]
) -> list[ApprovalRequirement]:
    """Replace the policy's M-of-N requirements. Needs change_policy. Each count ≥ 1, each group once, and
    the groups' members must be able to fill every seat (one seat per person), or no version could ever
    be approved. An empty list means: one approval from anyone holding approve_policy."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    if not has_object_permission(actor.user, "change_policy", policy):
        raise PermissionDenied()
    seen: set[int] = set()
    for index, (group, count) in enumerate(requirements):
        if count is None or count < 1:
            raise ServiceError(f"{group.name}: the count must be at least 1.", field=f"requirements[{index}].count")
        if group.pk in seen:
            raise ServiceError(f"{group.name} is named twice.", field=f"requirements[{index}].group")
        seen.add(group.pk)
        members = group.user_set.filter(is_active=True).count()
        if count > members:
            raise ServiceError(
                f"{group.name} has {members} active member{'s' if members != 1 else ''}; "
                f"{count} approvals from it could never be given.",
                field=f"requirements[{index}].count",
            )
    members = list(
        get_user_model()
        .objects.filter(is_active=True, groups__in=[group for group, _ in requirements])
        .distinct()
        .values_list("pk", flat=True)
    )
    if requirements and not _seats_filled([(group.pk, count) for group, count in requirements], members):
        raise ServiceError(
            "These requirements need more distinct people than the groups have (one person fills one seat).",
            field="requirements",
        )
    for old in policy.approval_requirements.all():
        old._history_user = actor.history_user
        old.delete()
    created = []
    for group, count in requirements:
        requirement = ApprovalRequirement(policy=policy, group=group, count=count)
        _save(requirement, actor, "Approval requirements changed")
        created.append(requirement)
    return created


def _activate(version: PolicyVersion, actor: Actor, reason: str, *, now: dt.datetime) -> PolicyVersion:
    """Retire the active version and activate `version`, inside the caller's transaction. The policy row is
    locked first, so concurrent activations of one policy queue up; readers on other connections see the
    old or the new active version, never none (both updates commit together), and the partial unique
    constraint policy_one_active_version refuses a second active version whatever happens."""
    Policy.objects.select_for_update().filter(pk=version.policy_id).first()
    for previous in PolicyVersion.objects.select_for_update().filter(
        policy_id=version.policy_id, state=PolicyVersion.State.ACTIVE
    ):
        previous.state = PolicyVersion.State.RETIRED
        previous.retired_at = now
        _save(previous, actor, f"Replaced by v{version.number}")
    version.state = PolicyVersion.State.ACTIVE
    version.activated_at = now
    version.retired_at = None
    _save(version, actor, reason)
    return version


def _locked(version: PolicyVersion) -> PolicyVersion:
    return PolicyVersion.objects.select_for_update(of=("self",)).select_related("policy").get(pk=version.pk)


@transaction.atomic
def policy_version_activate(*, actor: Actor, version: PolicyVersion) -> PolicyVersion:
    """Make an approved version the active one now, retiring the previous one in the same transaction.
    Needs change_policy."""
    version = _locked(version)
    if not has_object_permission(actor.user, "change_policy", version.policy):
        raise PermissionDenied()
    if version.state != PolicyVersion.State.APPROVED:
        raise ServiceError("Only an approved version can be activated.")
    return _activate(version, actor, "Activated", now=clock.now())


@transaction.atomic
def policy_version_schedule(*, actor: Actor, version: PolicyVersion, effective_from: dt.datetime | None):
    """When an approved version becomes active (the beat task policies_schedule_task activates it); None
    clears the date. Needs change_policy; the date may not lie in the past."""
    version = _locked(version)
    if not has_object_permission(actor.user, "change_policy", version.policy):
        raise PermissionDenied()
    if version.state != PolicyVersion.State.APPROVED:
        raise ServiceError("Only an approved version can be given an effective date.")
    if effective_from is not None and effective_from < clock.now() - dt.timedelta(minutes=1):
        raise ServiceError(
            "The effective date lies in the past; activate the version now instead.", field="effective_from"
        )
    version.effective_from = effective_from
    _save(version, actor, f"Effective from {effective_from:%Y-%m-%d %H:%M}" if effective_from else "Schedule cleared")
    return version


def policy_versions_activate_due(*, now: dt.datetime | None = None) -> list[int]:
    """Activate approved versions whose effective_from has come (beat). Idempotent: a version activated
    once is no longer approved. The change is recorded for the user who set the date."""
    now = now or clock.now()
    activated = []
    due = PolicyVersion.objects.filter(state=PolicyVersion.State.APPROVED, effective_from__lte=now)
    for version_id in due.order_by("effective_from", "pk").values_list("pk", flat=True):
        with transaction.atomic():
            version = PolicyVersion.objects.select_for_update(of=("self",)).get(pk=version_id)
            if (
                version.state != PolicyVersion.State.APPROVED
                or not version.effective_from
                or version.effective_from > now
            ):
                continue
            scheduled = version.history.exclude(history_user=None).first()
            actor = Actor.for_system("policy-schedule", on_behalf_of=scheduled.history_user if scheduled else None)
            _activate(version, actor, "Activated at its effective date", now=now)
            activated.append(version.pk)
    return activated


@transaction.atomic
def policy_version_emergency_activate(
    *, actor: Actor, version: PolicyVersion, reason: str, hours: int
) -> PolicyVersion:
    """The emergency path: one approver (approve_policy, never the author) activates a version at once,
    without M of N or replay. It is flagged as an emergency everywhere and retired automatically after
    `hours` (at most EMERGENCY_MAX_HOURS), when the version it replaced becomes active again."""
    version = _locked(version)
    if not has_object_permission(actor.user, "approve_policy", version.policy):
        raise PermissionDenied()
    if version.author_id == actor.user.pk:
        raise PermissionDenied("The author of a version cannot activate it in an emergency (maker-checker).")
    if not reason.strip():
        raise ServiceError("Say why this cannot wait for the normal approval.", field="reason")
    if not isinstance(hours, int) or not 1 <= hours <= EMERGENCY_MAX_HOURS:
        raise ServiceError(f"An emergency lasts 1 to {EMERGENCY_MAX_HOURS} hours.", field="hours")
    if version.state not in (PolicyVersion.State.DRAFT, PolicyVersion.State.IN_REVIEW, PolicyVersion.State.APPROVED):
        raise ServiceError(f"This version is {version.get_state_display()}; it cannot be activated.")
    if not version.rules.exists():
        raise ServiceError("A version needs at least one rule.", field="rules")
    if not PolicyVersion.objects.filter(policy=version.policy, state=PolicyVersion.State.ACTIVE).exists():
        # When it expires, the version it replaced comes back: a first version has none to come back to.
        raise ServiceError("The emergency path changes an active policy; a first version needs the normal approval.")
    now = clock.now()
    version.emergency = True
    version.emergency_reason = reason.strip()
    version.emergency_expires_at = now + dt.timedelta(hours=hours)
    return _activate(version, actor, f"Emergency: {reason.strip()}", now=now)


def policy_emergencies_expire(*, now: dt.datetime | None = None) -> list[int]:
    """Retire active emergency versions whose time is up and restore the version each one replaced (beat).
    Idempotent: an expired version is no longer active."""
    now = now or clock.now()
    expired = []
    due = PolicyVersion.objects.filter(state=PolicyVersion.State.ACTIVE, emergency=True, emergency_expires_at__lte=now)
    for version_id in due.values_list("pk", flat=True):
        with transaction.atomic():
            version = PolicyVersion.objects.select_for_update(of=("self",)).get(pk=version_id)
            if version.state != PolicyVersion.State.ACTIVE or version.emergency_expires_at > now:
                continue
            Policy.objects.select_for_update().filter(pk=version.policy_id).first()
            emergency_by = version.history.exclude(history_user=None).first()
            actor = Actor.for_system(
                "policy-emergency-expiry", on_behalf_of=emergency_by.history_user if emergency_by else None
            )
            version.state = PolicyVersion.State.RETIRED
            version.retired_at = now
            _save(version, actor, "Emergency expired")
            previous = (
                PolicyVersion.objects.select_for_update()
                .filter(
                    policy_id=version.policy_id,
                    state=PolicyVersion.State.RETIRED,
                    emergency=False,
                    retired_at__lte=version.activated_at,
                )
                .order_by("-retired_at", "-number")
                .first()
            )
            if previous is not None:
                _activate(previous, actor, f"Restored after emergency v{version.number} expired", now=now)
            expired.append(version.pk)
    return expired
