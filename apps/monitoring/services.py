"""Alerts: raised by jobs that failed, resolved when the trouble is gone; one unresolved alert per key.
Budgets: the month's model cost per use case and per endpoint, kept running by the pipeline and enforced
before every model call. Alert rules: watched signals, evaluated by beat, notified by e-mail and webhook."""

import csv
import datetime as dt
import hashlib
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from apps.connectors.clients.errors import ConnectorError
from apps.connectors.models import Connector
from apps.core import clock, metrics
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission, restrict
from apps.core.tasks import send_after_commit
from apps.delivery import webhooks
from apps.workflows.models import Run

from .models import Alert, AlertRule, CostImport, CostImportLine, MonthlySpend


def alert_raise(
    *, key: str, kind: str, title: str, detail: str = "", severity: str = Alert.Severity.WARNING, **about
) -> Alert:
    """Open an alert, or count one more occurrence of the unresolved alert with the same key.
    `about`: use_case= or connector= the alert concerns (for permissions and links)."""
    now = clock.now()
    for _ in range(2):
        updated = Alert.objects.exclude(status=Alert.Status.RESOLVED).filter(key=key)
        if updated.update(occurrences=F("occurrences") + 1, last_seen_at=now, detail=detail):
            return updated.get()
        try:
            with transaction.atomic():
                alert = Alert(key=key, kind=kind, title=title, detail=detail, severity=severity, **about)
                alert._change_reason = "Raised"
                alert.save()
                return alert
        except IntegrityError:  # raised at the same moment elsewhere: count it as an occurrence
            continue
    return Alert.objects.exclude(status=Alert.Status.RESOLVED).get(key=key)


def alert_resolve(*, key: str, actor: Actor, reason: str) -> int:
    """Resolve the unresolved alert with `key` (if any), with who and why in its history."""
    resolved = 0
    with transaction.atomic():
        for alert in Alert.objects.select_for_update().exclude(status=Alert.Status.RESOLVED).filter(key=key):
            alert.status = Alert.Status.RESOLVED
            alert.resolved_at = clock.now()
            alert._history_user = actor.history_user
            alert._change_reason = reason
            alert.save()
            resolved += 1
    return resolved


def alert_may_act(user, alert: Alert) -> bool:
    """Who may acknowledge or resolve an alert: whoever may change what it is about (the connector or the use
    case); an alert about neither is an admin's."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    if alert.connector_id and has_object_permission(user, "change_connector", alert.connector):
        return True
    return bool(alert.use_case_id and has_object_permission(user, "change_usecase", alert.use_case))


def alert_acknowledge(*, actor: Actor, alert: Alert) -> Alert:
    """Someone is on it: an open alert becomes acknowledged (who and when in its history); an acknowledged or
    resolved one is left as it is. Needs alert_may_act."""
    if not alert_may_act(actor.user, alert):
        raise PermissionDenied("You may not acknowledge this alert.")
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status != Alert.Status.OPEN:
            return alert
        alert.status = Alert.Status.ACKNOWLEDGED
        alert.acknowledged_by = actor.user
        alert._history_user = actor.history_user
        alert._change_reason = "Acknowledged"
        alert.save()
    return alert


def alert_close(*, actor: Actor, alert: Alert, reason: str = "Resolved by hand") -> Alert:
    """Resolve an alert from the alerts page (alert_resolve, with a permission check). Needs alert_may_act.
    If the trouble comes back, the job that saw it raises a new alert."""
    if not alert_may_act(actor.user, alert):
        raise PermissionDenied("You may not resolve this alert.")
    alert_resolve(key=alert.key, actor=actor, reason=reason)
    alert.refresh_from_db()
    return alert


# Endpoints have no soft share of their own: warn at 80 % of their budget.
ENDPOINT_SOFT_SHARE = Decimal("0.8")


def month_start(at: dt.datetime) -> dt.date:
    """The first day of `at`'s calendar month (local time): the key of the running monthly totals."""
    return timezone.localdate(at).replace(day=1)


@dataclass(frozen=True)
class BudgetPlan:
    """What the model step may do now: the endpoints it may call, in order, with whether each is the
    fallback; `review_required` sends the output to review (a hard limit with the review action)."""

    endpoints: list = field(default_factory=list)
    review_required: bool = False


def budget_plan(*, use_case) -> BudgetPlan:
    """The endpoints the model step may call for `use_case` under this month's budgets. An endpoint past its
    own budget (over every use case) is never called. Past the use case's budget, its hard action applies:
    `fallback` calls only the fallback endpoint, `review` sends every output to review, `pause` calls nothing.
    Raises ServiceError (code budget_exceeded) when no call is allowed. One indexed query, none without budgets."""
    planned = [(e, fb) for e, fb in ((use_case.model_endpoint, False), (use_case.fallback_endpoint, True)) if e]
    capped = [e.pk for e, _ in planned if e.monthly_budget is not None]
    if use_case.monthly_budget is None and not capped:
        return BudgetPlan(planned)
    month = month_start(clock.now())
    scope = Q(connector_id__in=capped)
    if use_case.monthly_budget is not None:
        scope |= Q(use_case_id=use_case.pk)
    use_case_spent, endpoint_spent = Decimal("0"), {}
    for use_case_id, connector_id, cost in MonthlySpend.objects.filter(scope, month=month).values_list(
        "use_case_id", "connector_id", "cost"
    ):
        if use_case_id:
            use_case_spent = cost
        else:
            endpoint_spent[connector_id] = cost
    review_required = False
    if use_case.monthly_budget is not None and use_case_spent >= use_case.monthly_budget:
        reached = (
            f"{use_case.name} has spent {use_case_spent:.2f} of its monthly budget of {use_case.monthly_budget} "
            f"({month:%B %Y})"
        )
        action = use_case.budget_hard_action
        if action == use_case.BudgetAction.PAUSE:
            raise ServiceError(f"{reached}: paused, no model call until next month.", code="budget_exceeded")
        if action == use_case.BudgetAction.FALLBACK:
            planned = [(e, fb) for e, fb in planned if fb]
            if not planned:
                raise ServiceError(f"{reached} and has no fallback endpoint: no model call.", code="budget_exceeded")
        else:
            review_required = True
    allowed = [
        (e, fb)
        for e, fb in planned
        if e.monthly_budget is None or endpoint_spent.get(e.pk, Decimal("0")) < e.monthly_budget
    ]
    if planned and not allowed:
        names = ", ".join(e.name for e, _ in planned)
        raise ServiceError(f"Monthly budget reached on {names} ({month:%B %Y}): no model call.", code="budget_exceeded")
    return BudgetPlan(allowed, review_required)


def _spend_add(month: dt.date, cost: Decimal, **scope) -> None:
    for _ in range(2):
        if MonthlySpend.objects.filter(month=month, **scope).update(cost=F("cost") + cost):
            return
        try:
            with transaction.atomic():
                MonthlySpend.objects.create(month=month, cost=cost, **scope)
                return
        except IntegrityError:  # created at the same moment by another call: add to it
            continue


def _budget_alerts(month: dt.date, budget, soft_share: Decimal, **scope) -> None:
    """Raise the soft and hard alerts of `scope`'s month, each once: the flag flips in the same UPDATE that
    checks it, so concurrent calls raise it once."""
    if budget is None:
        return
    row = MonthlySpend.objects.filter(month=month, **scope).values("cost").get()
    ((kind, target),) = scope.items()
    for flag, limit, severity, word in (
        ("hard_alerted", budget, Alert.Severity.CRITICAL, "reached"),
        ("soft_alerted", budget * soft_share, Alert.Severity.WARNING, f"at {soft_share * 100:.0f} %"),
    ):
        if row["cost"] < limit:
            continue
        if MonthlySpend.objects.filter(month=month, **scope, **{flag: False}).update(**{flag: True}):
            alert_raise(
                key=f"budget-{flag[:4]}:{kind}:{target.pk}:{month:%Y-%m}",
                kind="budget",
                title=f"Monthly budget {word}: {target.name}",
                detail=f"{row['cost']:.2f} spent in {month:%B %Y} of a budget of {budget}.",
                severity=severity,
                **scope,
            )


def model_answer_account(*, run, use_case, endpoint) -> None:
    """Account for the model answer `run` kept from `endpoint` (once per run): its cost goes to this month's
    totals of the use case and of the endpoint, raising each one's soft-limit (and hard-limit) alert the first
    time this month the total crosses it; cost, tokens and fallback go to the Prometheus counters."""
    cost = run.cost
    metrics.MODEL_ANSWERS_TOTAL.labels(use_case.slug, str(run.used_fallback).lower()).inc()
    metrics.MODEL_TOKENS_TOTAL.labels(endpoint.name, "in").inc(run.tokens_in)
    metrics.MODEL_TOKENS_TOTAL.labels(endpoint.name, "out").inc(run.tokens_out)
    if not cost:
        return
    metrics.MODEL_COST_TOTAL.labels(use_case.slug, endpoint.name).inc(float(cost))
    month = month_start(clock.now())
    _spend_add(month, cost, use_case=use_case)
    _spend_add(month, cost, connector=endpoint)
    _budget_alerts(month, use_case.monthly_budget, use_case.budget_soft_share, use_case=use_case)
    _budget_alerts(month, endpoint.monthly_budget, ENDPOINT_SOFT_SHARE, connector=endpoint)


# --- Alert rules: edited by whoever may change what they watch; evaluated by beat. ---

# Signals measured on runs, the only ones an endpoint rule may watch (the rest belong to a use case).
ENDPOINT_SIGNALS = (
    AlertRule.Signal.RUNS,
    AlertRule.Signal.ERROR_RATE,
    AlertRule.Signal.FALLBACK_RATE,
    AlertRule.Signal.LATENCY_P95,
    AlertRule.Signal.COST,
)
# How many items a rate or percentile stands on (a rule's min_samples applies to these).
SAMPLES = {
    AlertRule.Signal.ERROR_RATE: "finished",
    AlertRule.Signal.FALLBACK_RATE: "called",
    AlertRule.Signal.LATENCY_P95: "called",
    AlertRule.Signal.ACCEPTANCE_RATE: "shown",
}
# An endpoint without a run in the window: no rate to read, but "no runs" and "no cost" are figures.
NO_RUNS = {"runs": 0, "cost": Decimal("0")}
RULE_FIELDS = (
    "name",
    "use_case",
    "connector",
    "signal",
    "condition",
    "threshold",
    "window",
    "min_samples",
    "severity",
    "notify_emails",
    "notify_webhook",
    "enabled",
)


def alert_rule_may_change(user, rule: AlertRule) -> bool:
    """Whoever may change the use case (or the endpoint) a rule watches may change the rule."""
    if rule.use_case_id:
        return has_object_permission(user, "change_usecase", rule.use_case)
    return bool(rule.connector_id and has_object_permission(user, "change_connector", rule.connector))


def _rule_errors(actor: Actor, rule: AlertRule) -> list[tuple[str, str]]:
    errors = []
    if bool(rule.use_case_id) == bool(rule.connector_id):
        errors.append(("use_case", "Choose either a use case or a model endpoint."))
    elif not alert_rule_may_change(actor.user, rule):
        errors.append(("use_case" if rule.use_case_id else "connector", "You may not change what this rule watches."))
    if rule.connector_id and rule.connector.kind not in Connector.MODEL_KINDS:
        errors.append(("connector", "Choose a model endpoint."))
    if rule.connector_id and rule.signal not in ENDPOINT_SIGNALS:
        errors.append(("signal", "A model endpoint's rule watches runs, errors, fallbacks, latency or cost."))
    if rule.signal == AlertRule.Signal.BACKLOG and rule.condition in (
        AlertRule.Condition.DROP,
        AlertRule.Condition.RISE,
    ):
        errors.append(("condition", "The backlog is a figure of now: compare it with a threshold."))
    if rule.notify_webhook_id and (
        rule.notify_webhook.kind != Connector.Kind.WEBHOOK
        or not has_object_permission(actor.user, "view_connector", rule.notify_webhook)
    ):
        errors.append(("notify_webhook", "Choose a signed-webhook connector you may see."))
    for address in _recipients(rule.notify_emails):
        try:
            validate_email(address)
        except DjangoValidationError:
            errors.append(("notify_emails", f"{address!r} is not an e-mail address."))
    return errors


def alert_rule_save(*, actor: Actor, rule: AlertRule, reason: str) -> AlertRule:
    """Create or change an alert rule; its history keeps who, when and why. Needs change_usecase on the use
    case it watches (change_connector on the endpoint), before and after the change, and view_connector on
    the webhook it notifies. Raises ServiceError naming the first field at fault."""
    if rule.pk:
        before = AlertRule.objects.select_related("use_case", "connector").get(pk=rule.pk)
        if not alert_rule_may_change(actor.user, before):
            raise PermissionDenied("You may not change this alert rule.")
    errors = _rule_errors(actor, rule)
    if errors:
        name, message = errors[0]
        raise ServiceError(message, field=name)
    if not (reason or "").strip():
        raise ServiceError("Say why (it goes to the rule's history).", field="reason")
    with transaction.atomic():
        rule._history_user = actor.history_user
        rule._change_reason = reason.strip()[:100]
        rule.save()
    return rule


def _recipients(value: str) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _compare(rule: AlertRule, value, previous) -> tuple[bool, str]:
    """Whether `rule` fires for `value` (and the previous window's `previous`), and the sentence saying why."""
    label = rule.get_signal_display()
    threshold = rule.threshold
    match rule.condition:
        case AlertRule.Condition.ABOVE:
            return value > threshold, f"{label} is {value} (threshold {threshold}, over {rule.window})"
        case AlertRule.Condition.BELOW:
            return value < threshold, f"{label} is {value} (threshold {threshold}, over {rule.window})"
    if previous is None or previous == 0:
        return False, f"{label} is {value}; no figure for the previous {rule.window} to compare with"
    change = (value - previous) * 100 / previous
    fired = -change >= threshold if rule.condition == AlertRule.Condition.DROP else change >= threshold
    return fired, f"{label} went from {previous} to {value} ({change:+.1f} %) against the previous {rule.window}"


def _rule_value(rule: AlertRule, figures: dict | None):
    """The rule's figure from a figures row (None when missing or resting on fewer than min_samples items)."""
    if figures is None:
        return None
    samples = SAMPLES.get(rule.signal)
    if samples and figures.get(samples, 0) < rule.min_samples:
        return None
    value = figures.get(rule.signal)
    return None if value is None else Decimal(str(value))


def alert_rules_evaluate(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Evaluate every enabled rule: a firing rule opens (or counts one more occurrence of) its alert, a rule
    that no longer fires resolves it; an opening and a recovery are notified (after commit). The figures
    come from the monitoring selectors, per window for all rules at once. Returns counts for the log."""
    from . import selectors
    from .tasks import alert_rule_notify_task

    now = now or clock.now()
    actor = Actor.for_system("alert_rules_evaluate")
    rules = list(AlertRule.objects.filter(enabled=True).select_related("use_case", "connector"))
    counts = {"evaluated": 0, "fired": 0, "opened": 0, "resolved": 0}
    for window, delta in selectors.WINDOWS.items():
        batch = [rule for rule in rules if rule.window == window]
        if not batch:
            continue
        use_case_ids = sorted({rule.use_case_id for rule in batch if rule.use_case_id})
        connector_ids = sorted({rule.connector_id for rule in batch if rule.connector_id})
        compared = any(rule.condition in (AlertRule.Condition.DROP, AlertRule.Condition.RISE) for rule in batch)
        figures = {}
        for period, (start, end) in (("now", (now - delta, now)), ("before", (now - 2 * delta, now - delta))):
            if period == "before" and not compared:
                break
            figures[period] = {
                "use_case": selectors.use_case_figures(use_case_ids=use_case_ids, since=start, until=end)
                if use_case_ids
                else {},
                "connector": selectors.endpoint_figures(since=start, until=end, connector_ids=connector_ids)
                if connector_ids
                else {},
            }
        for rule in batch:
            scope, pk = ("use_case", rule.use_case_id) if rule.use_case_id else ("connector", rule.connector_id)
            value = _rule_value(rule, figures["now"][scope].get(pk, NO_RUNS))
            previous = _rule_value(rule, figures["before"][scope].get(pk, NO_RUNS)) if "before" in figures else None
            counts["evaluated"] += 1
            fired, why = _compare(rule, value, previous) if value is not None else (False, "")
            AlertRule.objects.filter(pk=rule.pk).update(last_value=value, last_evaluated_at=now)
            with transaction.atomic():
                if fired:
                    counts["fired"] += 1
                    alert = alert_raise(
                        key=rule.alert_key,
                        kind="rule",
                        title=f"{rule.name}: {rule.get_signal_display().lower()} {value}",
                        detail=why,
                        severity=rule.severity,
                        **{scope: rule.use_case if scope == "use_case" else rule.connector},
                    )
                    if alert.occurrences == 1:
                        counts["opened"] += 1
                        send_after_commit(alert_rule_notify_task, rule.pk, alert.pk, "firing")
                    continue
                alert = Alert.objects.exclude(status=Alert.Status.RESOLVED).filter(key=rule.alert_key).first()
                if alert and alert_resolve(key=rule.alert_key, actor=actor, reason="Recovered"):
                    counts["resolved"] += 1
                    send_after_commit(alert_rule_notify_task, rule.pk, alert.pk, "resolved")
    return counts


def alert_rule_notify(*, rule_id: int, alert_id: int, event: str) -> None:
    """Tell the rule's recipients that its alert fired or recovered: an e-mail to each address, and a signed
    webhook (Standard Webhooks, SSRF-guarded) whose webhook-id is fixed per alert and event, so a receiver
    drops a retried one. Raises ConnectorError when the webhook fails (the task retries)."""
    rule = AlertRule.objects.select_related("use_case", "connector", "notify_webhook").get(pk=rule_id)
    alert = Alert.objects.get(pk=alert_id)
    what = rule.use_case or rule.connector
    link = settings.DOORSTEP_BASE_URL + reverse("monitoring:alert-list")
    subject = f"[{alert.get_severity_display()}] {'Resolved' if event == 'resolved' else 'Alert'}: {alert.title}"
    recipients = _recipients(rule.notify_emails)
    if recipients:
        body = f"{alert.title}\n\n{alert.detail}\n\nRule: {rule.name} on {what}\nAlerts: {link}\n"
        send_mail(subject, body, None, recipients)
    if rule.notify_webhook_id:
        connector = rule.notify_webhook
        url, secret = (connector.config or {}).get("url", ""), connector.secrets.get("signing_secret", "")
        if not url or not secret:
            raise ConnectorError("The webhook connector needs a receiver URL and a signing secret", permanent=True)
        payload = {
            "type": f"alert.{event}",
            "timestamp": clock.now(),
            "data": {
                "alert_id": alert.pk,
                "rule": rule.name,
                "use_case": rule.use_case.slug if rule.use_case_id else None,
                "endpoint": rule.connector.name if rule.connector_id else None,
                "signal": rule.signal,
                "value": alert.detail,
                "title": alert.title,
                "severity": alert.severity,
                "alerts_url": link,
            },
        }
        body = json.dumps(payload, cls=DjangoJSONEncoder).encode()
        webhooks.send(url=url, secret=secret, msg_id=f"alert-{alert.pk}-{event}", body=body)


# --- Cost reconciliation: a provider's usage export against the summed per-call estimates. ---

MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ROWS = 50_000
# Accepted headers (case-insensitive), each with its OpenAI-style alternatives (costs export: start_time,
# line_item / model, amount_value), as the import page documents them.
IMPORT_COLUMNS = {
    "date": ("date", "day", "start_time"),
    "endpoint": ("endpoint", "model", "line_item"),
    "cost": ("cost", "cost_usd", "amount_value", "amount"),
}


def _import_day(value: str) -> dt.date:
    value = value.strip()
    if value.isdigit():  # Unix seconds, as in OpenAI's exports
        return dt.datetime.fromtimestamp(int(value), tz=dt.UTC).date()
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise ValueError("expected a date (YYYY-MM-DD, an ISO time or Unix seconds)") from None


def _import_rows(content: bytes, endpoints: dict[str, Connector]) -> tuple[dict, list[str]]:
    """Sum the export per (day, endpoint id); collect every row error as "row N, field: message"."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return {}, ["file: not UTF-8 text"]
    reader = csv.DictReader(io.StringIO(text))
    headers = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
    columns, errors = {}, []
    for field_name, names in IMPORT_COLUMNS.items():
        found = next((headers[n] for n in names if n in headers), None)
        if found is None:
            errors.append(f"header: no {field_name} column (one of {', '.join(names)})")
        columns[field_name] = found
    if errors:
        return {}, errors
    totals = defaultdict(Decimal)
    for number, row in enumerate(reader, start=2):
        if number - 1 > MAX_IMPORT_ROWS:
            errors.append(f"file: more than {MAX_IMPORT_ROWS} rows")
            break
        try:
            day = _import_day(row[columns["date"]] or "")
        except ValueError as exc:
            errors.append(f"row {number}, {columns['date']}: {exc}")
            continue
        name = (row[columns["endpoint"]] or "").strip()
        endpoint = endpoints.get(name.lower())
        if endpoint is None:
            errors.append(f"row {number}, {columns['endpoint']}: no model endpoint {name!r} that you may change")
            continue
        try:
            cost = Decimal((row[columns["cost"]] or "").strip())
            if not cost.is_finite() or cost < 0:
                raise ArithmeticError
        except ArithmeticError:
            errors.append(f"row {number}, {columns['cost']}: expected an amount of 0 or more")
            continue
        totals[(day, endpoint.pk)] += cost
    if not totals and not errors:
        errors.append("file: no data row")
    return totals, errors


def cost_import_create(*, actor: Actor, file_name: str, content: bytes, threshold_percent: Decimal) -> CostImport:
    """Import a provider's usage export (CSV: date, endpoint, cost; see IMPORT_COLUMNS) and compare each day and
    endpoint with the sum of Run.cost there; a difference over `threshold_percent` of the estimate is flagged.
    Endpoints match by connector name or by the configured model name. Needs change_connector on every endpoint
    named. All or nothing: any bad row raises ServiceError listing every row error, and nothing is saved."""
    if len(content) > MAX_IMPORT_BYTES:
        raise ServiceError(f"The file is over {MAX_IMPORT_BYTES // 1024 // 1024} MB.", field="file")
    endpoints = {}
    for connector in restrict(Connector.objects.filter(kind__in=Connector.MODEL_KINDS), actor.user, "change_connector"):
        endpoints.setdefault(connector.name.lower(), connector)
        model = str((connector.config or {}).get("model", "")).lower()
        if model:
            endpoints.setdefault(model, connector)
    totals, errors = _import_rows(content, endpoints)
    if errors:
        shown = errors[:20] + ([f"… and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise ServiceError("; ".join(shown), field="file")
    days = [day for day, _ in totals]
    start = timezone.make_aware(dt.datetime.combine(min(days), dt.time.min))
    end = timezone.make_aware(dt.datetime.combine(max(days) + dt.timedelta(days=1), dt.time.min))
    estimates = {
        (day, endpoint_id): cost
        for day, endpoint_id, cost in Run.objects.filter(
            model_endpoint_id__in={pk for _, pk in totals}, created_at__gte=start, created_at__lt=end
        )
        .annotate(day=TruncDate("created_at"))
        .values_list("day", "model_endpoint")
        .annotate(cost=Sum("cost"))
    }
    with transaction.atomic():
        cost_import = CostImport.objects.create(
            file_name=file_name[:200],
            file_sha256=hashlib.sha256(content).hexdigest(),
            threshold_percent=threshold_percent,
            uploaded_by=actor.user,
            rows=len(totals),
        )
        lines = []
        for (day, endpoint_id), provider in sorted(totals.items()):
            estimated = estimates.get((day, endpoint_id), Decimal("0"))
            flagged = abs(provider - estimated) > estimated * threshold_percent / 100
            lines.append(
                CostImportLine(
                    cost_import=cost_import,
                    day=day,
                    connector_id=endpoint_id,
                    provider_cost=provider,
                    estimated_cost=estimated,
                    flagged=flagged,
                )
            )
        CostImportLine.objects.bulk_create(lines)
    return cost_import
