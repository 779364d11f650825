"""The alerts page: what an operator must look at, with acknowledge and resolve (htmx, row by row); the
monitoring page: each use case's and endpoint's figures over a window."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect

from apps.connectors.models import Connector
from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.htmx import render_page

from . import selectors, services
from .forms import AlertRuleForm, CostImportForm
from .models import Alert, AlertRule, CostImport

TEMPLATE = "monitoring/alert_list.html"


def _items(user, alerts: list[Alert]) -> list[dict]:
    history = selectors.alert_history(alerts)
    return [
        {"alert": alert, "can_act": services.alert_may_act(user, alert), "history": history.get(alert.pk, [])}
        for alert in alerts
    ]


@login_required
@require_safe
def alert_list(request):
    resolved = request.GET.get("status") == "resolved"
    alerts = list(selectors.alert_list(user=request.user, resolved=resolved)[: selectors.PAGE_LIMIT + 1])
    context = {
        "items": _items(request.user, alerts[: selectors.PAGE_LIMIT]),
        "more": len(alerts) > selectors.PAGE_LIMIT,
        "resolved": resolved,
    }
    return render_page(request, TEMPLATE, fragment="alert-table", context=context)


def _act(request, pk: int, action):
    try:
        alert = selectors.alert_get(user=request.user, pk=pk)
    except Alert.DoesNotExist:
        raise Http404("No such alert") from None
    try:
        alert = action(actor=Actor.from_request(request), alert=alert)
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from None
    if not request.htmx:
        messages.success(request, f"{alert.title}: {alert.get_status_display().lower()}.")
        return redirect("monitoring:alert-list")
    (item,) = _items(request.user, [alert])
    return render_page(request, TEMPLATE, fragment="alert-row", context={"item": item})


@login_required
@require_POST
def alert_acknowledge(request, pk: int):
    return _act(request, pk, services.alert_acknowledge)


@login_required
@require_POST
def alert_resolve(request, pk: int):
    return _act(request, pk, services.alert_close)


@login_required
@require_safe
def monitoring(request):
    """Figures of the use cases the user may see over 24 h / 7 d / 30 d (htmx swaps the figures on a change)."""
    window = request.GET.get("window") if request.GET.get("window") in ("24h", "7d", "30d") else "24h"
    until = clock.now()
    since = until - selectors.WINDOWS[window]
    use_cases = list(selectors.monitored_use_cases(user=request.user))
    ids = [use_case.pk for use_case in use_cases]
    figures = selectors.use_case_figures(use_case_ids=ids, since=since, until=until)
    spend = selectors.month_spend(use_case_ids=ids, at=until)
    endpoints = selectors.endpoint_figures(since=since, until=until, use_case_ids=ids)
    names = dict(Connector.objects.filter(pk__in=endpoints).values_list("pk", "name"))
    daily = selectors.daily_cost(use_case_ids=ids, since=since, until=until)
    context = {
        "window": window,
        "windows": (("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")),
        "rows": [
            {"use_case": u, "f": figures[u.pk], "spent": spend.get(u.pk, 0), "budget": u.monthly_budget}
            for u in use_cases
        ],
        "endpoints": sorted(({"name": names[pk], "f": f} for pk, f in endpoints.items()), key=lambda e: e["name"]),
        "use_cases": use_cases,
        "daily": [(day, [costs.get(pk, 0) for pk in ids]) for day, costs in daily.items()],
    }
    return render_page(request, "monitoring/monitoring.html", fragment="figures", context=context)


@login_required
@require_safe
def rule_list(request):
    rules = list(selectors.alert_rule_list(user=request.user)[: selectors.PAGE_LIMIT])
    open_keys = set(
        Alert.objects.exclude(status=Alert.Status.RESOLVED)
        .filter(key__in=[rule.alert_key for rule in rules])
        .values_list("key", flat=True)
    )
    items = [
        {"rule": r, "firing": r.alert_key in open_keys, "can_change": services.alert_rule_may_change(request.user, r)}
        for r in rules
    ]
    return render_page(request, "monitoring/rule_list.html", fragment="rule-table", context={"items": items})


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request, pk: int | None = None):
    """Create (no pk) or change a rule; an invalid form comes back with its errors (200 for htmx)."""
    rule = AlertRule()
    if pk is not None:
        try:
            rule = selectors.alert_rule_get(user=request.user, pk=pk)
        except AlertRule.DoesNotExist:
            raise Http404("No such alert rule") from None
        if not services.alert_rule_may_change(request.user, rule):
            raise DjangoPermissionDenied("You may not change this alert rule.")
    form = AlertRuleForm(request.POST or None, instance=rule, user=request.user)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            services.alert_rule_save(
                actor=Actor.from_request(request), rule=form.instance, reason=form.cleaned_data["reason"]
            )
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Alert rule {rule.name} saved.")
            if request.htmx:
                return HttpResponseClientRedirect(reverse("monitor:rule-list"))
            return redirect("monitor:rule-list")
    elif request.method == "POST" and not request.htmx:
        status = 400
    history = selectors.alert_rule_history(rule) if rule.pk else []
    context = {"form": form, "rule": rule, "history": history}
    return render_page(request, "monitoring/rule_form.html", fragment="rule-form", context=context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def cost_list(request):
    """Imports the user may see, and the upload of a provider's usage export (all or nothing)."""
    form = CostImportForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            cost_import = services.cost_import_create(
                actor=Actor.from_request(request),
                file_name=upload.name,
                content=upload.read(),
                threshold_percent=form.cleaned_data["threshold_percent"],
            )
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"{cost_import.file_name} imported: {cost_import.rows} day × endpoint lines.")
            return redirect("monitor:cost-detail", pk=cost_import.pk)
    if request.method == "POST" and not request.htmx and form.errors:
        status = 400
    imports = list(selectors.cost_import_list(user=request.user)[: selectors.PAGE_LIMIT])
    context = {"form": form, "imports": imports}
    return render_page(request, "monitoring/cost_list.html", fragment="cost-form", context=context, status=status)


@login_required
@require_safe
def cost_detail(request, pk: int):
    try:
        cost_import, lines = selectors.cost_import_get(user=request.user, pk=pk)
    except CostImport.DoesNotExist:
        raise Http404("No such import") from None
    context = {"cost_import": cost_import, "lines": lines, "flagged": sum(line.flagged for line in lines)}
    return render_page(request, "monitoring/cost_detail.html", fragment="cost-lines", context=context)
