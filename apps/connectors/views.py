"""The integrator's home: connectors with their health and a connection test, and the user's own API keys.

Secrets are never rendered, not even masked: a connector shows only that credentials are set.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST, require_safe

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.htmx import render_page
from apps.core.permissions import restrict
from apps.permissions.models import ApiKey
from apps.permissions.services import api_key_create as api_key_create_service
from apps.permissions.services import api_key_revoke as api_key_revoke_service

from . import selectors, services
from .forms import ApiKeyCreateForm
from .models import Connector

TEMPLATE = "connectors/connector_list.html"


def _testable_ids(user, connectors) -> set[int]:
    ids = set()
    for codename in services.TEST_CODENAMES:
        ids |= set(restrict(connectors, user, codename).values_list("pk", flat=True))
    return ids


def _rows(user) -> list[dict]:
    connectors = selectors.connector_list(user=user)
    testable = _testable_ids(user, connectors)
    return [{"connector": c, "can_test": c.pk in testable} for c in connectors]


def _page_context(request, *, key_form=None, new_key=None) -> dict:
    return {
        "rows": _rows(request.user),
        "api_keys": selectors.api_key_list(user=request.user),
        "key_form": key_form or ApiKeyCreateForm(),
        "new_key": new_key,
        "scope_labels": dict(ApiKey.Scope.choices),
    }


@login_required
@require_safe
def connector_list(request):
    return render_page(request, TEMPLATE, fragment="connector-table", context=_page_context(request))


@login_required
@require_POST
def connector_test(request, pk: int):
    """Test one connection (connectors.services.connector_test checks change_connector or use_connector)."""
    try:
        connector = selectors.connector_get(user=request.user, pk=pk)
    except Connector.DoesNotExist:
        raise Http404("No such connector") from None
    status = 200
    try:
        result = services.connector_test(actor=Actor.from_request(request), connector=connector)
    except PermissionDenied as exc:
        row = {"connector": connector, "can_test": False, "ok": False, "message": exc.message}
        status = 200 if request.htmx else 403
    else:
        row = {"connector": result.connector, "can_test": True, "ok": result.ok, "message": result.message}
    if not request.htmx:
        if status == 200:
            messages.add_message(
                request, messages.SUCCESS if row["ok"] else messages.ERROR, f"{connector.name}: {row['message']}"
            )
            return redirect("connectors:connector-list")
        context = _page_context(request)
        context["rows"] = [row if r["connector"].pk == connector.pk else r for r in context["rows"]]
        return render_page(request, TEMPLATE, fragment="connector-table", context=context, status=status)
    return render_page(request, TEMPLATE, fragment="connector-row", context={"row": row}, status=status)


@login_required
@require_POST
def api_key_create(request):
    """Create a key for the signed-in user; the raw key is in this response only (never stored, never cached)."""
    form = ApiKeyCreateForm(request.POST)
    new_key = None
    if form.is_valid():
        try:
            key, raw = api_key_create_service(
                actor=Actor.from_request(request),
                user=request.user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.cleaned_data["expires_at"],
            )
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            new_key = {"key": key, "raw": raw}
            form = ApiKeyCreateForm()
    response = render_page(
        request, TEMPLATE, fragment="api-keys", context=_page_context(request, key_form=form, new_key=new_key)
    )
    add_never_cache_headers(response)
    return response


@login_required
@require_POST
def api_key_revoke(request, pk: int):
    try:
        key = selectors.api_key_list(user=request.user).get(pk=pk)
    except ApiKey.DoesNotExist:
        raise Http404("No such key") from None
    api_key_revoke_service(actor=Actor.from_request(request), key=key)
    if not request.htmx:
        messages.success(request, f"The key {key.name} is revoked.")
        return redirect("connectors:connector-list")
    return render_page(request, TEMPLATE, fragment="api-keys", context=_page_context(request))
