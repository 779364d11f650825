"""Connector writes: configuring connectors (settings validated per kind, credentials write-only), testing a
connection and recording its health, who may use or edit a connector, and its datasets and destinations.

Every change is one transaction with the acting user and a reason in the object's history. Credentials are
never in the history (the ciphertext is excluded): a change shows as a new `secrets_version`.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from importlib import import_module
from pathlib import Path
from urllib.parse import urlparse

import requests
from cryptography.fernet import InvalidToken
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.permissions import roles
from apps.permissions.services import object_permission_grant, object_permission_revoke

from .clients import http
from .clients.errors import ConnectorError
from .clients.local_models import ChurnModel, ReplyRetriever
from .clients.registry import CLIENTS, client_for
from .clients.smtp import GuardedSMTP
from .kinds import KINDS, Setting
from .models import Connector, Destination, SourceDataset

logger = logging.getLogger(__name__)

TEST_CODENAMES = ("change_connector", "use_connector")
# Roles whose members may create connectors; what they may do with a connector afterwards is per object.
CREATOR_ROLES = (roles.ADMIN, roles.INTEGRATOR)
# Granted on a new connector to the creator's creator-role groups.
ACCESS_CODENAMES = ("view_connector", "use_connector", "change_connector")
ACCESS_LABELS = {"view_connector": "view", "use_connector": "use", "change_connector": "edit"}
# Credentials that are http(s) URLs (the URL itself is the secret), checked like URL settings.
HTTP_URL_SECRETS = {("slack", "webhook_url")}
TEST_TIMEOUT = (3.05, 8.0)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")


class SettingsInvalid(ServiceError):
    """Several inputs are wrong at once. `errors` maps an input ("name", "config.base_url",
    "secrets.url", "quality_rules") to its message, for the form to show beside each field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class ConnectorTestResult:
    ok: bool
    message: str
    connector: Connector


# --- permissions ---------------------------------------------------------------------------------------------


def connector_may_create(user) -> bool:
    """Admins and integrators create connectors (a role, not an object grant: there is no object yet)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or user.groups.filter(name__in=CREATOR_ROLES).exists()


def _require(actor: Actor, codename: str, connector: Connector, message: str) -> None:
    if not has_object_permission(actor.user, codename, connector):
        raise PermissionDenied(message)


def connector_may_test(user, connector: Connector) -> bool:
    return any(has_object_permission(user, codename, connector) for codename in TEST_CODENAMES)


# --- settings ------------------------------------------------------------------------------------------------


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _clean_url(value: str) -> str:
    """An http(s) URL with a host whose address may be called (SSRF guard, checked again at request time)."""
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("Enter an http:// or https:// URL with a host name.")
    try:
        http.check_address(value)
    except ConnectorError as exc:
        raise ValueError(str(exc)) from exc
    return value


def _clean_setting(setting: Setting, value):
    """The typed value of one non-secret setting, or ValueError with a message for the integrator."""
    if setting.kind == "bool":
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "on", "yes")
    if setting.kind == "json":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from exc
        return value
    if setting.kind == "list":
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        items = [str(item).strip() for item in items if str(item).strip()]
        if not items and setting.required:
            raise ValueError("Enter at least one value.")
        return items
    if setting.kind == "int":
        if isinstance(value, bool):
            raise ValueError("Enter a whole number.")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ValueError("Enter a whole number.") from None
    if setting.kind == "decimal":
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("Enter a number, e.g. 0.002.") from None
        if not number.is_finite():
            raise ValueError("Enter a number, e.g. 0.002.")
        return str(number)  # JSON has no decimal type: kept as text so no precision is lost
    value = str(value).strip()
    if setting.choices and value not in setting.choices:
        raise ValueError(f"Choose one of: {', '.join(setting.choices)}.")
    if setting.kind == "url":
        return _clean_url(value)
    if setting.kind == "path":
        return _clean_path(value)
    return value


def _clean_path(value: str) -> str:
    """A file inside the folders an admin set aside (DOORSTEP_FILE_DIRS): a model file is unpickled when
    loaded, so pointing a connector at any file on the server would let an integrator run code."""
    path = Path(value)
    if not path.is_absolute():
        raise ValueError("Enter an absolute path on the Doorstep server, e.g. /srv/doorstep/models/churn.joblib.")
    resolved = path.resolve()
    folders = [Path(folder).resolve() for folder in settings.DOORSTEP_FILE_DIRS]
    if not any(resolved.is_relative_to(folder) for folder in folders):
        raise ValueError(f"Files must be inside {' or '.join(str(f) for f in folders)} (DOORSTEP_FILE_DIRS).")
    return value


def _clean_database_url(value: str) -> None:
    """A URL SQLAlchemy can parse, for a dialect installed here. The message never repeats the URL: it holds
    the password. Database hosts are usually private, so they are not held to the outbound HTTP address guard."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(
            "Not a database URL: use postgresql://user:password@host:5432/db, "
            "mysql+pymysql://user:password@host:3306/db or sqlite:////absolute/path.db"
        ) from None
    if url.drivername in ("postgres", "postgres+psycopg"):  # the old spelling, accepted by the client
        url = url.set(drivername="postgresql")
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise ValueError(
            f"Unsupported database kind {url.drivername!r}: use postgresql, mysql+pymysql or sqlite"
        ) from None
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or not Path(url.database).is_absolute():
            raise ValueError("A SQLite URL needs an absolute file path: sqlite:////absolute/path.db")
    elif not url.host:
        raise ValueError("The database URL has no host.")


def _clean_secret(kind: str, setting: Setting, value: str) -> str:
    value = value.strip()
    if kind == "sql" and setting.name == "url":
        _clean_database_url(value)
    elif (kind, setting.name) in HTTP_URL_SECRETS:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("Enter an http:// or https:// URL.")
        try:
            http.check_address(value)
        except http.BlockedAddress:
            raise ValueError(
                f"{parsed.hostname} resolves to a private address; an admin must allow-list it "
                "(DOORSTEP_OUTBOUND_ALLOWLIST)"
            ) from None
        except ConnectorError:
            raise ValueError(f"Cannot resolve {parsed.hostname}.") from None
    return value


def _kind_validators(kind: str):
    """A client's own check of its settings (`validate_config(config) -> [errors]`), when it offers one."""
    target = CLIENTS.get(kind)
    if not target:
        return None
    try:
        module = import_module(target.split(":")[0])
    except ImportError:
        return None
    return getattr(module, "validate_config", None)


def connector_settings_clean(
    *, kind: str, config: dict, secrets: dict, stored_secrets: dict | None = None, clear: tuple[str, ...] = ()
) -> tuple[dict, dict]:
    """The kind's settings typed and checked, and the credentials to store: `secrets` holds only what was
    entered (a blank keeps the stored value), `clear` names credentials to remove. Raises SettingsInvalid."""
    if kind not in KINDS:
        raise SettingsInvalid({"kind": f"Unknown connector kind {kind!r}."})
    spec = KINDS[kind]
    errors: dict[str, str] = {}
    clean_config: dict = {}
    for setting in spec["config"]:
        value = config.get(setting.name)
        if _blank(value) or (setting.kind == "list" and value == []):
            if setting.required and setting.kind != "bool":
                errors[f"config.{setting.name}"] = "This setting is required."
            continue
        try:
            clean_config[setting.name] = _clean_setting(setting, value)
        except ValueError as exc:
            errors[f"config.{setting.name}"] = str(exc)
    validate_config = _kind_validators(kind)
    if validate_config and not errors:
        labels = {f"{setting.label}: ": setting.name for setting in spec["config"]}
        for message in validate_config(clean_config):
            # A client's message starts with the setting's label: put it beside that field.
            prefix = next((p for p in labels if message.startswith(p)), None)
            if prefix:
                errors.setdefault(f"config.{labels[prefix]}", message[len(prefix) :])
            else:
                errors.setdefault("config", message)
    final = {k: v for k, v in (stored_secrets or {}).items() if k not in clear}
    for setting in spec["secrets"]:
        value = secrets.get(setting.name)
        if not _blank(value):
            try:
                final[setting.name] = _clean_secret(kind, setting, value)
            except ValueError as exc:
                errors[f"secrets.{setting.name}"] = str(exc)
        elif setting.required and not final.get(setting.name):
            errors[f"secrets.{setting.name}"] = (
                "This credential is required; it cannot be cleared."
                if setting.name in clear
                else "This credential is required."
            )
    known = {setting.name for setting in spec["secrets"]}
    final = {k: v for k, v in final.items() if k in known}
    if errors:
        raise SettingsInvalid(errors)
    return clean_config, final


def connector_settings_errors(
    *, kind: str, config: dict, secrets: dict, connector: Connector | None = None, clear: tuple[str, ...] = ()
) -> dict[str, str]:
    """Every error of the settings at once, for a form that has other errors too (nothing is saved)."""
    stored = stored_secrets(connector) if connector is not None else {}
    try:
        connector_settings_clean(kind=kind, config=config, secrets=secrets, stored_secrets=stored, clear=clear)
    except SettingsInvalid as exc:
        return exc.errors
    return {}


def stored_secrets(connector: Connector) -> dict:
    """The connector's decrypted credentials, for services and clients only (never for a page); none when no
    current key decrypts them (they must be entered again)."""
    try:
        return connector.secrets
    except InvalidToken:
        return {}


def _check_name(name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise SettingsInvalid({"name": "A name is required."})
    if len(name) > 100:
        raise SettingsInvalid({"name": "At most 100 characters."})
    if Connector.objects.filter(name=name).exclude(pk=exclude_pk).exists():
        raise SettingsInvalid({"name": f"A connector named {name!r} already exists."})
    return name


def _save(obj, actor: Actor, reason: str, *, field: str = "name") -> None:
    obj._history_user = actor.history_user
    obj._change_reason = reason[:100]
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:  # the same name saved at the same moment elsewhere
        raise SettingsInvalid({field: "That name was just taken; choose another."}) from None


def connector_create(
    *, actor: Actor, kind: str, name: str, description: str = "", config: dict, secrets: dict
) -> Connector:
    """A new connector of `kind` with its settings and credentials (encrypted). Needs the Admin or Integrator
    role; the creator's Admin/Integrator groups get view, use and change on it."""
    if not connector_may_create(actor.user):
        raise PermissionDenied("Only admins and integrators create connectors.")
    errors = {}
    try:
        name = _check_name(name)
    except SettingsInvalid as exc:
        errors.update(exc.errors)
    try:
        config, secrets = connector_settings_clean(kind=kind, config=config, secrets=secrets)
    except SettingsInvalid as exc:
        errors.update(exc.errors)
    if errors:
        raise SettingsInvalid(errors)
    with transaction.atomic():
        connector = Connector(name=name, kind=kind, description=(description or "").strip(), config=config)
        if secrets:
            connector.set_secrets(secrets)
        reason = "Created" + (f"; credentials set (version {connector.secrets_version})" if secrets else "")
        _save(connector, actor, reason)
        if actor.user is not None:
            for group in actor.user.groups.filter(name__in=CREATOR_ROLES):
                for codename in ACCESS_CODENAMES:
                    object_permission_grant(group=group, codename=codename, obj=connector)
    return connector


def connector_update(
    *,
    actor: Actor,
    connector: Connector,
    name: str,
    description: str = "",
    config: dict,
    secrets: dict,
    clear_secrets: tuple[str, ...] = (),
) -> Connector:
    """Change a connector's name, description, settings and credentials. A blank credential keeps the stored
    one; `clear_secrets` removes some. Needs change_connector. The history says what changed, never a secret."""
    _require(actor, "change_connector", connector, "You may not edit this connector.")
    with transaction.atomic():
        connector = Connector.objects.select_for_update().get(pk=connector.pk)
        stored = stored_secrets(connector)
        errors = {}
        try:
            name = _check_name(name, exclude_pk=connector.pk)
        except SettingsInvalid as exc:
            errors.update(exc.errors)
        try:
            config, final = connector_settings_clean(
                kind=connector.kind, config=config, secrets=secrets, stored_secrets=stored, clear=tuple(clear_secrets)
            )
        except SettingsInvalid as exc:
            errors.update(exc.errors)
        if errors:
            raise SettingsInvalid(errors)
        changed = []
        if name != connector.name:
            changed.append("name")
        description = (description or "").strip()
        if description != connector.description:
            changed.append("description")
        keys = sorted(k for k in {*config, *connector.config} if config.get(k) != connector.config.get(k))
        if keys:
            changed.append(f"settings ({', '.join(keys)})")
        connector.name, connector.description, connector.config = name, description, config
        credentials = ""
        if final != stored:
            connector.set_secrets(final)
            credentials = f"credentials changed (version {connector.secrets_version})"
        if not changed and not credentials:
            return connector
        reason = "; ".join(filter(None, ["Changed " + "; ".join(changed) if changed else "", credentials]))
        _save(connector, actor, reason[0].upper() + reason[1:])
    return connector


# --- connection tests ------------------------------------------------------------------------------------------


def redact(message: str, connector: Connector) -> str:
    """`message` without any credential of the connector in it (a driver may quote a URL or a header)."""
    values = [value for value in stored_secrets(connector).values() if isinstance(value, str)]
    # The password inside a URL credential may be quoted on its own.
    values += [urlparse(value).password or "" for value in values if "://" in value]
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:
            message = message.replace(value, "•••")
    return message


def _test_local_model(connector: Connector) -> str:
    artifact = connector.config.get("artifact")
    if not artifact:
        raise ConnectorError("No model file configured")
    if connector.kind == Connector.Kind.MODEL_SKLEARN:
        model = ChurnModel.load(artifact)
        auc = f", training AUC {model.auc:.3f}" if model.auc is not None else ""
        return f"Model loaded: {len(model.features)} features, trained {model.trained_at or 'at an unknown time'}{auc}"
    retriever = ReplyRetriever.load(artifact)
    return f"Index loaded: {len(retriever.articles)} articles"


def _test_openai(connector: Connector) -> str:
    """GET {base_url}/models: served by OpenAI, Azure, vLLM and Ollama; proves address and key at no token cost."""
    config, secrets = connector.config, connector.secrets
    base = (config.get("base_url") or "").rstrip("/")
    http.check_address(base)
    headers, params = {}, {}
    if config.get("api_style") == "azure":
        params["api-version"] = config.get("api_version", "2024-06-01")
        if secrets.get("api_key"):
            headers["api-key"] = secrets["api_key"]
    elif secrets.get("api_key"):
        headers["Authorization"] = f"Bearer {secrets['api_key']}"
    response = http.request(
        http.session(),
        "GET",
        f"{base}/models",
        system="The model endpoint",
        timeout=TEST_TIMEOUT,
        attempts=1,
        headers=headers,
        params=params,
    )
    body = http.json_body(response, system="The model endpoint")
    models = [m.get("id") for m in body.get("data", []) if isinstance(m, dict)] if isinstance(body, dict) else []
    wanted = config.get("model", "")
    found = f"; model {wanted} is available" if wanted in models else f"; model {wanted} is not in its list"
    return f"The model endpoint answered: {len(models)} model{'s' if len(models) != 1 else ''}{found if wanted else ''}"


def _test_reachable(url: str, system: str) -> str:
    """Any HTTP answer proves the address and the route work; a receiver need not accept a bare HEAD, so
    statuses are not errors here (unlike http.request). The session still guards the address at connect time."""
    http.check_address(url)
    try:
        response = http.session().head(url, timeout=TEST_TIMEOUT, allow_redirects=False)
    except requests.Timeout as exc:
        raise ConnectorError(f"{system} did not answer within {TEST_TIMEOUT[1]:g}s") from exc
    except requests.ConnectionError as exc:
        raise ConnectorError(f"Cannot reach {system} at {urlparse(url).netloc}: connection failed") from exc
    except requests.RequestException as exc:
        raise ConnectorError(f"{system}: {type(exc).__name__}") from exc
    if response.status_code >= 500 and response.status_code != 501:  # 501: HEAD not implemented, yet it answered
        raise ConnectorError(f"{system} is reachable but failing: it answered {response.status_code}")
    return f"{system} at {urlparse(url).hostname} is reachable (it answered {response.status_code})"


def _test_smtp(connector: Connector) -> str:
    config, secrets = connector.config, connector.secrets
    host, port = config.get("host", ""), int(config.get("port") or 25)
    try:
        with GuardedSMTP(host, port, timeout=TEST_TIMEOUT[1]) as smtp:
            smtp.ehlo()
            if config.get("use_tls"):
                smtp.starttls()
                smtp.ehlo()
            if secrets.get("username"):
                smtp.login(secrets["username"], secrets.get("password", ""))
            code, _ = smtp.noop()
    except smtplib.SMTPAuthenticationError as exc:
        raise ConnectorError(f"The SMTP server refused the user name or password ({exc.smtp_code})") from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise ConnectorError(f"The SMTP server does not support this: {exc}") from exc
    except smtplib.SMTPException as exc:
        raise ConnectorError(f"SMTP error from {host}:{port}: {exc}") from exc
    except TimeoutError as exc:
        raise ConnectorError(f"The SMTP server {host}:{port} did not answer in time") from exc
    except OSError as exc:
        raise ConnectorError(f"Cannot reach the SMTP server {host}:{port}: {exc.strerror or exc}") from exc
    return f"The SMTP server {host}:{port} answered (NOOP {code})"


def _probe(connector: Connector) -> str:
    """Try the connection the way real calls will; return what was seen."""
    kind = connector.kind
    if kind in CLIENTS:
        return client_for(connector).test() or "Connected"
    if kind in (Connector.Kind.MODEL_SKLEARN, Connector.Kind.MODEL_RETRIEVAL):
        return _test_local_model(connector)
    if kind == Connector.Kind.MODEL_OPENAI:
        return _test_openai(connector)
    if kind == Connector.Kind.MODEL_HTTP:
        return _test_reachable(connector.config.get("url", ""), "The model endpoint")
    if kind == Connector.Kind.WEBHOOK:
        return _test_reachable(connector.config.get("url", ""), "The webhook receiver")
    if kind == Connector.Kind.SLACK:
        url = connector.secrets.get("webhook_url", "")
        if not url:
            raise ConnectorError("No incoming webhook URL in the credentials")
        return _test_reachable(url, "The chat webhook")
    if kind == Connector.Kind.EMAIL:
        return _test_smtp(connector)
    raise ConnectorError(f"Unknown connector kind {kind!r}")


def _run_probe(connector: Connector) -> tuple[bool, str]:
    try:
        return True, redact(_probe(connector), connector)
    except ConnectorError as exc:
        return False, redact(str(exc), connector)
    except InvalidToken:
        return False, "The credentials cannot be decrypted with the current encryption keys: enter them again"
    except (OSError, ValueError, KeyError, EOFError) as exc:
        # Missing or unreadable artifact files, wrong artifact types: the message is the integrator's to read.
        return False, redact(f"{type(exc).__name__}: {exc}", connector)
    except Exception as exc:  # noqa: BLE001 - a test reports any failure (e.g. an unpicklable artifact), never a 500
        logger.exception("Connection test of connector %s failed unexpectedly", connector.pk)
        return False, f"Unexpected error: {type(exc).__name__}"


def connector_test(*, actor: Actor, connector: Connector) -> ConnectorTestResult:
    """Try the connection and record health, last success/failure and last error (with the acting user
    in the history). Needs change_connector or use_connector. A failing connection is a result, not an error."""
    if not connector_may_test(actor.user, connector):
        raise PermissionDenied("You may not test this connector.")
    ok, message = _run_probe(connector)
    with transaction.atomic():
        connector = Connector.objects.select_for_update().get(pk=connector.pk)
        now = clock.now()
        if ok:
            connector.health = Connector.Health.OK
            connector.last_success_at = now
            connector.last_error = ""
        else:
            connector.health = Connector.Health.FAILING
            connector.last_failure_at = now
            connector.last_error = message[:2000]
        connector._history_user = actor.history_user
        connector._change_reason = "Connection test: " + ("ok" if ok else "failed")
        connector.save()
    return ConnectorTestResult(ok=ok, message=message, connector=connector)


def connector_settings_test(
    *,
    actor: Actor,
    kind: str,
    config: dict,
    secrets: dict,
    connector: Connector | None = None,
    clear_secrets: tuple[str, ...] = (),
) -> tuple[bool, str]:
    """Test settings before they are saved (nothing is stored, no health recorded). On an existing connector a
    blank credential means the stored one. Needs the right to create, or change_connector on `connector`."""
    if connector is None:
        if not connector_may_create(actor.user):
            raise PermissionDenied("Only admins and integrators create connectors.")
    else:
        _require(actor, "change_connector", connector, "You may not edit this connector.")
        kind = connector.kind
    stored = stored_secrets(connector) if connector is not None else {}
    config, final = connector_settings_clean(
        kind=kind, config=config, secrets=secrets, stored_secrets=stored, clear=tuple(clear_secrets)
    )
    if kind == Connector.Kind.FILE:
        return True, "Nothing to connect to: files are uploaded to the connector's datasets once it is saved"
    draft = Connector(name=connector.name if connector else "draft", kind=kind, config=config)
    draft.set_secrets(final)
    return _run_probe(draft)


# A success is stamped at most this often: a model endpoint answering many calls a second does not pay
# a database write (and its WAL flush) on each of them. Failures are always recorded, with their error.
SUCCESS_STAMP_INTERVAL = timedelta(seconds=30)


def connector_outcome_record(*, connector: Connector, ok: bool, error: str = "") -> None:
    """What real calls (runs, deliveries) saw of a connector. The times and the last error are telemetry,
    written without history; a change of health is a saved change, in the history."""
    now = clock.now()
    health = Connector.Health.OK if ok else Connector.Health.FAILING
    if ok:
        recent = connector.last_success_at is not None and now - connector.last_success_at < SUCCESS_STAMP_INTERVAL
        if connector.health == health and recent:
            return
        Connector.objects.filter(pk=connector.pk).update(last_success_at=now)
        connector.last_success_at = now
    else:
        Connector.objects.filter(pk=connector.pk).update(last_failure_at=now, last_error=error[:2000])
    if connector.health == health:
        return
    with transaction.atomic():
        stored = Connector.objects.select_for_update().get(pk=connector.pk)
        if stored.health != health:
            stored.health = health
            if ok:
                stored.last_error = ""
            stored._change_reason = "Health as seen by a run or delivery"
            stored.save()
    connector.health = health  # the caller's instance, so its next call needs no second look


# --- who may use or edit a connector ---------------------------------------------------------------------------


def _access_change(*, actor: Actor, connector: Connector, group: Group, codename: str, grant: bool) -> None:
    if codename not in ACCESS_CODENAMES:
        raise ServiceError(f"Unknown permission {codename!r}.", field="codename")
    _require(actor, "change_connector", connector, "You may not change who may use this connector.")
    # Use and edit without view would be invisible grants; removing view removes access altogether.
    if grant:
        codenames = ("view_connector", codename) if codename != "view_connector" else (codename,)
    else:
        codenames = ACCESS_CODENAMES if codename == "view_connector" else (codename,)
    verb = "Granted" if grant else "Revoked"
    with transaction.atomic():
        for name in codenames:
            (object_permission_grant if grant else object_permission_revoke)(group=group, codename=name, obj=connector)
        connector = Connector.objects.select_for_update().get(pk=connector.pk)
        # The grant itself lives in guardian's table; this row puts who did it, and when, in the history.
        _save(connector, actor, f"{verb} {ACCESS_LABELS[codename]} to group {group.name}")


def connector_access_grant(*, actor: Actor, connector: Connector, group: Group, codename: str) -> None:
    """Let `group` view, use or edit the connector (use and edit include view). Needs change_connector."""
    _access_change(actor=actor, connector=connector, group=group, codename=codename, grant=True)


def connector_access_revoke(*, actor: Actor, connector: Connector, group: Group, codename: str) -> None:
    """Take one permission from `group`; taking view takes use and edit too. Needs change_connector."""
    _access_change(actor=actor, connector=connector, group=group, codename=codename, grant=False)


# --- datasets --------------------------------------------------------------------------------------------------


def _quality_rules_errors(rules, fields: list[str] | None) -> list[str]:
    try:
        from .datasets import quality_rules_validate
    except ImportError:  # the dataset module predates the validator: check the documented shape
        quality_rules_validate = None
    if quality_rules_validate is not None:
        return list(quality_rules_validate(rules, fields))
    if not isinstance(rules, dict):
        return ["Quality rules must be a JSON object."]
    unknown = set(rules) - {"required", "allowed", "ranges"}
    errors = [f"Unknown rule {name!r}: use required, allowed, ranges." for name in sorted(unknown)]
    if not isinstance(rules.get("required", []), list):
        errors.append("required must be a list of fields.")
    if not isinstance(rules.get("allowed", {}), dict):
        errors.append("allowed must map a field to its allowed values.")
    if not isinstance(rules.get("ranges", {}), dict):
        errors.append("ranges must map a field to {min, max}.")
    return errors


def _source_fields(connector: Connector, table: str) -> list[str] | None:
    """The table's fields when the source answers now; None when it cannot say (then names are not checked)."""
    try:
        return [f.name for f in client_for(connector).list_fields(table)]
    except Exception:  # noqa: BLE001 - an unreachable or unbrowsable source must not block saving
        logger.info("Fields of %s in connector %s not checked", table, connector.pk, exc_info=True)
        return None


def _clean_dataset(connector: Connector, values: dict, *, exclude_pk: int | None = None) -> dict:
    errors = {}
    values = {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
    values["stale_action"] = values.get("stale_action") or SourceDataset.StaleAction.REVIEW
    values["mode"] = values.get("mode") or SourceDataset.Mode.LIVE
    values["store_values"] = values.get("store_values") is not False
    for field in ("updated_at_field", "cursor_field"):
        values[field] = values.get(field) or ""
    if not connector.is_source:
        raise SettingsInvalid({"connector": f"A {connector.get_kind_display()} connector has no datasets."})
    for field in ("name", "table", "key_field"):
        if not values.get(field):
            errors[field] = "This field is required."
    if values.get("name") and connector.datasets.filter(name=values["name"]).exclude(pk=exclude_pk).exists():
        errors["name"] = f"{connector.name} already has a dataset named {values['name']!r}."
    for field in ("table", "key_field", "updated_at_field", "cursor_field"):
        if values.get(field) and len(values[field]) > 100:
            errors[field] = "At most 100 characters."
    if values.get("stale_action") not in SourceDataset.StaleAction.values:
        errors["stale_action"] = "Choose review or block."
    if values.get("mode") not in SourceDataset.Mode.values:
        errors["mode"] = "Choose live or cached."
    sla, interval = values.get("freshness_sla"), values.get("sync_interval")
    if sla is not None and sla.total_seconds() <= 0:
        errors["freshness_sla"] = "The SLA must be longer than zero."
    if interval is not None and interval.total_seconds() < 60:
        errors["sync_interval"] = "Sync at most once a minute."
    is_file = connector.kind == Connector.Kind.FILE
    if values.get("mode") == SourceDataset.Mode.CACHED and not is_file:
        if not (values.get("cursor_field") or values.get("updated_at_field")):
            errors["cursor_field"] = "A cached dataset reads incrementally: name a cursor field or an as-of field."
    fields = _source_fields(connector, values["table"]) if values.get("table") and not errors else None
    if fields is not None:
        for field in ("key_field", "updated_at_field", "cursor_field"):
            if values.get(field) and values[field] not in fields:
                errors[field] = f"{values[field]!r} is not a field of {values['table']}."
    rules = values.get("quality_rules") or {}
    messages = _quality_rules_errors(rules, fields)
    if messages:
        errors["quality_rules"] = " ".join(messages)
    if errors:
        raise SettingsInvalid(errors)
    values["quality_rules"] = rules
    return values


DATASET_FIELDS = (
    "name", "table", "key_field", "updated_at_field", "cursor_field", "freshness_sla", "stale_action",
    "quality_rules", "store_values", "mode", "sync_interval",
)  # fmt: skip


def dataset_create(*, actor: Actor, connector: Connector, **values) -> SourceDataset:
    """A dataset (table or object) of a source connector with its key, freshness SLA and quality rules.
    Needs change_connector. Field names are checked against the source when it answers."""
    _require(actor, "change_connector", connector, "You may not add datasets to this connector.")
    values = _clean_dataset(connector, {field: values.get(field) for field in DATASET_FIELDS})
    with transaction.atomic():
        dataset = SourceDataset(connector=connector, **values)
        _save(dataset, actor, "Created")
    return dataset


def dataset_update(*, actor: Actor, dataset: SourceDataset, **values) -> SourceDataset:
    """Change a dataset's contract. Needs change_connector on its connector."""
    _require(actor, "change_connector", dataset.connector, "You may not edit this dataset.")
    with transaction.atomic():
        dataset = SourceDataset.objects.select_for_update().select_related("connector").get(pk=dataset.pk)
        values = _clean_dataset(
            dataset.connector, {field: values.get(field) for field in DATASET_FIELDS}, exclude_pk=dataset.pk
        )
        changed = [field for field, value in values.items() if getattr(dataset, field) != value]
        if not changed:
            return dataset
        for field, value in values.items():
            setattr(dataset, field, value)
        _save(dataset, actor, "Changed " + ", ".join(changed))
    return dataset


def dataset_sync_now(*, actor: Actor, dataset: SourceDataset):
    """Refresh a cached dataset now (apps.connectors.datasets.dataset_sync). Needs change_connector."""
    _require(actor, "change_connector", dataset.connector, "You may not sync this dataset.")
    if dataset.mode != SourceDataset.Mode.CACHED:
        raise ServiceError("Only a cached dataset is synced; a live one is read from the source on every run.")
    from .datasets import dataset_sync

    return dataset_sync(actor=actor, dataset=dataset, trigger="manual")


def dataset_file_upload(*, actor: Actor, dataset: SourceDataset, uploaded_file):
    """Replace a file dataset's records with an uploaded file (apps.connectors.datasets.dataset_upload, which
    validates every row and writes nothing when one fails). Needs change_connector."""
    _require(actor, "change_connector", dataset.connector, "You may not upload to this dataset.")
    if dataset.connector.kind != Connector.Kind.FILE:
        raise ServiceError("Files are uploaded to datasets of a file connector.", field="file")
    from .datasets import dataset_upload

    return dataset_upload(actor=actor, dataset=dataset, uploaded_file=uploaded_file)


# --- destinations ----------------------------------------------------------------------------------------------

# What each destination kind needs from its connector.
DESTINATION_CONNECTOR_KINDS = {
    Destination.Kind.WRITEBACK: Connector.WRITE_KINDS,
    Destination.Kind.WEBHOOK: (Connector.Kind.WEBHOOK,),
    Destination.Kind.NOTIFY: Connector.NOTIFY_KINDS,
    Destination.Kind.BI_TABLE: (Connector.Kind.SQL,),
}
# Per (destination kind, connector kind): config keys → (required, allowed values or None, is an identifier).
DESTINATION_CONFIG = {
    ("writeback", "sql"): {
        "subject_column": (True, None, True),
        "text_column": (True, None, True),
        "title_column": (False, None, True),
    },
    ("writeback", "salesforce"): {
        "object": (False, ("Task",), False),
        "subject_field": (False, None, True),
        "idempotency_field": (False, None, True),
    },
    ("writeback", "hubspot"): {
        "object": (False, ("companies", "deals", "contacts", "tickets"), False),
        "subject_field": (False, None, True),
    },
    ("writeback", "zendesk"): {"subject_field": (False, ("id", "external_id"), False)},
    ("writeback", "rest"): {},
    ("webhook", "webhook"): {},
    ("notify", "email"): {},
    ("notify", "slack"): {},
    ("bi_table", "sql"): {},
}
DESTINATION_EXAMPLES = {
    ("writeback", "sql"): {"subject_column": "account_id", "text_column": "body", "title_column": "subject"},
    ("writeback", "salesforce"): {"object": "Task", "subject_field": "AccountNumber"},
    ("writeback", "hubspot"): {"object": "companies", "subject_field": "domain"},
    ("writeback", "zendesk"): {"subject_field": "external_id"},
}


def destination_kinds_for(connector: Connector) -> list[str]:
    return [kind for kind, kinds in DESTINATION_CONNECTOR_KINDS.items() if connector.kind in kinds]


def _clean_destination(connector: Connector, values: dict, *, exclude_pk: int | None = None) -> dict:
    errors = {}
    name = (values.get("name") or "").strip()
    kind, table = values.get("kind"), (values.get("table") or "").strip()
    config = values.get("config") if values.get("config") is not None else {}
    if not name:
        errors["name"] = "A name is required."
    elif len(name) > 100:
        errors["name"] = "At most 100 characters."
    elif Destination.objects.filter(name=name).exclude(pk=exclude_pk).exists():
        errors["name"] = f"A destination named {name!r} already exists."
    if kind not in Destination.Kind.values:
        errors["kind"] = "Choose a destination kind."
    elif connector.kind not in DESTINATION_CONNECTOR_KINDS[kind]:
        allowed = ", ".join(Connector.Kind(k).label for k in DESTINATION_CONNECTOR_KINDS[kind])
        errors["kind"] = f"A {Destination.Kind(kind).label.lower()} destination needs a connector of kind: {allowed}."
    needs_table = kind == Destination.Kind.BI_TABLE or (kind == Destination.Kind.WRITEBACK and connector.kind == "sql")
    if needs_table and not table:
        errors["table"] = "Name the table to write to."
    elif table and not _IDENTIFIER.match(table):
        errors["table"] = "Letters, digits, _ and . only, starting with a letter."
    if not isinstance(config, dict):
        errors["config"] = "The mapping must be a JSON object."
    elif "kind" not in errors:
        spec = DESTINATION_CONFIG.get((kind, connector.kind), {})
        problems = [f"Unknown key {key!r}" for key in sorted(set(config) - set(spec))]
        for key, (required, allowed, identifier) in spec.items():
            value = config.get(key)
            if value in (None, ""):
                if required:
                    problems.append(f"{key} is required")
                continue
            if not isinstance(value, str):
                problems.append(f"{key} must be text")
            elif allowed and value not in allowed:
                problems.append(f"{key} must be one of {', '.join(allowed)}")
            elif identifier and not _IDENTIFIER.match(value):
                problems.append(f"{key} is not a valid field name")
        if problems:
            allowed_keys = ", ".join(spec) or "none"
            errors["config"] = "; ".join(problems) + f" (keys for this kind: {allowed_keys})."
    if errors:
        raise SettingsInvalid(errors)
    return {"name": name, "kind": kind, "table": table, "config": config}


def destination_create(
    *, actor: Actor, connector: Connector, name: str, kind: str, table: str = "", config: dict | None = None
) -> Destination:
    """Where approved outputs of use cases go through `connector`. Needs change_connector on it."""
    _require(actor, "change_connector", connector, "You may not add destinations to this connector.")
    values = _clean_destination(connector, {"name": name, "kind": kind, "table": table, "config": config})
    with transaction.atomic():
        destination = Destination(connector=connector, **values)
        _save(destination, actor, "Created")
    return destination


def destination_update(
    *, actor: Actor, destination: Destination, name: str, kind: str, table: str = "", config: dict | None = None
) -> Destination:
    """Change a destination's name, kind, table or mapping. Needs change_connector on its connector."""
    _require(actor, "change_connector", destination.connector, "You may not edit this destination.")
    with transaction.atomic():
        destination = Destination.objects.select_for_update().select_related("connector").get(pk=destination.pk)
        values = _clean_destination(
            destination.connector,
            {"name": name, "kind": kind, "table": table, "config": config},
            exclude_pk=destination.pk,
        )
        changed = [field for field, value in values.items() if getattr(destination, field) != value]
        if not changed:
            return destination
        for field, value in values.items():
            setattr(destination, field, value)
        _save(destination, actor, "Changed " + ", ".join(changed))
    return destination
