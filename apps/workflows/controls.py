"""The seven AI controls of PRODUCT.md, checked per use case: which are in place, and why not.

`use_case_controls` reads only what `with_control_data` loaded (annotations, select_related,
prefetch), so a list of use cases costs a fixed number of queries; without that data it queries.
"""

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.urls import reverse

from apps.connectors.models import Connector
from apps.core.formatting import duration_label
from apps.policies.models import PolicyVersion
from apps.reviews.models import ReviewQueueGroupObjectPermission

from .models import UseCase

REVIEW_CODENAME = "review_reviewqueue"


@dataclass(frozen=True)
class Fix:
    """One thing missing for a control, and the page where it is fixed."""

    text: str
    url: str


@dataclass(frozen=True)
class Control:
    key: str
    name: str
    passed: bool
    reason: str
    fixes: tuple[Fix, ...] = ()


CONTROL_NAMES = {
    "systems": "Systems of record",
    "access": "Access control",
    "data": "Data context",
    "workflow": "Workflow steps",
    "policy": "Policy",
    "delivery": "Delivery",
    "monitoring": "Monitoring",
}


def _active_version_subquery(field: str):
    return Subquery(
        PolicyVersion.objects.filter(policy_id=OuterRef("policy_id"), state=PolicyVersion.State.ACTIVE).values(field)[
            :1
        ]
    )


def with_control_data(queryset: QuerySet[UseCase]) -> QuerySet[UseCase]:
    """`queryset` with everything `use_case_controls` reads, in a fixed number of queries."""
    queue_reviewers = ReviewQueueGroupObjectPermission.objects.filter(
        content_object_id=OuterRef("review_queue_id"), permission__codename=REVIEW_CODENAME
    )
    return (
        queryset.select_related(
            "owner", "policy", "review_queue", "source_dataset__connector", "model_endpoint", "fallback_endpoint"
        )
        .prefetch_related("destinations")
        .annotate(
            queue_has_reviewers=Exists(queue_reviewers),
            active_policy_version_id=_active_version_subquery("pk"),
            active_policy_version_number=_active_version_subquery("number"),
        )
    )


def _queue_has_reviewers(use_case: UseCase) -> bool:
    value = getattr(use_case, "queue_has_reviewers", None)
    if value is not None:
        return bool(value)
    return ReviewQueueGroupObjectPermission.objects.filter(
        content_object_id=use_case.review_queue_id, permission__codename=REVIEW_CODENAME
    ).exists()


def _active_version_number(use_case: UseCase) -> int | None:
    if hasattr(use_case, "active_policy_version_number"):
        return use_case.active_policy_version_number
    version = PolicyVersion.objects.filter(policy_id=use_case.policy_id, state=PolicyVersion.State.ACTIVE).first()
    return version.number if version else None


def _control(key: str, problems: list[Fix], ok_reason: str) -> Control:
    return Control(
        key=key,
        name=CONTROL_NAMES[key],
        passed=not problems,
        reason="; ".join(problem.text for problem in problems) or ok_reason,
        fixes=tuple(problems),
    )


def use_case_controls(use_case: UseCase) -> list[Control]:
    """The seven controls in PRODUCT.md order; a failing control's reason says what is missing, and each of
    its fixes links to the page where it is put right."""
    dataset = use_case.source_dataset
    model = use_case.model_endpoint
    fallback = use_case.fallback_endpoint
    configuration = reverse("workflows:use-case-settings", args=[use_case.slug])
    connectors = reverse("connectors:connector-list")
    controls = []

    # 1. Systems of record: a readable source on a connector that is not known to fail, and a model.
    problems = []
    if dataset is None:
        problems.append(Fix("No source dataset", configuration))
    elif dataset.connector.health == Connector.Health.FAILING:
        problems.append(
            Fix(
                f"Source connector {dataset.connector.name} is failing",
                reverse("connectors:connector-detail", args=[dataset.connector_id]),
            )
        )
    if model is None:
        problems.append(Fix("No model endpoint", connectors))
    controls.append(_control("systems", problems, f"Reads {dataset} and calls {model}" if dataset and model else ""))

    # 2. Access control: outputs sent to review can be decided by someone.
    problems = []
    if use_case.review_queue_id is None:
        problems.append(Fix("No review queue", configuration))
    elif not _queue_has_reviewers(use_case):
        problems.append(
            Fix(
                f"Nobody is granted review on the queue {use_case.review_queue}",
                reverse("reviews:queue-detail", args=[use_case.review_queue_id]),
            )
        )
    controls.append(_control("access", problems, f"Reviewers are granted the queue {use_case.review_queue}"))

    # 3. Data context: the data an output is based on has a freshness SLA to be checked against.
    problems = []
    if dataset is None:
        problems.append(Fix("No source dataset", configuration))
    elif dataset.freshness_sla is None:
        problems.append(
            Fix(
                f"No freshness SLA on the source {dataset.name}",
                reverse("connectors:dataset-detail", args=[dataset.connector_id, dataset.pk]),
            )
        )
    controls.append(
        _control(
            "data",
            problems,
            f"Freshness SLA {duration_label(dataset.freshness_sla)} on {dataset.name}" if dataset else "",
        )
    )

    # 4. Workflow steps: model call with timeout, retries and a fallback.
    problems = []
    if model is None:
        problems.append(Fix("No model endpoint", connectors))
    if fallback is None:
        problems.append(Fix("No fallback model endpoint", configuration))
    if not use_case.model_timeout_seconds or use_case.model_timeout_seconds <= 0:
        problems.append(Fix("No model timeout", configuration))
    if not use_case.model_max_attempts:
        problems.append(Fix("No model attempts set", configuration))
    controls.append(
        _control(
            "workflow",
            problems,
            f"Timeout {use_case.model_timeout_seconds:g}s, {use_case.model_max_attempts} attempts, fallback {fallback}",
        )
    )

    # 5. Policy: an active, approved version evaluates every output.
    problems = []
    number = None
    if use_case.policy_id is None:
        problems.append(Fix("No policy", reverse("policies:policy-list")))
    else:
        number = _active_version_number(use_case)
        if number is None:
            problems.append(
                Fix(
                    f"Policy {use_case.policy} has no active version",
                    reverse("policies:policy-detail", args=[use_case.policy_id]),
                )
            )
    controls.append(_control("policy", problems, f"{use_case.policy} v{number} is active"))

    # 6. Delivery: approved outputs reach a place of decision.
    destinations = list(use_case.destinations.all())
    problems = [] if destinations else [Fix("No destination", configuration)]
    controls.append(_control("delivery", problems, "Delivers to " + ", ".join(d.name for d in destinations)))

    # 7. Monitoring: a ROI baseline to measure against.
    problems = []
    if not use_case.hourly_cost or use_case.hourly_cost <= 0:
        problems.append(Fix("No ROI baseline hourly cost", configuration))
    if not use_case.manual_minutes_per_item or use_case.manual_minutes_per_item <= 0:
        problems.append(Fix("No ROI baseline manual minutes per item", configuration))
    controls.append(
        _control(
            "monitoring",
            problems,
            f"Baseline {use_case.manual_minutes_per_item:g} min per item at {use_case.hourly_cost:g}/h",
        )
    )
    return controls
