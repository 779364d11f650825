"""The integrator's pages: connectors (configure, test, browse, who may use them, history), their datasets and
destinations, and the user's own API keys.

Secrets are never rendered, not even masked: a connector shows only that credentials are set, and a
credential input is always empty (a blank keeps what is stored).
"""

import json
import logging

from cryptography.fernet import InvalidToken
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.formatting import duration_label
from apps.core.htmx import render_page
from apps.core.permissions import restrict
from apps.permissions.models import ApiKey
from apps.permissions.services import api_key_create as api_key_create_service
from apps.permissions.services import api_key_revoke as api_key_revoke_service

from . import selectors, services
from .clients.errors import ConnectorError
from .clients.registry import CLIENTS
from .forms import AccessForm, ApiKeyCreateForm, ConnectorForm, DatasetForm, DestinationForm, UploadForm
from .kinds import KINDS
from .models import Connector, Destination, SourceDataset

logger = logging.getLogger(__name__)

LIST = "connectors/connector_list.html"
FORM = "connectors/connector_form.html"
DETAIL = "connectors/connector_detail.html"
DATASET = "connectors/dataset_detail.html"
DESTINATION = "connectors/destination_detail.html"


def _connector_or_404(request, pk: int) -> Connector:
    try:
        return selectors.connector_get(user=request.user, pk=pk)
    except Connector.DoesNotExist:
        raise Http404("No such connector") from None


def _go(request, url: str):
    """After a successful POST: a full navigation (htmx follows it client-side)."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _live_error(exc: Exception, connector: Connector) -> str:
    """What a failed live call says to the integrator (never a credential, never a traceback)."""
    if isinstance(exc, ConnectorError | ServiceError):
        return services.redact(getattr(exc, "message", None) or str(exc), connector)
    if isinstance(exc, InvalidToken):
        return "The credentials cannot be decrypted with the current encryption keys: enter them again"
    logger.exception("Live call to connector %s failed unexpectedly", connector.pk)
    return f"Unexpected error: {type(exc).__name__}"


# --- list ------------------------------------------------------------------------------------------------------


def _testable_ids(user, connectors) -> set[int]:
    ids = set()
    for codename in services.TEST_CODENAMES:
        ids |= set(restrict(connectors, user, codename).values_list("pk", flat=True))
    return ids


def _rows(user, kind: str | None = None) -> list[dict]:
    connectors = selectors.connector_list(user=user, kind=kind)
    testable = _testable_ids(user, connectors)
    return [{"connector": c, "can_test": c.pk in testable} for c in connectors]


def _page_context(request, *, key_form=None, new_key=None) -> dict:
    kind = request.GET.get("kind") or None
    if kind not in KINDS:
        kind = None
    return {
        "rows": _rows(request.user, kind),
        "kind": kind,
        "kinds": Connector.Kind.choices,
        "can_create": services.connector_may_create(request.user),
        "api_keys": selectors.api_key_list(user=request.user),
        "key_form": key_form or ApiKeyCreateForm(user=request.user),
        "new_key": new_key,
        "scope_labels": dict(ApiKey.Scope.choices),
    }


@login_required
@require_safe
def connector_list(request):
    return render_page(request, LIST, fragment="connector-table", context=_page_context(request))


# --- create and edit --------------------------------------------------------------------------------------------


def _form_context(request, form: ConnectorForm | None, *, connector=None, kind=None, test=None, error="") -> dict:
    return {
        "form": form,
        "connector": connector,
        "kind": kind,
        "kind_label": Connector.Kind(kind).label if kind else "",
        "kinds": [(value, label) for value, label in Connector.Kind.choices],
        "test": test,
        "error": error,
        # Stored credentials no current key decrypts: the form asks for them again.
        "undecryptable": bool(connector and connector.secrets_ciphertext and not form.secrets_set),
    }


def _connector_form_post(request, form: ConnectorForm, *, connector=None):
    """Validate, then either test the settings (nothing saved) or save them. Returns (saved, test result)."""
    actor = Actor.from_request(request)
    testing = request.POST.get("action") == "test"
    if not form.is_valid():
        # Show the settings' own problems too, beside the fields that parsed, so one submit shows them all.
        settings = form.settings()
        errors = services.connector_settings_errors(
            kind=form.kind,
            connector=connector,
            config=settings["config"],
            secrets=settings["secrets"],
            clear=settings["clear"],
        )
        form.add_service_errors({name: message for name, message in errors.items() if not form.has_field_error(name)})
        return None, ({"ok": False, "message": "Fix the settings marked below first."} if testing else None)
    settings = form.settings()
    try:
        if testing:
            ok, message = services.connector_settings_test(
                actor=actor,
                kind=form.kind,
                connector=connector,
                config=settings["config"],
                secrets=settings["secrets"],
                clear_secrets=settings["clear"],
            )
            return None, {"ok": ok, "message": message}
        if connector is None:
            saved = services.connector_create(
                actor=actor,
                kind=form.kind,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                config=settings["config"],
                secrets=settings["secrets"],
            )
        else:
            saved = services.connector_update(
                actor=actor,
                connector=connector,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                config=settings["config"],
                secrets=settings["secrets"],
                clear_secrets=settings["clear"],
            )
        return saved, None
    except services.SettingsInvalid as exc:
        form.add_service_errors(exc.errors)
        return None, ({"ok": False, "message": "Fix the settings marked below first."} if testing else None)
    except PermissionDenied:
        raise DjangoPermissionDenied from None


def _render_form(request, context: dict, *, fragment: str = "connector-form"):
    if request.htmx and request.POST.get("action") == "test":
        fragment = "draft-test"
    response = render_page(request, FORM, fragment=fragment, context=context)
    add_never_cache_headers(response)  # a form page may hold settings an integrator typed
    return response


@login_required
@require_http_methods(["GET", "POST"])
def connector_create(request):
    """Choose a kind, then its form. Admins and integrators only."""
    if not services.connector_may_create(request.user):
        raise DjangoPermissionDenied("Only admins and integrators create connectors.")
    kind = (request.POST if request.method == "POST" else request.GET).get("kind", "")
    if kind not in KINDS:
        error = "Choose a kind of connector." if kind or request.method == "POST" else ""
        return _render_form(request, _form_context(request, None, error=error), fragment="kind-choice")
    if request.method == "GET":
        form = ConnectorForm(kind=kind)
        return _render_form(request, _form_context(request, form, kind=kind))
    form = ConnectorForm(request.POST, kind=kind)
    saved, test = _connector_form_post(request, form)
    if saved is not None:
        messages.success(request, f"The connector {saved.name} is saved. Test the connection to check it.")
        return _go(request, reverse("connectors:connector-detail", args=[saved.pk]))
    return _render_form(request, _form_context(request, form, kind=kind, test=test))


@login_required
@require_http_methods(["GET", "POST"])
def connector_edit(request, pk: int):
    """Edit settings and credentials (change_connector)."""
    connector = _connector_or_404(request, pk)
    if not selectors.connector_can(request.user, connector)["change"]:
        raise DjangoPermissionDenied("You may not edit this connector.")
    secrets_set = selectors.connector_secrets_set(connector=connector)
    if request.method == "GET":
        form = ConnectorForm(kind=connector.kind, connector=connector, secrets_set=secrets_set)
        return _render_form(request, _form_context(request, form, connector=connector, kind=connector.kind))
    form = ConnectorForm(request.POST, kind=connector.kind, connector=connector, secrets_set=secrets_set)
    saved, test = _connector_form_post(request, form, connector=connector)
    if saved is not None:
        messages.success(request, f"The connector {saved.name} is saved.")
        return _go(request, reverse("connectors:connector-detail", args=[saved.pk]))
    return _render_form(request, _form_context(request, form, connector=connector, kind=connector.kind, test=test))


# --- detail ----------------------------------------------------------------------------------------------------


def _settings_rows(connector: Connector) -> list[tuple[str, object]]:
    spec = KINDS.get(connector.kind, {"config": ()})
    return [
        (s.label, connector.config.get(s.name))
        for s in spec["config"]
        if connector.config.get(s.name) not in (None, "")
    ]


def _secret_rows(connector: Connector) -> list[tuple[str, bool]]:
    stored = selectors.connector_secrets_set(connector=connector)
    return [(s.label, s.name in stored) for s in KINDS.get(connector.kind, {"secrets": ()})["secrets"]]


def _detail_context(request, connector: Connector, **extra) -> dict:
    can = selectors.connector_can(request.user, connector)
    context = {
        "connector": connector,
        "can": can,
        "settings_rows": _settings_rows(connector),
        "secret_rows": _secret_rows(connector),
        "datasets": [(d, duration_label(d.freshness_sla)) for d in selectors.connector_datasets(connector=connector)],
        "destinations": selectors.connector_destinations(connector=connector),
        "destination_kinds": services.destination_kinds_for(connector),
        "access": selectors.connector_access(connector=connector),
        "access_form": AccessForm(initial={"action": "grant"}, auto_id="access-%s"),
        "history": selectors.history_entries(connector),
        "browsable": connector.kind in CLIENTS,
        "open_alerts": connector.alerts.exclude(status="resolved").order_by("-opened_at")[:10],
    }
    context.update(extra)
    return context


@login_required
@require_safe
def connector_detail(request, pk: int):
    connector = _connector_or_404(request, pk)
    return render_page(request, DETAIL, fragment="connector-detail", context=_detail_context(request, connector))


@login_required
@require_POST
def connector_test(request, pk: int):
    """Test one connection (connectors.services.connector_test checks change_connector or use_connector). From
    the detail page (htmx target connector-health) the health panel comes back, from the list its row."""
    connector = _connector_or_404(request, pk)
    on_detail = request.htmx.target == "connector-health" if request.htmx else request.POST.get("next") == "detail"
    status = 200
    try:
        result = services.connector_test(actor=Actor.from_request(request), connector=connector)
    except PermissionDenied as exc:
        row = {"connector": connector, "can_test": False, "ok": False, "message": exc.message}
        status = 200 if request.htmx else 403
    else:
        # Read back through the list's selector, so the row keeps its open-alerts count.
        tested = selectors.connector_list(user=request.user).get(pk=connector.pk)
        row = {"connector": tested, "can_test": True, "ok": result.ok, "message": result.message}
    if not request.htmx:
        if status == 200:
            messages.add_message(
                request, messages.SUCCESS if row["ok"] else messages.ERROR, f"{connector.name}: {row['message']}"
            )
            if on_detail:
                return redirect("connectors:connector-detail", connector.pk)
            return redirect("connectors:connector-list")
        context = _page_context(request)
        context["rows"] = [row if r["connector"].pk == connector.pk else r for r in context["rows"]]
        return render_page(request, LIST, fragment="connector-table", context=context, status=status)
    if on_detail:
        context = {"connector": row["connector"], "can": {"test": row["can_test"]}, "test": row}
        return render_page(request, DETAIL, fragment="health", context=context)
    return render_page(request, LIST, fragment="connector-row", context={"row": row}, status=status)


@login_required
@require_safe
def connector_browse(request, pk: int):
    """The source's tables, or one table's fields (?object=), read live; failures are shown inline."""
    connector = _connector_or_404(request, pk)
    obj = request.GET.get("object", "").strip()
    browse = {"object": obj, "objects": None, "fields": None, "error": ""}
    try:
        if obj:
            browse["fields"] = selectors.connector_fields(user=request.user, connector=connector, obj=obj)
        else:
            browse["objects"] = selectors.connector_objects(user=request.user, connector=connector)
    except PermissionDenied:
        raise DjangoPermissionDenied from None
    except Exception as exc:  # noqa: BLE001 - a failing remote is shown beside the button, never a 500
        browse["error"] = _live_error(exc, connector)
    fragment = "browse-fields" if obj else "browse"
    return render_page(request, DETAIL, fragment=fragment, context=_detail_context(request, connector, browse=browse))


@login_required
@require_POST
def connector_access(request, pk: int):
    """Grant or revoke view/use/edit to a group (change_connector)."""
    connector = _connector_or_404(request, pk)
    _require_change(request, connector)
    form = AccessForm(request.POST, auto_id="access-%s")
    notice = ""
    if form.is_valid():
        service = (
            services.connector_access_grant
            if form.cleaned_data["action"] == "grant"
            else services.connector_access_revoke
        )
        try:
            service(
                actor=Actor.from_request(request),
                connector=connector,
                group=form.cleaned_data["group"],
                codename=form.cleaned_data["codename"],
            )
        except PermissionDenied:
            raise DjangoPermissionDenied from None
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            verb = "granted to" if form.cleaned_data["action"] == "grant" else "revoked from"
            label = services.ACCESS_LABELS[form.cleaned_data["codename"]]
            notice = f"{label.capitalize()} {verb} {form.cleaned_data['group'].name}."
            form = AccessForm(initial={"action": "grant"}, auto_id="access-%s")
    if not request.htmx and notice:
        messages.success(request, notice)
        return redirect("connectors:connector-detail", connector.pk)
    context = _detail_context(request, connector, access_form=form, access_notice=notice)
    return render_page(request, DETAIL, fragment="access", context=context)


# --- datasets ---------------------------------------------------------------------------------------------------


def _require_change(request, connector: Connector) -> None:
    if not selectors.connector_can(request.user, connector)["change"]:
        raise DjangoPermissionDenied("You may not change this connector.")


def _source_objects(request, connector: Connector) -> list[str] | None:
    """The source's tables for the table select, or None (typed instead) when it does not answer now."""
    try:
        return selectors.connector_objects(user=request.user, connector=connector)
    except Exception:  # noqa: BLE001 - an unreachable source only means the table is typed by hand
        logger.info("Tables of connector %s not listed", connector.pk, exc_info=True)
        return None


def _dataset_context(request, connector, dataset=None, **extra) -> dict:
    can = selectors.connector_can(request.user, connector)
    context = {
        "connector": connector,
        "dataset": dataset,
        "can": can,
        "syncs": selectors.dataset_syncs(dataset=dataset) if dataset else [],
        "history": selectors.history_entries(dataset) if dataset else [],
        "is_file": connector.kind == Connector.Kind.FILE,
        "sla_text": duration_label(dataset.freshness_sla) if dataset else "",
        "upload_form": UploadForm(auto_id="upload-%s"),
    }
    if "form" not in extra and can["change"]:
        extra["form"] = DatasetForm(dataset=dataset, objects=_source_objects(request, connector))
    context.update(extra)
    return context


def _dataset_values(form: DatasetForm) -> dict:
    return {name: form.cleaned_data.get(name) for name in services.DATASET_FIELDS}


@login_required
@require_http_methods(["GET", "POST"])
def dataset_create(request, pk: int):
    connector = _connector_or_404(request, pk)
    _require_change(request, connector)
    if not connector.is_source:
        raise Http404("This connector has no datasets")
    if request.method == "POST":
        form = DatasetForm(request.POST, objects=_source_objects(request, connector))
        if form.is_valid():
            try:
                dataset = services.dataset_create(
                    actor=Actor.from_request(request), connector=connector, **_dataset_values(form)
                )
            except services.SettingsInvalid as exc:
                form.add_service_errors(exc.errors)
            else:
                messages.success(request, f"The dataset {dataset.name} is saved.")
                return _go(request, reverse("connectors:dataset-detail", args=[connector.pk, dataset.pk]))
    else:
        form = None
    context = _dataset_context(request, connector, **({"form": form} if form else {}))
    return render_page(request, DATASET, fragment="dataset-form", context=context)


def _dataset_or_404(request, pk: int, dataset_pk: int) -> SourceDataset:
    try:
        return selectors.dataset_get(user=request.user, connector_pk=pk, pk=dataset_pk)
    except (Connector.DoesNotExist, SourceDataset.DoesNotExist):
        raise Http404("No such dataset") from None


@login_required
@require_http_methods(["GET", "POST"])
def dataset_detail(request, pk: int, dataset_pk: int):
    """The dataset's contract, recent syncs and history; POST saves a change (change_connector)."""
    dataset = _dataset_or_404(request, pk, dataset_pk)
    connector = dataset.connector
    if request.method == "GET":
        return render_page(
            request, DATASET, fragment="dataset-form", context=_dataset_context(request, connector, dataset)
        )
    _require_change(request, connector)
    form = DatasetForm(request.POST, dataset=dataset, objects=_source_objects(request, connector))
    if form.is_valid():
        try:
            dataset = services.dataset_update(
                actor=Actor.from_request(request), dataset=dataset, **_dataset_values(form)
            )
        except services.SettingsInvalid as exc:
            form.add_service_errors(exc.errors)
        else:
            messages.success(request, f"The dataset {dataset.name} is saved.")
            return _go(request, reverse("connectors:dataset-detail", args=[connector.pk, dataset.pk]))
    return render_page(
        request, DATASET, fragment="dataset-form", context=_dataset_context(request, connector, dataset, form=form)
    )


@login_required
@require_POST
def dataset_sync(request, pk: int, dataset_pk: int):
    """Sync a cached dataset now; the outcome (and a failure's reason) shows in the syncs table."""
    dataset = _dataset_or_404(request, pk, dataset_pk)
    _require_change(request, dataset.connector)
    notice, error = "", ""
    try:
        sync = services.dataset_sync_now(actor=Actor.from_request(request), dataset=dataset)
    except PermissionDenied:
        raise DjangoPermissionDenied from None
    except Exception as exc:  # noqa: BLE001 - a failed sync is reported on the page, never a 500
        error = _live_error(exc, dataset.connector)
    else:
        if sync.status == sync.Status.FAILED:
            error = f"Sync failed: {services.redact(sync.error, dataset.connector)}"
        else:
            notice = f"Synced: {sync.rows_read} read, {sync.rows_written} written."
    dataset.refresh_from_db()
    if not request.htmx:
        messages.add_message(request, messages.ERROR if error else messages.SUCCESS, error or notice)
        return redirect("connectors:dataset-detail", dataset.connector_id, dataset.pk)
    context = _dataset_context(request, dataset.connector, dataset, sync_notice=notice, sync_error=error)
    return render_page(request, DATASET, fragment="syncs", context=context)


@login_required
@require_POST
def dataset_upload(request, pk: int, dataset_pk: int):
    """Upload a CSV / JSON Lines file to a file dataset: every row is checked; one bad row and nothing is
    written, with the row errors in a table."""
    dataset = _dataset_or_404(request, pk, dataset_pk)
    _require_change(request, dataset.connector)
    form = UploadForm(request.POST, request.FILES, auto_id="upload-%s")
    upload = None
    if form.is_valid():
        try:
            upload = services.dataset_file_upload(
                actor=Actor.from_request(request), dataset=dataset, uploaded_file=form.cleaned_data["file"]
            )
        except PermissionDenied:
            raise DjangoPermissionDenied from None
        except ServiceError as exc:
            form.add_error("file", exc.message)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is reported on the form, never a 500
            form.add_error("file", _live_error(exc, dataset.connector))
    if not request.htmx and upload is not None and upload.status != "failed":
        messages.success(request, f"Uploaded: {upload.rows_written} rows.")
        return redirect("connectors:dataset-detail", dataset.connector_id, dataset.pk)
    context = _dataset_context(request, dataset.connector, dataset, upload_form=form, upload=upload)
    return render_page(request, DATASET, fragment="upload", context=context)


# --- destinations -----------------------------------------------------------------------------------------------


def _destination_or_404(request, pk: int, destination_pk: int) -> Destination:
    try:
        return selectors.destination_get(user=request.user, connector_pk=pk, pk=destination_pk)
    except (Connector.DoesNotExist, Destination.DoesNotExist):
        raise Http404("No such destination") from None


def _destination_context(request, connector, destination=None, form=None) -> dict:
    can = selectors.connector_can(request.user, connector)
    kinds = services.destination_kinds_for(connector)
    if form is None and can["change"]:
        form = DestinationForm(kinds=kinds, destination=destination)
    examples = {
        Destination.Kind(kind).label: json.dumps(services.DESTINATION_EXAMPLES[(kind, connector.kind)], indent=2)
        for kind in kinds
        if services.DESTINATION_EXAMPLES.get((kind, connector.kind))
    }
    return {
        "connector": connector,
        "destination": destination,
        "can": can,
        "form": form,
        "examples": examples,
        "mapping_keys": {
            Destination.Kind(kind).label: list(services.DESTINATION_CONFIG.get((kind, connector.kind), {}))
            for kind in kinds
        },
        "history": selectors.history_entries(destination) if destination else [],
    }


def _destination_values(form: DestinationForm) -> dict:
    return {name: form.cleaned_data[name] for name in ("name", "kind", "table", "config")}


@login_required
@require_http_methods(["GET", "POST"])
def destination_create(request, pk: int):
    connector = _connector_or_404(request, pk)
    _require_change(request, connector)
    kinds = services.destination_kinds_for(connector)
    if not kinds:
        raise Http404("This connector cannot be a destination")
    form = None
    if request.method == "POST":
        form = DestinationForm(request.POST, kinds=kinds)
        if form.is_valid():
            try:
                destination = services.destination_create(
                    actor=Actor.from_request(request), connector=connector, **_destination_values(form)
                )
            except services.SettingsInvalid as exc:
                form.add_service_errors(exc.errors)
            else:
                messages.success(request, f"The destination {destination.name} is saved.")
                return _go(request, reverse("connectors:destination-detail", args=[connector.pk, destination.pk]))
    context = _destination_context(request, connector, form=form)
    return render_page(request, DESTINATION, fragment="destination-form", context=context)


@login_required
@require_http_methods(["GET", "POST"])
def destination_detail(request, pk: int, destination_pk: int):
    destination = _destination_or_404(request, pk, destination_pk)
    connector = destination.connector
    form = None
    if request.method == "POST":
        _require_change(request, connector)
        form = DestinationForm(request.POST, kinds=services.destination_kinds_for(connector), destination=destination)
        if form.is_valid():
            try:
                destination = services.destination_update(
                    actor=Actor.from_request(request), destination=destination, **_destination_values(form)
                )
            except services.SettingsInvalid as exc:
                form.add_service_errors(exc.errors)
            else:
                messages.success(request, f"The destination {destination.name} is saved.")
                return _go(request, reverse("connectors:destination-detail", args=[connector.pk, destination.pk]))
    context = _destination_context(request, connector, destination, form=form)
    return render_page(request, DESTINATION, fragment="destination-form", context=context)


# --- API keys --------------------------------------------------------------------------------------------------


@login_required
@require_POST
def api_key_create(request):
    """Create a key for the signed-in user; the raw key is in this response only (never stored, never cached)."""
    form = ApiKeyCreateForm(request.POST, user=request.user)
    new_key = None
    if form.is_valid():
        try:
            key, raw = api_key_create_service(
                actor=Actor.from_request(request),
                user=request.user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                use_cases=form.cleaned_data["use_cases"],
                expires_at=form.cleaned_data["expires_at"],
            )
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            new_key = {"key": key, "raw": raw}
            form = ApiKeyCreateForm(user=request.user)
    response = render_page(
        request, LIST, fragment="api-keys", context=_page_context(request, key_form=form, new_key=new_key)
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
    return render_page(request, LIST, fragment="api-keys", context=_page_context(request))
