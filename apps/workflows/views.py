"""Use-case pages: the governance officer's home (every use case with its seven controls) and one use case."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.formatting import duration_label
from apps.core.htmx import render_page
from apps.core.permissions import has_object_permission
from apps.policies.selectors import policy_versions_awaiting_approval

from . import selectors, services
from .controls import use_case_controls, with_control_data
from .forms import SampleRateForm, UseCaseProposeForm, UseCaseSettingsForm, UseCaseTransitionForm
from .models import UseCase

RECENT = 20
SETTINGS_SECTIONS = (
    ("Purpose and risk", ("name", "purpose", "owner", "risk_tier", "risk_reason")),
    (
        "Systems and model",
        ("source_dataset", "model_endpoint", "fallback_endpoint", "model_timeout_seconds", "model_max_attempts"),
    ),
    ("Policy, review and delivery", ("policy", "review_queue", "sla_breach_action", "destinations")),
    (
        "ROI baseline and control group",
        ("manual_minutes_per_item", "hourly_cost", "value_per_accepted", "holdout_share"),
    ),
    ("Budget", ("monthly_budget", "budget_soft_share", "budget_hard_action")),
)


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
        "can_propose": bool(services.business_units_led(request.user)),
        "status": status,
        "statuses": UseCase.Status.choices,
        "awaiting": policy_versions_awaiting_approval(user=request.user)[:50],
    }
    return render_page(request, "workflows/use_case_list.html", fragment="use-case-table", context=context)


def _use_case_or_404(request, slug: str) -> UseCase:
    try:
        return with_control_data(selectors.use_case_list(user=request.user)).get(slug=slug)
    except UseCase.DoesNotExist:
        raise Http404("No such use case") from None


def _percent(rate) -> str:
    return "" if rate is None else f"{(rate * 100).normalize():f}"


def _governance_context(request, use_case: UseCase, *, transition_form=None, sample_form=None) -> dict:
    """What the lifecycle and sampling sections show: allowed moves, forms, recorded changes."""
    controls = use_case_controls(use_case)
    failing = [control for control in controls if not control.passed]
    return {
        "use_case": use_case,
        "can_change": has_object_permission(request.user, "change_usecase", use_case),
        "transitions": [
            {
                "to": to,
                "label": UseCase.Status(to).label,
                "blocked_by": failing if to == UseCase.Status.PRODUCTION else [],
            }
            for to in services.use_case_allowed_transitions(use_case)
        ],
        "transition_form": transition_form or UseCaseTransitionForm(auto_id="transition-%s"),
        "sample_form": sample_form
        or SampleRateForm(auto_id="sample-%s", initial={"percent": _percent(use_case.review_sample_rate)}),
        "sample_percent": _percent(use_case.effective_review_sample_rate),
        "tier_percent": _percent(UseCase.TIER_SAMPLE_RATES[use_case.risk_tier]),
        "changes": selectors.use_case_changes(use_case=use_case),
    }


@login_required
@require_safe
def use_case_detail(request, slug: str):
    use_case = _use_case_or_404(request, slug)
    controls = use_case_controls(use_case)
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
        **_governance_context(request, use_case),
        "controls": controls,
        "passed": sum(control.passed for control in controls),
        "destinations": list(use_case.destinations.all()),
        "freshness_sla": duration_label(use_case.source_dataset.freshness_sla) if use_case.source_dataset else "",
        "queue_sla": duration_label(use_case.review_queue.sla) if use_case.review_queue else "",
        "recommendations": recommendations,
        "runs": runs,
    }
    return render_page(request, "workflows/use_case_detail.html", fragment="activity", context=context)


def _governance_answer(request, use_case, form, fragment: str, save, notice: str):
    """Shared by the lifecycle and sampling forms: run the service, then answer with the fragment (htmx) or
    a redirect; a refusal is an error on the form (403 when the user may not change the use case)."""
    status = 200
    if form.is_valid():
        try:
            save()
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            if isinstance(exc, PermissionDenied) and not request.htmx:
                status = 403  # htmx 2 does not swap a 4xx: the refusal shows on the form
        else:
            if not request.htmx:
                messages.success(request, notice)
                return redirect("workflows:use-case-detail", slug=use_case.slug)
            use_case = _use_case_or_404(request, use_case.slug)
            context = {**_governance_context(request, use_case), "notice": notice, "oob": True}
            return render_page(request, "workflows/use_case_detail.html", fragment=fragment, context=context)
    forms = {"transition_form": form} if fragment == "lifecycle" else {"sample_form": form}
    context = _governance_context(request, use_case, **forms)
    return render_page(request, "workflows/use_case_detail.html", fragment=fragment, context=context, status=status)


@login_required
@require_POST
def use_case_transition(request, slug: str):
    """Move the use case along its lifecycle (services.use_case_transition checks the rules)."""
    use_case = _use_case_or_404(request, slug)
    form = UseCaseTransitionForm(request.POST, auto_id="transition-%s")

    def save():
        services.use_case_transition(
            actor=Actor.from_request(request),
            use_case=use_case,
            to=form.cleaned_data["to"],
            reason=form.cleaned_data["reason"],
        )

    to = UseCase.Status(form.data["to"]).label if form.data.get("to") in UseCase.Status.values else ""
    return _governance_answer(request, use_case, form, "lifecycle", save, f"The use case is now {to}.")


@login_required
@require_POST
def use_case_sampling(request, slug: str):
    """Override (or reset to the tier default) the share of allowed outputs still sent to review."""
    use_case = _use_case_or_404(request, slug)
    form = SampleRateForm(request.POST, auto_id="sample-%s")

    def save():
        services.use_case_sample_rate_set(
            actor=Actor.from_request(request), use_case=use_case, rate=form.rate, reason=form.cleaned_data["reason"]
        )

    return _governance_answer(request, use_case, form, "sampling", save, "Review sampling updated.")


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def use_case_settings(request, slug: str):
    """Edit what the use case reads, calls, applies and delivers to, its risk tier and ROI baseline
    (services.use_case_settings_update checks and records it); 403 for someone who may only view it."""
    use_case = _use_case_or_404(request, slug)
    if not has_object_permission(request.user, "change_usecase", use_case):
        raise DjangoPermissionDenied("You may not change this use case.")
    form = UseCaseSettingsForm(request.POST or None, instance=use_case, user=request.user)
    if request.method == "POST" and form.is_valid():
        values = {field: form.cleaned_data[field] for field in services.SETTINGS_FIELDS}
        try:
            services.use_case_settings_update(
                actor=Actor.from_request(request),
                use_case=use_case,
                values=values,
                destinations=form.cleaned_data["destinations"],
                reason=form.cleaned_data["reason"],
            )
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, "Settings saved.")
            return redirect("workflows:use-case-detail", slug=use_case.slug)
    _styled(form)
    context = {"use_case": use_case, "form": form, "sections": SETTINGS_SECTIONS}
    return render_page(request, "workflows/use_case_settings.html", fragment="settings-form", context=context)


def _styled(form) -> None:
    """Bootstrap classes and error wiring on every widget, so templates render fields in one loop."""
    for field in form:
        css = "form-select" if field.widget_type in ("select", "selectmultiple") else "form-control"
        field.field.widget.attrs["class"] = css + (" is-invalid" if field.errors else "")
        if field.errors:
            field.field.widget.attrs["aria-describedby"] = f"{field.auto_id}-error"


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def use_case_propose(request):
    """Register a new use case (proposed) in a business unit the user governs; then its settings page."""
    units = services.business_units_led(request.user)
    if not units:
        raise DjangoPermissionDenied("You govern no business unit.")
    form = UseCaseProposeForm(request.POST or None, business_units=units)
    if request.method == "POST" and form.is_valid():
        try:
            use_case = services.use_case_propose(actor=Actor.from_request(request), **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"{use_case.name} is proposed. Connect its systems, policy and queue here.")
            return redirect("workflows:use-case-settings", slug=use_case.slug)
    _styled(form)
    return render_page(request, "workflows/use_case_propose.html", fragment="propose-form", context={"form": form})
