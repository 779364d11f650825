"""Audit pages: the unified trail (who changed what, and every recommendation event) and the one-page
trace of one AI output from its source record to the business user's feedback."""

import csv
import datetime as dt
import io
import json
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_safe

from apps.accounts.models import AccessEvent
from apps.core.formatting import csv_safe
from apps.core.htmx import render_page
from apps.delivery.models import Delivery
from apps.workflows import selectors as workflow_selectors
from apps.workflows.events import chain_verify
from apps.workflows.models import FEEDBACK_EVENT_TYPES, ContextSnapshot, Recommendation, RecommendationEvent

from . import selectors
from .ledger import ledger_verify
from .services import audit_export_record

STEP_BY_EFFECT = {"allow": "ok", "redact": "warn", "review": "warn", "block": "bad"}
EFFECT_BADGES = {"allow": "success", "redact": "info", "review": "warning", "block": "danger"}


def _link(link: tuple) -> str:
    match link:
        case ("usecase", slug):
            return reverse("workflows:use-case-detail", args=[slug])
        case ("policy", pk):
            return reverse("policies:policy-detail", args=[pk])
        case ("connectors",):
            return reverse("connectors:connector-list")
        case ("trace", pk):
            return reverse("audit:trace", args=[pk])
    return ""


def _type_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    objects = [
        (key, label)
        for key, label in selectors.SOURCE_LABELS.items()
        if key not in (selectors.EVENTS, selectors.ACCESS)
    ]
    events = [(selectors.EVENTS, "All recommendation events")] + [
        (f"{selectors.EVENTS}:{value}", label) for value, label in RecommendationEvent.Type.choices
    ]
    access = [(selectors.ACCESS, "All access events")] + [
        (f"{selectors.ACCESS}:{value}", label) for value, label in AccessEvent.Kind.choices
    ]
    return [("Changes to governed objects", objects), ("Recommendation events", events), ("Access", access)]


class TrailFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150, label="Actor (username)")
    type = forms.CharField(required=False, max_length=80)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To (inclusive)")
    object_id = forms.IntegerField(required=False, min_value=1, label="Object id")
    cursor = forms.CharField(required=False, max_length=200)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end is before the start.")
        return data

    def trail_filters(self) -> dict:
        """Keyword arguments for selectors.audit_trail (the dates as UTC day bounds)."""
        data = self.cleaned_data

        def bound(day, days=0):
            return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC) + dt.timedelta(days=days) if day else None

        return {
            "actor": (data.get("actor") or "").strip(),
            "type": data.get("type") or "",
            "since": bound(data.get("since")),
            "until": bound(data.get("until"), days=1),
            "object_id": data.get("object_id"),
        }


def _trail_form(request) -> TrailFilterForm:
    form = TrailFilterForm(request.GET)
    form.is_valid()
    return form


@login_required
@require_safe
def trail(request):
    form = _trail_form(request)
    entries, next_cursor = [], None
    if form.is_valid():
        filters = form.trail_filters()
        entries, next_cursor = selectors.audit_trail(user=request.user, cursor=form.cleaned_data["cursor"], **filters)
    for entry in entries:
        entry.url = _link(entry.link)
    query = {key: value for key, value in request.GET.items() if key != "cursor" and value}
    context = {
        "entries": entries,
        "next_cursor": next_cursor,
        "form": form,
        "actor": request.GET.get("actor", ""),
        "type": request.GET.get("type", ""),
        "query": urlencode(query),
        "type_choices": _type_choices(),
    }
    status = 200 if form.is_valid() or request.htmx else 400
    return render_page(request, "audit/trail.html", fragment="trail-page", context=context, status=status)


EXPORT_COLUMNS = ("at", "actor", "source", "action", "subject", "object_id", "reason", "changes", "payload")
EXPORT_MAX_ROWS = 200_000
EXPORT_FORMATS = ("csv", "jsonl")


def _export_rows(user, filters: dict):
    """Every entry matching the filters, newest first, page by page (keyset), up to EXPORT_MAX_ROWS."""
    cursor, sent = "", 0
    while sent < EXPORT_MAX_ROWS:
        entries, cursor = selectors.audit_trail(user=user, cursor=cursor or "", limit=500, **filters)
        for entry in entries:
            yield {
                "at": entry.at.isoformat(),
                "actor": entry.actor,
                "source": entry.source_label,
                "action": entry.action,
                "subject": entry.subject,
                "object_id": entry.object_id,
                "reason": entry.reason,
                "changes": entry.changes,
                "payload": dict(entry.payload),
            }
        sent += len(entries)
        if not cursor:
            return


@login_required
@require_safe
def trail_export(request, format: str):
    """The filtered trail as CSV or JSON Lines, streamed; what the user may see only. The export is itself
    recorded (who, when, which filters)."""
    if format not in EXPORT_FORMATS:
        raise Http404("Exports are csv or jsonl.")
    form = _trail_form(request)
    if not form.is_valid():
        errors = {field: " ".join(messages) for field, messages in form.errors.items()}
        return JsonResponse({"error": "invalid", "errors": errors}, status=400)
    filters = form.trail_filters()
    audit_export_record(request=request, what="audit trail", format=format, filters=filters)
    rows = _export_rows(request.user, filters)
    if format == "jsonl":
        lines = (json.dumps(row, default=str) + "\n" for row in rows)
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    else:
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-trail.{format}"'
    return response


def _csv_lines(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                csv_safe(json.dumps(row[c], default=str) if c in ("changes", "payload") else row[c])
                for c in EXPORT_COLUMNS
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _diff_lines(diff: str) -> list[tuple[str, str]]:
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---", "@@")):
            lines.append(("meta", line))
        elif line.startswith("+"):
            lines.append(("add", line))
        elif line.startswith("-"):
            lines.append(("del", line))
        else:
            lines.append(("same", line))
    return lines


def _source_step(recommendation: Recommendation) -> dict:
    run = recommendation.run
    snapshots = list(run.context_snapshots.all()) if run else []
    if not snapshots:
        return {
            "state": "warn",
            "snapshots": [],
            "note": f"Produced outside Doorstep by {recommendation.producer}: no context snapshot was recorded.",
        }
    freshness = {s.freshness for s in snapshots}
    state = (
        "bad"
        if ContextSnapshot.Freshness.STALE in freshness
        else ("ok" if freshness == {ContextSnapshot.Freshness.FRESH} else "warn")
    )
    return {"state": state, "snapshots": snapshots, "note": ""}


def _model_step(recommendation: Recommendation) -> dict:
    run = recommendation.run
    if run is None:
        return {"state": "warn", "run": None}
    state = "warn" if run.used_fallback or run.model_attempts > 1 or run.error else "ok"
    return {"state": "bad" if run.status == run.Status.FAILED else state, "run": run}


def _policy_step(recommendation: Recommendation) -> dict:
    decision = getattr(recommendation, "policy_decision", None)
    if decision is None:
        return {"state": "warn", "decision": None, "fired": []}
    fired = [{**f, "badge": EFFECT_BADGES.get(f.get("effect"), "secondary")} for f in decision.fired_rules]
    return {
        "state": STEP_BY_EFFECT.get(decision.effect, "warn"),
        "decision": decision,
        "badge": EFFECT_BADGES.get(decision.effect, "secondary"),
        "fired": fired,
    }


def _review_step(recommendation: Recommendation) -> dict:
    task = getattr(recommendation, "review_task", None)
    if task is None:
        return {"state": "ok", "task": None, "verdicts": []}
    verdicts = [
        {"verdict": v, "diff": _diff_lines(v.diff)}
        for v in sorted(task.verdicts.all(), key=lambda v: (v.created_at, v.pk))
    ]
    decisions = {item["verdict"].decision for item in verdicts}
    if "reject" in decisions:
        state = "bad"
    elif "edit" in decisions or not verdicts:
        state = "warn"
    else:
        state = "ok"
    return {"state": state, "task": task, "verdicts": verdicts}


def _delivery_step(recommendation: Recommendation) -> dict:
    deliveries = list(recommendation.deliveries.all())
    statuses = {d.status for d in deliveries}
    if not deliveries:
        state = "bad" if recommendation.status in ("blocked", "rejected") else "warn"
    elif Delivery.Status.FAILED in statuses:
        state = "bad"
    elif statuses == {Delivery.Status.SUCCEEDED}:
        state = "ok"
    else:
        state = "warn"
    return {"state": state, "deliveries": deliveries}


@login_required
@require_safe
def trace(request, pk: int):
    try:
        recommendation = workflow_selectors.recommendation_trace(user=request.user, pk=pk)
    except Recommendation.DoesNotExist:
        raise Http404("No such recommendation") from None
    events = list(recommendation.events.all())
    for event in events:
        event.payload_json = json.dumps(event.payload, sort_keys=True, default=str)
    feedback = [e for e in events if e.type in FEEDBACK_EVENT_TYPES]
    broken_at = chain_verify(recommendation)
    context = {
        "recommendation": recommendation,
        "proposed_action": json.dumps(recommendation.proposed_action, default=str),
        "source": _source_step(recommendation),
        "model": _model_step(recommendation),
        "policy": _policy_step(recommendation),
        "review": _review_step(recommendation),
        "delivery": _delivery_step(recommendation),
        "feedback": {
            "state": "ok"
            if any(e.type in ("accepted", "acted_on") for e in feedback)
            else ("bad" if any(e.type == "feedback_rejected" for e in feedback) else ""),
            "events": feedback,
        },
        "events": events,
        "broken_at": broken_at,
    }
    return render_page(request, "audit/trace.html", fragment="chain", context=context)


@login_required
@require_safe
def verify(request):
    """Admins only: re-walk the audit ledger now (as `manage.py audit_verify` does) and answer what was
    checked and the first broken link, if any. Others get a 404: the endpoint's existence is not theirs."""
    if not request.user.is_superuser:
        raise Http404("No such page.")
    result = ledger_verify()
    body = {"ok": result.ok, "seals": result.seals, "rows": result.rows, "heads": result.heads}
    return JsonResponse(body | {"problems": result.problems}, status=200 if result.ok else 409)
