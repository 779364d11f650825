"""Reads for the widget: the link's scope, and what it may show."""

from django.core import signing

from apps.core import clock
from apps.core.exceptions import PermissionDenied
from apps.core.permissions import has_object_permission
from apps.reporting.holdout import is_held_out
from apps.workflows.models import Recommendation, RecommendationEvent

from .models import WidgetToken
from .origins import origins_valid
from .tokens import link_unsign

# Exactly the statuses feedback is taken on: never a blocked, rejected or queued output.
SHOWABLE = (
    Recommendation.Status.APPROVED,
    Recommendation.Status.EDITED,
    Recommendation.Status.DELIVERING,
    Recommendation.Status.DELIVERED,
)
ACTIONS = (
    RecommendationEvent.Type.ACCEPTED,
    RecommendationEvent.Type.FEEDBACK_EDITED,
    RecommendationEvent.Type.FEEDBACK_REJECTED,
)


class WidgetLinkInvalid(PermissionDenied):
    """The link is forged, expired or no longer backed by its issuer. `widget_token` is set when the
    link itself was genuine, so the answer may still be framed by that use case's origins."""

    def __init__(self, message: str, *, widget_token: WidgetToken | None = None):
        super().__init__(message)
        self.widget_token = widget_token


def widget_token_resolve(*, token: str) -> WidgetToken:
    """The issued link behind `token`, or WidgetLinkInvalid. The signature is checked before any query;
    the row's expiry (on the service clock) and the issuer's run_usecase permission after it."""
    try:
        nonce = link_unsign(token)
    except signing.SignatureExpired:
        raise WidgetLinkInvalid("This link has expired. Reload the page that shows it to get a new one.") from None
    except signing.BadSignature:
        raise WidgetLinkInvalid("This link is not valid.") from None
    widget_token = (
        WidgetToken.objects.select_related("use_case", "issued_by", "issued_by_api_key").filter(nonce=nonce).first()
    )
    if widget_token is None:
        raise WidgetLinkInvalid("This link is not valid.")
    if widget_token.expires_at <= clock.now():
        raise WidgetLinkInvalid(
            "This link has expired. Reload the page that shows it to get a new one.", widget_token=widget_token
        )
    key = widget_token.issued_by_api_key
    if not has_object_permission(widget_token.issued_by, "run_usecase", widget_token.use_case) or (
        key is not None and not key.is_usable()
    ):
        raise WidgetLinkInvalid("This link was withdrawn by the people who issued it.", widget_token=widget_token)
    return widget_token


def widget_frame_origins(*, widget_token: WidgetToken) -> list[str]:
    """Origins allowed to frame this link's widget (an empty list: none may)."""
    return origins_valid(widget_token.use_case.embed_origins)


def widget_recommendation_latest(*, widget_token: WidgetToken) -> Recommendation | None:
    """The newest output for the link's use case and subject that passed (allowed, approved or edited);
    nothing for a subject of the control group (holdout), even one that had outputs before joining it."""
    if is_held_out(widget_token.use_case, widget_token.subject_key):
        return None
    return (
        Recommendation.objects.filter(
            use_case_id=widget_token.use_case_id, subject_key=widget_token.subject_key, status__in=SHOWABLE
        )
        .order_by("-created_at", "-pk")
        .first()
    )


def widget_recommendation(*, widget_token: WidgetToken, pk: int) -> Recommendation | None:
    """One showable output, only within the link's use case and subject: a link never reaches another."""
    if is_held_out(widget_token.use_case, widget_token.subject_key):
        return None
    return Recommendation.objects.filter(
        pk=pk, use_case_id=widget_token.use_case_id, subject_key=widget_token.subject_key, status__in=SHOWABLE
    ).first()


def widget_event_id(*, widget_token: WidgetToken, recommendation_id: int, type: str) -> str:
    """The feedback event id: one per link, output and action, so a double click records once."""
    return f"widget:{widget_token.pk}:{recommendation_id}:{type}"


def widget_feedback_given(*, widget_token: WidgetToken, recommendation: Recommendation) -> RecommendationEvent | None:
    """The accept/edit/reject this link already recorded on `recommendation`, if any."""
    ids = [
        widget_event_id(widget_token=widget_token, recommendation_id=recommendation.pk, type=action)
        for action in ACTIONS
    ]
    return RecommendationEvent.objects.filter(external_id__in=ids).order_by("sequence").first()
