"""Operational endpoints (liveness, readiness, metrics: public, as probes and scrapers carry no login) and home."""

import hmac
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from apps.core.metrics import render_metrics
from apps.permissions import roles
from config import celery_app

logger = logging.getLogger(__name__)

# A readiness probe must answer quickly even when the broker host drops packets.
BROKER_TIMEOUT_SECONDS = 2


@never_cache
@require_safe
def healthz(request):
    """200 while the process can answer; touches nothing else, so a slow database never restarts the pod."""
    return HttpResponse("ok", content_type="text/plain")


def _database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("readyz: database check failed", exc_info=True)
        # The class name only: the message may carry host names or credentials, and this view is public.
        return f"error: {type(exc).__name__}"
    return "ok"


def _broker_status() -> str:
    try:
        with celery_app.connection_for_write(connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as exc:
        logger.warning("readyz: broker check failed", exc_info=True)
        return f"error: {type(exc).__name__}"
    return "ok"


@never_cache
@require_safe
def readyz(request):
    """200 when both the database and the Celery broker answer, 503 otherwise."""
    checks = {"database": _database_status(), "broker": _broker_status()}
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if ready else 503)


@never_cache
@require_safe
def metrics(request):
    """Prometheus text. Its labels name every use case and its cost, so with DOORSTEP_METRICS_TOKEN set the
    scraper must send it as a bearer token (compared in constant time)."""
    token = settings.DOORSTEP_METRICS_TOKEN
    if token and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}"):
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = render_metrics()
    return HttpResponse(body, content_type=content_type)


# Each persona lands where its work is (PRODUCT.md, "Who uses it").
_PERSONA_HOME = {
    roles.REVIEWER: "reviews:queue-list",
    roles.GOVERNANCE: "workflows:use-case-list",
    roles.EXECUTIVE: "reporting:roi",
    roles.INTEGRATOR: "connectors:connector-list",
    roles.ADMIN: "workflows:use-case-list",
}


@login_required
def home(request):
    return redirect(_PERSONA_HOME.get(roles.role_of(request.user), "workflows:use-case-list"))
