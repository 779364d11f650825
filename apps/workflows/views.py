"""Use-case pages: the governance officer's home (every use case with its seven controls) and one use case."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.urls import reverse
from django.views.decorators.http import require_safe

from apps.core.formatting import duration_label
from apps.core.htmx import render_page
from apps.policies.selectors import policy_versions_awaiting_approval

from . import selectors
from .controls import use_case_controls, with_control_data
from .models import UseCase

RECENT = 20


@login_required
@require_safe
def use_case_list(request):
    use_cases = with_control_data(selectors.use_case_list(user=request.user))
    status = request.GET.get("status", "")
    if status in UseCase.Status.values:
        use_cases = use_cases.filter(status=status)
    else:
        status = ""
    rows = [{"use_case": use_case, "controls": use_case_controls(use_case)} for use_case in use_cases]
    for row in rows:
        row["passed"] = sum(control.passed for control in row["controls"])
    context = {
        "rows": rows,
        "status": status,
        "statuses": UseCase.Status.choices,
        "awaiting": policy_versions_awaiting_approval(user=request.user)[:50],
    }
    return render_page(request, "workflows/use_case_list.html", fragment="use-case-table", context=context)


def _control_links(use_case: UseCase) -> dict[str, str]:
    connectors = reverse("connectors:connector-list")
    if use_case.policy_id:
        policy = reverse("policies:policy-detail", args=[use_case.policy_id])
    else:
        policy = reverse("policies:policy-list")
    return {
        "systems": connectors,
        "access": "#configuration",
        "data": connectors,
        "workflow": "#configuration",
        "policy": policy,
        "delivery": "#configuration",
        "monitoring": "#configuration",
    }


@login_required
@require_safe
def use_case_detail(request, slug: str):
    try:
        use_case = with_control_data(selectors.use_case_list(user=request.user)).get(slug=slug)
    except UseCase.DoesNotExist:
        raise Http404("No such use case") from None
    links = _control_links(use_case)
    controls = [{"control": control, "link": links[control.key]} for control in use_case_controls(use_case)]
    recommendations = (
        selectors.recommendation_list(user=request.user)
        .filter(use_case=use_case)
        .select_related("policy_decision")
        .order_by("-created_at", "-pk")[:RECENT]
    )
    runs = (
        selectors.run_list(user=request.user)
        .filter(use_case=use_case)
        .select_related("model_endpoint", "requested_by")
        .order_by("-created_at", "-pk")[:RECENT]
    )
    context = {
        "use_case": use_case,
        "controls": controls,
        "passed": sum(item["control"].passed for item in controls),
        "destinations": list(use_case.destinations.all()),
        "freshness_sla": duration_label(use_case.source_dataset.freshness_sla) if use_case.source_dataset else "",
        "queue_sla": duration_label(use_case.review_queue.sla) if use_case.review_queue else "",
        "recommendations": recommendations,
        "runs": runs,
    }
    return render_page(request, "workflows/use_case_detail.html", fragment="activity", context=context)
