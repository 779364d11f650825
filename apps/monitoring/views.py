"""The alerts page: what an operator must look at, with acknowledge and resolve (htmx, row by row)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_POST, require_safe

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied
from apps.core.htmx import render_page

from . import selectors, services
from .models import Alert

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
