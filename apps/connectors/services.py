"""Connector writes: testing a connection and recording its health on the connector's history."""

import logging
from dataclasses import dataclass
from urllib.parse import urlparse

from cryptography.fernet import InvalidToken
from django.db import transaction

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied
from apps.core.permissions import has_object_permission

from .clients.errors import ConnectorError
from .clients.http import check_address
from .clients.local_models import ChurnModel, ReplyRetriever
from .clients.sql import SqlClient
from .models import Connector

logger = logging.getLogger(__name__)

TEST_CODENAMES = ("change_connector", "use_connector")


@dataclass(frozen=True)
class ConnectorTestResult:
    ok: bool
    message: str
    connector: Connector


def _test_sql(connector: Connector) -> str:
    url = connector.secrets.get("url")
    if not url:
        raise ConnectorError("No database URL in the credentials")
    client = SqlClient(url)
    client.test()
    tables = client.list_tables()
    shown = ", ".join(tables[:8]) + ("…" if len(tables) > 8 else "")
    return f"Connected; {len(tables)} table{'s' if len(tables) != 1 else ''}" + (f": {shown}" if tables else "")


def _test_model(connector: Connector) -> str:
    artifact = connector.config.get("artifact")
    if not artifact:
        raise ConnectorError("No model artifact configured (config.artifact)")
    if connector.kind == Connector.Kind.MODEL_SKLEARN:
        model = ChurnModel.load(artifact)
        auc = f", training AUC {model.auc:.3f}" if model.auc is not None else ""
        return f"Model loaded: {len(model.features)} features, trained {model.trained_at or 'at an unknown time'}{auc}"
    retriever = ReplyRetriever.load(artifact)
    return f"Index loaded: {len(retriever.articles)} articles"


def _test_webhook(connector: Connector) -> str:
    url = connector.config.get("url", "")
    if urlparse(url).scheme not in ("http", "https"):
        raise ConnectorError("No http(s) URL configured (config.url)")
    check_address(url)
    return f"{urlparse(url).hostname} resolves to an allowed address"


def connector_test(*, actor: Actor, connector: Connector) -> ConnectorTestResult:
    """Try the connection and record health, last success/failure and last error (with the acting user
    in the history). Needs change_connector or use_connector. A failing connection is a result, not an error."""
    if not any(has_object_permission(actor.user, codename, connector) for codename in TEST_CODENAMES):
        raise PermissionDenied("You may not test this connector.")
    try:
        if connector.kind == Connector.Kind.SQL:
            message = _test_sql(connector)
        elif connector.kind in Connector.MODEL_KINDS:
            message = _test_model(connector)
        elif connector.kind == Connector.Kind.WEBHOOK:
            message = _test_webhook(connector)
        else:
            raise ConnectorError(f"Unknown connector kind {connector.kind!r}")
        ok = True
    except ConnectorError as exc:
        ok, message = False, str(exc)
    except InvalidToken:
        ok, message = False, "The credentials cannot be decrypted with the current encryption keys"
    except (OSError, ValueError, KeyError, EOFError) as exc:
        # Missing or unreadable artifact files, wrong artifact types: the message is the integrator's to read.
        ok, message = False, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a test reports any failure (e.g. an unpicklable artifact), never a 500
        logger.exception("Connection test of connector %s failed unexpectedly", connector.pk)
        ok, message = False, f"Unexpected error: {type(exc).__name__}"
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


def connector_outcome_record(*, connector: Connector, ok: bool, error: str = "") -> None:
    """What real calls (runs, deliveries) saw of a connector. The times and the last error are telemetry,
    written on every call without history; a change of health is a saved change, in the history."""
    now = clock.now()
    if ok:
        Connector.objects.filter(pk=connector.pk).update(last_success_at=now)
    else:
        Connector.objects.filter(pk=connector.pk).update(last_failure_at=now, last_error=error[:2000])
    health = Connector.Health.OK if ok else Connector.Health.FAILING
    if connector.health == health:
        return
    with transaction.atomic():
        connector = Connector.objects.select_for_update().get(pk=connector.pk)
        if connector.health == health:
            return
        connector.health = health
        if ok:
            connector.last_error = ""
        connector._change_reason = "Health as seen by a run or delivery"
        connector.save()
