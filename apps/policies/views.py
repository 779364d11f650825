"""Policy pages: the list, one policy with its versions and rules, maker-checker review and a rule tester."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_POST, require_safe

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.htmx import render_page
from apps.core.permissions import has_object_permission

from . import evaluation, selectors, services
from .forms import RULE_TEST_EXAMPLE, RuleTestForm, VersionReviewForm
from .models import Policy, PolicyVersion

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
    return {
        "policy": policy,
        "can_approve": can_approve,
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
