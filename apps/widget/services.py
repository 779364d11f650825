"""Writes for the embeddable widget: issuing a link, feedback through it, and who may frame it."""

import difflib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import escape

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, NotFound, PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.delivery.services import feedback_record
from apps.workflows.models import RecommendationEvent, UseCase

from . import selectors
from .models import WidgetToken
from .origins import origin_normalize
from .tokens import MAX_TTL_SECONDS, link_sign

logger = logging.getLogger(__name__)

MIN_TTL = timedelta(minutes=15)
MAX_TTL = timedelta(seconds=MAX_TTL_SECONDS)
DEFAULT_TTL = timedelta(minutes=30)
MAX_ORIGINS = 20
MAX_EDIT_CHARS = 20_000


@dataclass(frozen=True)
class WidgetLink:
    """An issued link: the URL to frame, the script snippet that frames it, and when it stops working."""

    widget_token: WidgetToken
    url: str
    snippet: str
    expires_at: datetime


def widget_url(token: str) -> str:
    return settings.DOORSTEP_BASE_URL + reverse("widget:show", args=[token])


def widget_snippet(url: str) -> str:
    script = settings.DOORSTEP_BASE_URL + static("widget/embed.js")
    return f'<script src="{escape(script)}" data-doorstep-widget="{escape(url)}" async></script>'


def widget_token_issue(
    *, actor: Actor, use_case: UseCase, subject_key: str, ttl: timedelta = DEFAULT_TTL
) -> WidgetLink:
    """A signed link showing `use_case`'s latest passed output for one subject, for 15 to 60 minutes.
    Needs run_usecase: the link records feedback with the issuer's authority, and stops working when
    the issuer loses it. Each issue is stored (who, which subject, until when) for the audit trail."""
    if not has_object_permission(actor.user, "run_usecase", use_case):
        raise PermissionDenied("You may not issue widget links for this use case.")
    subject_key = (subject_key or "").strip()
    if not subject_key:
        raise ServiceError("The subject is required.", field="subject")
    if len(subject_key) > 120:
        raise ServiceError("The subject is longer than 120 characters.", field="subject")
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ServiceError("A widget link lives between 15 and 60 minutes.", field="ttl")
    now = clock.now()
    with transaction.atomic():
        widget_token = WidgetToken.objects.create(
            nonce=secrets.token_urlsafe(16),
            use_case=use_case,
            subject_key=subject_key,
            issued_by=actor.user,
            issued_by_api_key=actor.api_key,
            issued_by_label=actor.label[:120],
            issued_at=now,
            expires_at=now + ttl,
        )
    logger.info(
        "widget link %s issued by %s for %s/%s until %s",
        widget_token.pk,
        widget_token.issued_by_label,
        use_case.slug,
        subject_key,
        widget_token.expires_at.isoformat(),
    )
    url = widget_url(link_sign(widget_token.nonce))
    return WidgetLink(
        widget_token=widget_token, url=url, snippet=widget_snippet(url), expires_at=widget_token.expires_at
    )


def _diff(before: str, after: str) -> str:
    return "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), "shown", "edited", lineterm=""))


def widget_feedback_record(
    *, widget_token: WidgetToken, recommendation_id: int, type: str, text: str = "", reason: str = ""
) -> tuple[RecommendationEvent, bool]:
    """What the person in the host app did with the output the widget showed: shown, accepted, edited
    (with the text and its diff) or rejected (with a reason). `widget_token` comes from
    selectors.widget_token_resolve (signature, expiry and issuer checked). Only outputs of the link's
    use case and subject are reached; the event id is per link, output and action, so a repeat records
    nothing, and a link takes one decision per output. Recorded with the issuer's authority
    (delivery.services.feedback_record re-checks run_usecase)."""
    recommendation = selectors.widget_recommendation(widget_token=widget_token, pk=recommendation_id)
    if recommendation is None:
        raise NotFound("This recommendation is not available through this link.")
    given = selectors.widget_feedback_given(widget_token=widget_token, recommendation=recommendation)
    if type in selectors.ACTIONS and given is not None and given.type != type:
        # One decision per person and output: an accept followed by a reject would count twice.
        raise Conflict(f"Already recorded here: {given.get_type_display().lower()}.", field="action")
    payload = {"via": "widget", "widget_link": widget_token.pk, "subject": widget_token.subject_key}
    if type == RecommendationEvent.Type.FEEDBACK_EDITED:
        text = (text or "").strip()
        if not text:
            raise ServiceError("Write the text you would use.", field="text")
        if len(text) > MAX_EDIT_CHARS:
            raise ServiceError(f"The text is longer than {MAX_EDIT_CHARS} characters.", field="text")
        if text == recommendation.text.strip():
            raise ServiceError("The text is unchanged: use Accept instead.", field="text")
        payload |= {"text": text, "diff": _diff(recommendation.text, text)}
    elif type == RecommendationEvent.Type.FEEDBACK_REJECTED:
        reason = (reason or "").strip()
        if not reason:
            raise ServiceError("Say why, so the team can improve it.", field="reason")
        payload["reason"] = reason[:500]
    elif type not in (RecommendationEvent.Type.SHOWN, RecommendationEvent.Type.ACCEPTED):
        raise ServiceError(f"Unknown widget action {type!r}.", field="action")
    return feedback_record(
        actor=Actor.for_system("widget", on_behalf_of=widget_token.issued_by),
        event_id=selectors.widget_event_id(widget_token=widget_token, recommendation_id=recommendation.pk, type=type),
        recommendation_id=recommendation.pk,
        type=type,
        payload=payload,
    )


def use_case_embed_origins_set(*, actor: Actor, use_case: UseCase, origins: list[str]) -> UseCase:
    """Which web apps may frame the use case's widget (CSP frame-ancestors); empty: none. Needs
    change_usecase. Each entry must be an origin, scheme://host[:port]; stored normalised, in history."""
    if not has_object_permission(actor.user, "change_usecase", use_case):
        raise PermissionDenied("You may not change this use case.")
    cleaned = []
    for value in origins:
        if not (value or "").strip():
            continue
        origin = origin_normalize(value)
        if origin is None:
            raise ServiceError(
                f"{value.strip()!r} is not an origin: write scheme://host[:port], e.g. https://crm.example.com.",
                field="embed_origins",
            )
        if origin not in cleaned:
            cleaned.append(origin)
    if len(cleaned) > MAX_ORIGINS:
        raise ServiceError(f"At most {MAX_ORIGINS} origins.", field="embed_origins")
    with transaction.atomic():
        use_case = UseCase.objects.select_for_update(of=("self",)).get(pk=use_case.pk)
        if use_case.embed_origins == cleaned:
            return use_case
        use_case.embed_origins = cleaned
        use_case._history_user = actor.history_user
        use_case._change_reason = "Widget embed origins changed"
        use_case.save(update_fields=["embed_origins"])
    return use_case
