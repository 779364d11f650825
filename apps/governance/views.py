"""Policy packs: the list an officer loads them from, and a use case's checklist against them (a
fragment the use case page loads by htmx; also a page of its own)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_POST, require_safe

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.htmx import render_page
from apps.core.permissions import has_object_permission

from . import selectors, services
from .forms import ChecklistApplyForm, ControlItemStatusForm
from .models import UseCaseControlItem
from .pack_files import pack_slugs

PACKS = "governance/pack_list.html"
CHECKLIST = "governance/use_case_checklist.html"
STATUS_BADGES = {"open": "text-bg-warning", "met": "text-bg-success", "not_applicable": "text-bg-secondary"}


def _packs_page(request, *, notice: str = "", error: str = ""):
    context = {
        "rows": selectors.control_pack_rows(),
        "can_load": services.may_load_packs(request.user),
        "notice": notice,
        "error": error,
    }
    return render_page(request, PACKS, context, fragment="pack-table")


@login_required
@require_safe
def control_pack_list(request):
    return _packs_page(request)


@login_required
@require_POST
def control_pack_load(request, slug: str):
    """Load (or reload) one shipped pack; control_pack_load re-checks that the user may."""
    if not services.may_load_packs(request.user):
        raise DjangoPermissionDenied("Only governance officers and admins may load policy packs.")
    if slug not in pack_slugs():
        raise Http404("No such policy pack")
    try:
        result = services.control_pack_load(actor=Actor.from_request(request), slug=slug)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from None
    except ServiceError as exc:
        if not request.htmx:
            messages.error(request, exc.message)
            return redirect("governance:pack-list")
        return _packs_page(request, error=exc.message)
    if not request.htmx:
        messages.success(request, result.summary)
        return redirect("governance:pack-list")
    return _packs_page(request, notice=result.summary)


def _use_case_or_404(request, slug: str):
    use_case = selectors.use_case_for_checklist(user=request.user, slug=slug)
    if use_case is None:
        raise Http404("No such use case")
    return use_case


def _require_change(request, use_case) -> None:
    if not has_object_permission(request.user, "change_usecase", use_case):
        raise DjangoPermissionDenied("You may not change this use case.")


def _checklist(request, use_case, *, apply_form=None, item_forms=None, notice: str = "", status: int = 200):
    item_forms = item_forms or {}
    can_change = has_object_permission(request.user, "change_usecase", use_case)
    groups = selectors.use_case_checklist(use_case=use_case)
    entries = [entry for group in groups for entry in group.entries]
    for entry in entries:
        entry.badge = STATUS_BADGES[entry.status]
        entry.form = item_forms.get(entry.pk) or ControlItemStatusForm(
            initial={"status": entry.status, "note": entry.note}, auto_id=f"item{entry.pk}-%s"
        )
    counts = {value: sum(entry.status == value for entry in entries) for value in UseCaseControlItem.Status.values}
    context = {
        "use_case": use_case,
        "groups": groups,
        "total": len(entries),
        "counts": counts,
        "can_change": can_change,
        "can_load": services.may_load_packs(request.user),
        "apply_form": apply_form or ChecklistApplyForm(auto_id="checklist-%s"),
        "notice": notice,
    }
    return render_page(request, CHECKLIST, context, fragment="checklist", status=status)


@login_required
@require_safe
def use_case_checklist(request, slug: str):
    """The checklist grouped by control, beside Doorstep's verdict on each control (view_usecase)."""
    return _checklist(request, _use_case_or_404(request, slug))


@login_required
@require_POST
def use_case_checklist_apply(request, slug: str):
    """Attach a loaded pack's items to the checklist (change_usecase, re-checked by the service)."""
    use_case = _use_case_or_404(request, slug)
    _require_change(request, use_case)
    form = ChecklistApplyForm(request.POST, auto_id="checklist-%s")
    if form.is_valid():
        pack = form.cleaned_data["pack"]
        try:
            added = services.use_case_checklist_apply(actor=Actor.from_request(request), use_case=use_case, pack=pack)
        except PermissionDenied as exc:
            raise DjangoPermissionDenied(exc.message) from None
        except ServiceError as exc:
            form.add_error("pack" if exc.field == "pack" else None, exc.message)
        else:
            notice = (
                f"{added} item{'' if added == 1 else 's'} of {pack.name} added."
                if added
                else (f"Every item of {pack.name} is already on the checklist.")
            )
            if not request.htmx:
                messages.success(request, notice)
                return redirect("governance:use-case-checklist", slug=use_case.slug)
            return _checklist(request, use_case, notice=notice)
    return _checklist(request, use_case, apply_form=form, status=200 if request.htmx else 400)


@login_required
@require_POST
def use_case_control_item_set(request, slug: str, pk: int):
    """Set one item's status and note (change_usecase, re-checked by the service)."""
    use_case = _use_case_or_404(request, slug)
    entry = UseCaseControlItem.objects.select_related("item", "use_case").filter(use_case=use_case, pk=pk).first()
    if entry is None:
        raise Http404("No such checklist item")
    _require_change(request, use_case)
    form = ControlItemStatusForm(request.POST, auto_id=f"item{entry.pk}-%s")
    if form.is_valid():
        try:
            entry = services.use_case_control_item_set(
                actor=Actor.from_request(request),
                item=entry,
                status=form.cleaned_data["status"],
                note=form.cleaned_data["note"],
            )
        except PermissionDenied as exc:
            raise DjangoPermissionDenied(exc.message) from None
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            notice = f"{entry.item.code} is now {entry.get_status_display().lower()}."
            if not request.htmx:
                messages.success(request, notice)
                return redirect("governance:use-case-checklist", slug=use_case.slug)
            return _checklist(request, use_case, notice=notice)
    return _checklist(request, use_case, item_forms={entry.pk: form}, status=200 if request.htmx else 400)
