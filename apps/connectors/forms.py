"""Forms of the connector pages. They read and type the inputs; the services decide what is valid (so the UI,
the API and commands share one rule) and their errors come back here beside the field they name."""

import datetime as dt
import json
import re

from django import forms
from django.contrib.auth.models import Group
from django.utils.dateparse import parse_duration

from apps.core import clock
from apps.core.permissions import restrict
from apps.permissions.models import ApiKey
from apps.workflows.models import UseCase

from .kinds import KINDS, Setting
from .models import Destination, SourceDataset
from .services import ACCESS_CODENAMES, ACCESS_LABELS

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration_text(text: str) -> dt.timedelta | None:
    """ "24h", "3d", "90m", "45s", "2w", or HH:MM:SS (and Django's "3 04:00:00", ISO "P3D"); blank is None."""
    text = (text or "").strip()
    if not text:
        return None
    match = _DURATION.match(text)
    if match:
        return dt.timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
    duration = parse_duration(text)
    if duration is None:
        raise forms.ValidationError("Enter a duration like 24h, 3d, 90m or HH:MM:SS.")
    return duration


def duration_text(duration: dt.timedelta | None) -> str:
    """The short form parse_duration_text reads back: 24h, 3d, 90m."""
    if duration is None:
        return ""
    seconds = int(duration.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class DurationTextField(forms.CharField):
    def to_python(self, value):
        return parse_duration_text(super().to_python(value))

    def prepare_value(self, value):
        return duration_text(value) if isinstance(value, dt.timedelta) else value


def _control(widget: forms.Widget) -> forms.Widget:
    css = "form-check-input" if isinstance(widget, forms.CheckboxInput) else "form-control"
    if isinstance(widget, forms.Select):
        css = "form-select"
    widget.attrs.setdefault("class", css)
    return widget


class ServiceErrorsMixin:
    """Put a service's SettingsInvalid errors beside the fields they name (`field_for` maps names), and mark
    every field in error for the eye (Bootstrap) and for assistive technology (Django sets aria-invalid)."""

    field_for: dict[str, str] = {}

    def add_error(self, field, error):
        super().add_error(field, error)
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                if "is-invalid" not in widget.attrs.get("class", ""):
                    widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()

    def has_field_error(self, name: str) -> bool:
        """Whether the field a service error names has an error already."""
        return self.field_for.get(name, name) in self.errors

    def add_service_errors(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            field = self.field_for.get(name, name)
            self.add_error(field if field in self.fields else None, message)


class ConnectorForm(ServiceErrorsMixin, forms.Form):
    """Name, description, the kind's settings and its credentials. Credentials are write-only: their inputs
    are never filled in, a blank one keeps what is stored, and a tick in “clear” removes it."""

    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, kind: str, connector=None, secrets_set: set[str] | None = None, **kwargs):
        self.kind, self.connector = kind, connector
        self.secrets_set = secrets_set or set()
        if connector is not None and "initial" not in kwargs:
            kwargs["initial"] = self._initial(connector)
        super().__init__(*args, **kwargs)
        self.field_for = {"kind": "__all__", "config": "__all__"}
        for setting in KINDS[kind]["config"]:
            self.fields[f"cfg_{setting.name}"] = self._config_field(setting)
            self.field_for[f"config.{setting.name}"] = f"cfg_{setting.name}"
        version = connector.secrets_version if connector is not None else 0
        for setting in KINDS[kind]["secrets"]:
            is_set = setting.name in self.secrets_set
            help_text = f"Set (version {version}) — leave blank to keep." if is_set else setting.help
            if is_set and setting.help:
                help_text = f"{setting.help} {help_text}"
            self.fields[f"sec_{setting.name}"] = forms.CharField(
                label=setting.label,
                required=False,
                strip=False,
                help_text=help_text,
                widget=_control(forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})),
            )
            self.field_for[f"secrets.{setting.name}"] = f"sec_{setting.name}"
            if is_set:
                self.fields[f"clear_{setting.name}"] = forms.BooleanField(
                    label=f"Clear {setting.label.lower()}", required=False, widget=_control(forms.CheckboxInput())
                )
        for name in ("name", "description"):
            _control(self.fields[name].widget)

    @staticmethod
    def _initial(connector) -> dict:
        initial = {"name": connector.name, "description": connector.description}
        for setting in KINDS[connector.kind]["config"]:
            value = connector.config.get(setting.name)
            if value is None:
                continue
            if setting.kind == "json":
                value = json.dumps(value, indent=2)
            elif setting.kind == "list" and isinstance(value, list):
                value = ", ".join(value)
            initial[f"cfg_{setting.name}"] = value
        return initial

    @staticmethod
    def _config_field(setting: Setting) -> forms.Field:
        common = {"label": setting.label, "help_text": setting.help, "required": setting.required}
        if setting.choices:
            choices = ([] if setting.required else [("", "—")]) + [(c, c) for c in setting.choices]
            return forms.ChoiceField(choices=choices, widget=_control(forms.Select()), **common)
        if setting.kind == "bool":
            return forms.BooleanField(**{**common, "required": False}, widget=_control(forms.CheckboxInput()))
        if setting.kind == "int":
            return forms.IntegerField(widget=_control(forms.NumberInput()), **common)
        if setting.kind == "decimal":
            return forms.DecimalField(widget=_control(forms.NumberInput(attrs={"step": "any"})), **common)
        if setting.kind == "json":
            widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "form-control font-monospace"})
            return forms.CharField(widget=widget, **common)
        widget = forms.URLInput() if setting.kind == "url" else forms.TextInput()
        return forms.CharField(widget=_control(widget), **common)

    def config_rows(self):
        return [self[f"cfg_{s.name}"] for s in KINDS[self.kind]["config"]]

    def secret_rows(self):
        rows = []
        for setting in KINDS[self.kind]["secrets"]:
            clear = f"clear_{setting.name}"
            rows.append({"field": self[f"sec_{setting.name}"], "clear": self[clear] if clear in self.fields else None})
        return rows

    def settings(self) -> dict:
        """The inputs as the services take them: config, secrets entered, credentials to clear."""
        data = getattr(self, "cleaned_data", {})
        config = {}
        for setting in KINDS[self.kind]["config"]:
            value = data.get(f"cfg_{setting.name}")
            config[setting.name] = str(value) if setting.kind == "decimal" and value is not None else value
        secrets = {s.name: data.get(f"sec_{s.name}", "") for s in KINDS[self.kind]["secrets"]}
        clear = tuple(s.name for s in KINDS[self.kind]["secrets"] if data.get(f"clear_{s.name}"))
        return {"config": config, "secrets": secrets, "clear": clear}


class DatasetForm(ServiceErrorsMixin, forms.Form):
    """A dataset's contract. `objects` are the source's tables when it answered: the table is then chosen
    from them; otherwise it is typed."""

    name = forms.CharField(max_length=100)
    table = forms.CharField(max_length=100, label="Table or object")
    key_field = forms.CharField(max_length=100, help_text=SourceDataset._meta.get_field("key_field").help_text)
    updated_at_field = forms.CharField(
        max_length=100, required=False, label="As-of field", help_text="Field with the record's as-of time"
    )
    cursor_field = forms.CharField(
        max_length=100, required=False, help_text="Field for incremental reads (defaults to the as-of field)"
    )
    freshness_sla = DurationTextField(
        required=False, label="Freshness SLA", help_text="Records older than this are stale: 24h, 3d, 90m or HH:MM:SS"
    )
    stale_action = forms.ChoiceField(
        choices=SourceDataset.StaleAction.choices,
        label="When stale or failing a rule",
        help_text=SourceDataset._meta.get_field("stale_action").help_text,
    )
    quality_rules = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "class": "form-control font-monospace"}),
        help_text='JSON: {"required": ["arr"], "allowed": {"tier": ["gold", "silver"]}, '
        '"ranges": {"nps": {"min": -100, "max": 100}}}',
    )
    store_values = forms.BooleanField(
        required=False, label="Store the values a run used", help_text="Off: only their hash is kept in the snapshot"
    )
    mode = forms.ChoiceField(choices=SourceDataset.Mode.choices)
    sync_interval = DurationTextField(
        required=False, help_text="Cached datasets: how often to refresh the copy, e.g. 1h (blank: only by hand)"
    )

    def __init__(self, *args, objects: list[str] | None = None, dataset=None, **kwargs):
        if dataset is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": dataset.name,
                "table": dataset.table,
                "key_field": dataset.key_field,
                "updated_at_field": dataset.updated_at_field,
                "cursor_field": dataset.cursor_field,
                "freshness_sla": dataset.freshness_sla,
                "stale_action": dataset.stale_action,
                "quality_rules": json.dumps(dataset.quality_rules, indent=2) if dataset.quality_rules else "",
                "store_values": dataset.store_values,
                "mode": dataset.mode,
                "sync_interval": dataset.sync_interval,
            }
        kwargs.setdefault("initial", {"store_values": True, "stale_action": "review", "mode": "live"})
        super().__init__(*args, **kwargs)
        self.objects = objects
        if objects:
            current = (dataset.table,) if dataset is not None and dataset.table not in objects else ()
            choices = [("", "— choose —")] + [(o, o) for o in (*current, *objects)]
            self.fields["table"].widget = forms.Select(choices=choices)
        for field in self.fields.values():
            _control(field.widget)

    def clean_table(self):
        table = self.cleaned_data["table"].strip()
        if self.objects and table not in self.objects and table != self.initial.get("table"):
            raise forms.ValidationError("Choose one of the source's tables.")
        return table

    def clean_quality_rules(self):
        text = self.cleaned_data["quality_rules"].strip()
        if not text:
            return {}
        try:
            rules = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from exc
        if not isinstance(rules, dict):
            raise forms.ValidationError("Quality rules must be a JSON object.")
        return rules


class UploadForm(ServiceErrorsMixin, forms.Form):
    file = forms.FileField(help_text="CSV with a header row, or JSON Lines (one object per line)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _control(self.fields["file"].widget)


class DestinationForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=Destination.Kind.choices)
    table = forms.CharField(max_length=100, required=False, help_text="Write-back or BI table (SQL connectors)")
    config = forms.CharField(
        required=False,
        label="Mapping",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "form-control font-monospace"}),
        help_text="JSON object: the kind's mapping (columns, object)",
    )

    def __init__(self, *args, kinds: list[str], destination=None, **kwargs):
        if destination is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": destination.name,
                "kind": destination.kind,
                "table": destination.table,
                "config": json.dumps(destination.config, indent=2) if destination.config else "",
            }
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(k, Destination.Kind(k).label) for k in kinds]
        for field in self.fields.values():
            _control(field.widget)

    def clean_config(self):
        text = self.cleaned_data["config"].strip()
        if not text:
            return {}
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from exc
        if not isinstance(config, dict):
            raise forms.ValidationError("The mapping must be a JSON object.")
        return config


class AccessForm(ServiceErrorsMixin, forms.Form):
    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"))
    codename = forms.ChoiceField(
        label="Permission", choices=[(c, ACCESS_LABELS[c]) for c in ACCESS_CODENAMES], initial="use_connector"
    )
    action = forms.ChoiceField(choices=[("grant", "Grant"), ("revoke", "Revoke")], widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            _control(field.widget)


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. “CRM widget”.")
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked means every scope you hold.",
    )
    use_cases = forms.ModelMultipleChoiceField(
        queryset=UseCase.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked means every use case you may see.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires",
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local", "class": "form-control", "aria-describedby": "key-expiry-help"},
            format="%Y-%m-%dT%H:%M",
        ),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        help_text="Optional; leave empty for a key that does not expire.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["use_cases"].queryset = restrict(UseCase.objects.all(), user, "view_usecase").order_by("name")

    def clean_name(self):
        return self.cleaned_data["name"].strip()

    def clean_expires_at(self):
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= clock.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at
