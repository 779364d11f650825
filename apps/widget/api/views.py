from datetime import timedelta

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.actors import Actor
from apps.core.api import idempotent
from apps.core.exceptions import NotFound, PermissionDenied
from apps.permissions.models import ApiKey
from apps.widget import services
from apps.widget.origins import origins_valid
from apps.workflows.selectors import use_case_by_slug

from .serializers import WidgetLinkInSerializer, WidgetLinkSerializer

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="A repeat with the same key and body returns the first link and issues no other.",
)


class WidgetLinkCreateView(APIView):
    """A signed, short-lived widget link for one subject, for the integrator's server to put in its page.
    Needs run_usecase on the use case; an API key needs the feedback:write and read scopes, since the
    link shows the output and records feedback."""

    required_scope = ApiKey.Scope.FEEDBACK_WRITE

    @extend_schema(
        request=WidgetLinkInSerializer, responses={201: WidgetLinkSerializer}, parameters=[IDEMPOTENCY_HEADER]
    )
    def post(self, request, slug: str):
        def handler():
            key = request.auth
            if hasattr(key, "allows") and not key.allows(ApiKey.Scope.READ):
                raise PermissionDenied("This API key needs the read scope too: a widget link shows the output.")
            use_case = use_case_by_slug(user=request.user, slug=slug)
            if use_case is None:
                raise NotFound(f"No use case {slug!r} that you can access.")
            serializer = WidgetLinkInSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            link = services.widget_token_issue(
                actor=Actor.from_request(request),
                use_case=use_case,
                subject_key=serializer.validated_data["subject"],
                ttl=timedelta(minutes=serializer.validated_data["ttl_minutes"]),
            )
            body = WidgetLinkSerializer(
                {
                    "url": link.url,
                    "snippet": link.snippet,
                    "expires_at": link.expires_at,
                    "widget_token": link.widget_token,
                    "allowed_origins": origins_valid(use_case.embed_origins),
                }
            ).data
            return Response(body, status=status.HTTP_201_CREATED)

        return idempotent(f"widget-links:{slug}", request, handler)
