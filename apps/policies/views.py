"""Policy pages: the list, one policy with its versions and rules, maker-checker review and a rule tester."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, Subquery
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.views.decorators.http import require_POST, require_safe

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.htmx import render_page
from apps.core.permissions import has_object_permission

from . import evaluation, selectors, services
from .forms import (
    RULE_TEST_EXAMPLE,
    EmergencyForm,
    RequirementFormSet,
    RuleFormSet,
    RuleTestForm,
    ScheduleForm,
    VersionNoteForm,
    VersionReviewForm,
)
from .models import ApprovalRequirement, Policy, PolicyVersion

EFFECT_BADGES = {"allow": "success", "redact": "info", "review": "warning", "block": "danger"}


def _policy_or_404(request, pk: int) -> Policy:
    try:
        return selectors.policy_detail(user=request.user, pk=pk)
    except Policy.DoesNotExist:
        raise Http404("No such policy") from None


@login_required
@require_safe
def policy_list(request):
    active = PolicyVersion.objects.filter(policy=OuterRef("pk"), state=PolicyVersion.State.ACTIVE)
    policies = (
        selectors.policy_list(user=request.user)
        .annotate(
            active_number=Subquery(active.values("number")[:1]),
            in_review=Count("versions", filter=Q(versions__state=PolicyVersion.State.IN_REVIEW)),
            version_count=Count("versions"),
            emergency=Exists(active.filter(emergency=True)),
        )
        .prefetch_related(
            Prefetch("approval_requirements", queryset=ApprovalRequirement.objects.select_related("group"))
        )
        .order_by("name")
    )
    return render_page(request, "policies/policy_list.html", fragment="policy-table", context={"policies": policies})


def _version_item(request, version: PolicyVersion, *, can_approve: bool, form=None, notice: str = "") -> dict:
    user = request.user
    is_author = version.author_id == user.pk
    already = any(approval.approver_id == user.pk for approval in version.approvals.all())
    in_review = version.state == PolicyVersion.State.IN_REVIEW
    return {
        "version": version,
        "is_author": is_author,
        "in_review": in_review,
        "already_reviewed": already,
        "can_review": in_review and can_approve and not is_author and not already,
        "form": form or VersionReviewForm(auto_id=f"v{version.pk}-%s"),
        "notice": notice,
        "rules": [{"rule": rule, "badge": EFFECT_BADGES.get(rule.effect, "secondary")} for rule in version.rules.all()],
    }


def _detail_context(request, policy: Policy, *, forms=None, rule_test_form=None, result=None, notices=None) -> dict:
    forms, notices = forms or {}, notices or {}
    can_approve = has_object_permission(request.user, "approve_policy", policy)
    versions = list(policy.versions.all())
    if rule_test_form is None:
        default = next(
            (v for v in versions if v.state == PolicyVersion.State.ACTIVE), versions[0] if versions else None
        )
        rule_test_form = RuleTestForm(policy=policy, initial={"version": default, "sample": RULE_TEST_EXAMPLE})
    requirements = list(policy.approval_requirements.select_related("group").order_by("group__name"))
    return {
        "policy": policy,
        "can_approve": can_approve,
        "can_change": has_object_permission(request.user, "change_policy", policy),
        "requirements": requirements,
        "requirement_formset": RequirementFormSet(
            prefix="req", initial=[{"group": r.group, "count": r.count} for r in requirements]
        ),
        "emergency_version": next((v for v in versions if v.state == PolicyVersion.State.ACTIVE and v.emergency), None),
        "history": selectors.policy_history(policy=policy, limit=50),
        "versions": [
            _version_item(request, v, can_approve=can_approve, form=forms.get(v.pk), notice=notices.get(v.pk, ""))
            for v in versions
        ],
        "rule_test_form": rule_test_form,
        "result": result,
        "effect_badges": EFFECT_BADGES,
    }


@login_required
@require_safe
def policy_detail(request, pk: int):
    policy = _policy_or_404(request, pk)
    return render_page(
        request, "policies/policy_detail.html", fragment="versions", context=_detail_context(request, policy)
    )


@login_required
@require_POST
def policy_version_review(request, pk: int, version_pk: int):
    """Approve or reject a version in review (policies.services.policy_version_review re-checks the rules)."""
    policy = _policy_or_404(request, pk)
    version = next((v for v in policy.versions.all() if v.pk == version_pk), None)
    if version is None:
        raise Http404("No such version")
    form = VersionReviewForm(request.POST, auto_id=f"v{version.pk}-%s")
    status = 200
    if form.is_valid():
        try:
            services.policy_version_review(
                actor=Actor.from_request(request),
                version=version,
                decision=form.cleaned_data["decision"],
                comment=form.cleaned_data["comment"],
            )
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            if isinstance(exc, PermissionDenied) and not request.htmx:
                status = 403
        else:
            notice = (
                f"You {'approved' if form.cleaned_data['decision'] == 'approve' else 'rejected'} v{version.number}."
            )
            if not request.htmx:
                messages.success(request, notice)
                return redirect("policies:policy-detail", pk=policy.pk)
            policy = _policy_or_404(request, pk)
            context = _detail_context(request, policy, notices={version.pk: notice})
            context["item"] = next(item for item in context["versions"] if item["version"].pk == version.pk)
            return render_page(request, "policies/policy_detail.html", fragment="version", context=context)
    context = _detail_context(request, policy, forms={version.pk: form})
    context["item"] = next(item for item in context["versions"] if item["version"].pk == version.pk)
    return render_page(request, "policies/policy_detail.html", fragment="version", context=context, status=status)


@login_required
@require_POST
def rule_test(request, pk: int):
    """Evaluate one version on a sample (read-only: nothing is stored); bad JSON is a field error."""
    policy = _policy_or_404(request, pk)
    form = RuleTestForm(request.POST, policy=policy)
    result = None
    if form.is_valid():
        sample = form.cleaned_data["sample"]
        version = form.cleaned_data["version"]
        verdict = evaluation.evaluate(
            version,
            output=sample.get("output", {}),
            context=sample.get("context", {}),
            action=sample.get("action", {}),
            use_case=sample.get("use_case", {}),
            subject=str(sample.get("subject", "")),
            confidence=sample.get("confidence"),
            freshness=str(sample.get("freshness", "fresh")),
            cost=float(sample.get("cost", 0)),
        )
        result = {
            "version": version,
            "verdict": verdict,
            "badge": EFFECT_BADGES.get(verdict.effect, "secondary"),
            "fired": [{**fired, "badge": EFFECT_BADGES.get(fired["effect"], "secondary")} for fired in verdict.fired],
            "redacted_text": verdict.output.get("text") if verdict.redactions else None,
        }
    context = _detail_context(request, policy, rule_test_form=form, result=result)
    return render_page(request, "policies/policy_detail.html", fragment="rule-test", context=context)


def _version_or_404(request, policy: Policy, version_pk: int) -> PolicyVersion:
    version = next((v for v in policy.versions.all() if v.pk == version_pk), None)
    if version is None:
        raise Http404("No such version")
    return version


def _require(request, codename: str, policy: Policy) -> None:
    """Pages that change a policy are not shown to viewers without the right (the service checks again)."""
    if not has_object_permission(request.user, codename, policy):
        raise DjangoPermissionDenied("You do not have permission to do this.")


def _version_page(request, policy: Policy, version: PolicyVersion, *, status: int = 200, **forms):
    can_change = has_object_permission(request.user, "change_policy", policy)
    can_approve = has_object_permission(request.user, "approve_policy", policy)
    baseline = selectors.policy_version_baseline(version)
    context = {
        "policy": policy,
        "version": version,
        "item": _version_item(request, version, can_approve=can_approve, form=forms.get("review_form")),
        "can_change": can_change,
        "can_approve": can_approve,
        "baseline": baseline,
        "changes": selectors.policy_version_diff(version, baseline),
        "schedule_form": forms.get("schedule_form") or ScheduleForm(initial={"effective_from": version.effective_from}),
        "emergency_form": forms.get("emergency_form") or EmergencyForm(),
        "action_error": forms.get("action_error", ""),
        "max_hours": services.EMERGENCY_MAX_HOURS,
    }
    return render_page(
        request, "policies/version_detail.html", fragment="version-actions", context=context, status=status
    )


@login_required
@require_safe
def policy_version_detail(request, pk: int, version_pk: int):
    """One version: rules, what changed against the baseline, the replay report, review and activation."""
    policy = _policy_or_404(request, pk)
    return _version_page(request, policy, _version_or_404(request, policy, version_pk))


def _version_action(request, pk: int, version_pk: int, act, *, success: str, form_name: str = "", form=None):
    """Run one service on a version; a refusal is shown on the version page, nothing changes."""
    policy = _policy_or_404(request, pk)
    version = _version_or_404(request, policy, version_pk)
    forms = {form_name: form} if form_name else {}
    if form is None or form.is_valid():
        try:
            act(Actor.from_request(request), version, form.cleaned_data if form is not None else {})
        except ServiceError as exc:
            if form is not None and exc.field in form.fields:
                form.add_error(exc.field, exc.message)
            else:
                forms["action_error"] = exc.message
            status = 403 if isinstance(exc, PermissionDenied) and not request.htmx else 200
            return _version_page(request, policy, version, status=status, **forms)
        messages.success(request, success.format(number=version.number))
        return redirect("policies:policy-version-detail", pk=policy.pk, version_pk=version.pk)
    return _version_page(request, policy, version, **forms)


@login_required
@require_POST
def policy_version_submit(request, pk: int, version_pk: int):
    return _version_action(
        request,
        pk,
        version_pk,
        lambda actor, version, data: services.policy_version_submit(actor=actor, version=version),
        success="v{number} is in review.",
    )


@login_required
@require_POST
def policy_version_activate(request, pk: int, version_pk: int):
    return _version_action(
        request,
        pk,
        version_pk,
        lambda actor, version, data: services.policy_version_activate(actor=actor, version=version),
        success="v{number} is active.",
    )


@login_required
@require_POST
def policy_version_schedule(request, pk: int, version_pk: int):
    return _version_action(
        request,
        pk,
        version_pk,
        lambda actor, version, data: services.policy_version_schedule(
            actor=actor, version=version, effective_from=data["effective_from"]
        ),
        success="The effective date of v{number} is saved.",
        form_name="schedule_form",
        form=ScheduleForm(request.POST),
    )


@login_required
@require_POST
def policy_version_emergency(request, pk: int, version_pk: int):
    return _version_action(
        request,
        pk,
        version_pk,
        lambda actor, version, data: services.policy_version_emergency_activate(
            actor=actor, version=version, reason=data["reason"], hours=data["hours"]
        ),
        success="v{number} is active as an emergency change; it expires automatically.",
        form_name="emergency_form",
        form=EmergencyForm(request.POST),
    )


@login_required
@require_safe
def policy_version_diff(request, pk: int, version_pk: int):
    """Rules added, removed and changed against `?against=<version id>` (default: active or previous)."""
    policy = _policy_or_404(request, pk)
    version = _version_or_404(request, policy, version_pk)
    against = selectors.policy_version_baseline(version)
    if request.GET.get("against", "").isdigit():
        against = _version_or_404(request, policy, int(request.GET["against"]))
    context = {
        "policy": policy,
        "version": version,
        "against": against,
        "others": [v for v in policy.versions.all() if v.pk != version.pk],
        "changes": selectors.policy_version_diff(version, against),
        "effect_badges": EFFECT_BADGES,
    }
    return render_page(request, "policies/version_diff.html", fragment="diff", context=context)


def _editor_formset(request, policy: Policy) -> RuleFormSet:
    if request.method == "POST":
        return RuleFormSet(request.POST, prefix="rules", form_kwargs={"policy": policy})
    base = next(iter(policy.versions.all()), None)  # the newest version, to start from
    initial = [
        {
            "name": r.name,
            "condition": r.condition,
            "effect": r.effect,
            "description": r.description,
            "reviewers": r.reviewers,
            "review_queue": r.review_queue_id,
            "redact_fields": ", ".join(r.redact_fields),
            "redact_patterns": "\n".join(r.redact_patterns),
            "ORDER": i + 1,
        }
        for i, r in enumerate(base.rules.all() if base else ())
    ]
    return RuleFormSet(prefix="rules", initial=initial, form_kwargs={"policy": policy})


@login_required
def policy_version_new(request, pk: int):
    """Write a new draft version, starting from the newest one. Each change is checked through htmx (nothing
    saved): CEL errors show under the rule with line and column. Saving creates the version and all its
    rules, or nothing."""
    policy = _policy_or_404(request, pk)
    _require(request, "change_policy", policy)
    formset = _editor_formset(request, policy)
    note_form = VersionNoteForm(request.POST or None)
    error = ""
    if request.method == "POST":
        valid = formset.is_valid() & note_form.is_valid()
        if valid and not request.POST.get("validate"):
            try:
                version = services.policy_version_create(
                    actor=Actor.from_request(request),
                    policy=policy,
                    rules=formset.rules(),
                    note=note_form.cleaned_data["note"],
                )
            except ServiceError as exc:
                error = exc.message
            else:
                messages.success(request, f"v{version.number} saved as a draft.")
                return redirect("policies:policy-version-detail", pk=policy.pk, version_pk=version.pk)
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    context = {"policy": policy, "formset": formset, "note_form": note_form, "error": error}
    return render_page(request, "policies/version_new.html", fragment="version-editor", context=context)


@login_required
@require_POST
def policy_requirements(request, pk: int):
    """Replace the M-of-N approval requirements (services.policy_approval_requirements_set checks them)."""
    policy = _policy_or_404(request, pk)
    _require(request, "change_policy", policy)
    formset = RequirementFormSet(request.POST, prefix="req")
    error = ""
    if formset.is_valid():
        rows = [
            (form.cleaned_data["group"], form.cleaned_data["count"])
            for form in formset.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        try:
            services.policy_approval_requirements_set(
                actor=Actor.from_request(request), policy=policy, requirements=rows
            )
        except ServiceError as exc:
            error = exc.message
        else:
            messages.success(request, "Approval requirements saved.")
            return redirect("policies:policy-detail", pk=policy.pk)
    context = _detail_context(request, policy)
    context.update(requirement_formset=formset, requirement_error=error)
    return render_page(request, "policies/policy_detail.html", fragment="requirements", context=context)
