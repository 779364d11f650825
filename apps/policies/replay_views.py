"""Replay before activation: start a replay of a version and watch it (the fragment polls while it runs)."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission

from . import replay as replays
from . import selectors
from .models import Policy, PolicyReplay

BADGES = {"allow": "success", "redact": "info", "review": "warning", "block": "danger"}


class ReplayForm(forms.Form):
    days = forms.IntegerField(
        min_value=1, max_value=replays.MAX_DAYS, initial=30, help_text="Replay the outputs of the last N days"
    )


def replay_context(user, version, *, form=None, error: str = "") -> dict:
    """What templates/policies/_replay.html shows for `version`."""
    replay = replays.policy_replay_latest(version=version)
    running = replay is not None and replay.status in (PolicyReplay.Status.PENDING, PolicyReplay.Status.RUNNING)
    report = replay.report if replay is not None and replay.status == PolicyReplay.Status.SUCCEEDED else None
    effects = sorted(
        {effect for old, row in (report or {}).get("matrix", {}).items() for effect in (old, *row)},
        key=lambda effect: list(BADGES).index(effect) if effect in BADGES else len(BADGES),
    )
    matrix = report.get("matrix", {}) if report else {}
    may_replay = version.state in replays.REPLAYABLE_STATES and (
        has_object_permission(user, "approve_policy", version.policy)
        or has_object_permission(user, "change_policy", version.policy)
    )
    return {
        "version": version,
        "replay": replay,
        "replay_loaded": True,
        "running": running,
        "percent": round(100 * replay.done / replay.total) if replay and replay.total else 0,
        "report": report,
        "current": report is not None and replay.rules_hash == replays.rules_hash(version),
        "effects": [{"name": effect, "badge": BADGES.get(effect, "secondary")} for effect in effects],
        "matrix_rows": [
            {
                "effect": old,
                "cells": [{"count": matrix.get(old, {}).get(new, 0), "flip": old != new} for new in effects],
            }
            for old in effects
        ],
        "may_replay": may_replay,
        "replay_form": form or ReplayForm(auto_id=f"replay-{version.pk}-%s"),
        "replay_error": error,
    }


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def policy_version_replay(request, pk: int, version_pk: int):
    """GET (htmx): the replay fragment of a version, polled while a replay runs. POST: start a replay of it.
    Without htmx both lead back to the policy page, where the fragment is included."""
    try:
        policy = selectors.policy_list(user=request.user).get(pk=pk)
    except Policy.DoesNotExist:
        raise Http404("No such policy") from None
    version = policy.versions.filter(pk=version_pk).select_related("policy").first()
    if version is None:
        raise Http404("No such version")
    status, form, error = 200, None, ""
    if request.method == "POST":
        form = ReplayForm(request.POST, auto_id=f"replay-{version.pk}-%s")
        if form.is_valid():
            try:
                replays.policy_replay_request(
                    actor=Actor.from_request(request), version=version, days=form.cleaned_data["days"]
                )
            except ServiceError as exc:
                if exc.field in form.fields:
                    form.add_error(exc.field, exc.message)
                else:
                    error = exc.message
                if isinstance(exc, PermissionDenied) and not request.htmx:
                    status = 403
            else:
                form = None
                if not request.htmx:
                    messages.success(request, f"Replay of v{version.number} started.")
        if status == 200 and not request.htmx:
            if form is not None and not form.is_valid() or error:
                messages.error(request, error or "; ".join(m for ms in form.errors.values() for m in ms))
            return redirect("policies:policy-detail", pk=policy.pk)
    elif not request.htmx:
        return redirect("policies:policy-detail", pk=policy.pk)
    context = replay_context(request.user, version, form=form, error=error)
    response = render(request, "policies/_replay.html", context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response
