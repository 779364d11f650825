from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.actors import Actor
from apps.core.api import BatchResultSerializer
from apps.core.exceptions import NotFound, ServiceError
from apps.delivery import selectors, services
from apps.delivery.models import Delivery
from apps.permissions.models import ApiKey

from .serializers import DeliverySerializer, FeedbackBatchSerializer, FeedbackEventSerializer


class FeedbackView(GenericAPIView):
    """Lifecycle events from the place of decision (shown, accepted, edited, rejected, acted on), up to
    1,000 per request, idempotent per event id; the answer reports each event."""

    required_scope = ApiKey.Scope.FEEDBACK_WRITE
    serializer_class = FeedbackBatchSerializer

    @extend_schema(request=FeedbackBatchSerializer, responses={200: BatchResultSerializer, 207: BatchResultSerializer})
    def post(self, request):
        events = request.data.get("events") if isinstance(request.data, dict) else None
        if not isinstance(events, list) or not events:
            raise ServiceError('Send {"events": [...]} with 1 to 1000 events.', field="events")
        if len(events) > 1000:
            raise ServiceError(f"{len(events)} events; the limit is 1000 per request.", field="events")
        actor = Actor.from_request(request)
        results, failed = [], 0
        for index, item in enumerate(events):
            serializer = FeedbackEventSerializer(data=item)
            if not serializer.is_valid():
                failed += 1
                results.append(
                    {
                        "index": index,
                        "status": "error",
                        "errors": [
                            {"field": f"events[{index}].{name}", "message": str(messages[0])}
                            for name, messages in serializer.errors.items()
                        ],
                    }
                )
                continue
            data = serializer.validated_data
            try:
                event, created = services.feedback_record(
                    actor=actor,
                    event_id=data["event_id"],
                    recommendation_id=data["recommendation_id"],
                    type=data["type"],
                    at=data.get("at"),
                    payload=data.get("payload"),
                )
            except ServiceError as exc:
                failed += 1
                field = f"events[{index}].{exc.field}" if exc.field else f"events[{index}]"
                results.append(
                    {"index": index, "status": "error", "errors": [{"field": field, "message": exc.message}]}
                )
                continue
            results.append(
                {"index": index, "status": "created" if created else "duplicate", "event_id": event.external_id}
            )
        if failed == 0:
            code = status.HTTP_200_OK
        elif failed == len(events):
            code = status.HTTP_400_BAD_REQUEST
        else:
            code = status.HTTP_207_MULTI_STATUS
        return Response({"accepted": len(events) - failed, "failed": failed, "results": results}, status=code)


@extend_schema(
    parameters=[
        OpenApiParameter("status", str, enum=Delivery.Status.values, description="failed: the deliveries that gave up")
    ]
)
class DeliveryListView(generics.ListAPIView):
    """Deliveries of outputs of use cases the caller may view, newest first, cursor-paginated."""

    required_scope = ApiKey.Scope.READ
    serializer_class = DeliverySerializer

    def get_queryset(self):
        deliveries = selectors.delivery_list(user=self.request.user).select_related(
            "destination", "recommendation__use_case"
        )
        wanted = self.request.query_params.get("status")
        if wanted is not None:
            if wanted not in Delivery.Status.values:
                raise ServiceError(
                    f"Unknown status {wanted!r}; use one of {', '.join(Delivery.Status.values)}.", field="status"
                )
            deliveries = deliveries.filter(status=wanted)
        return deliveries


class DeliveryRetryView(APIView):
    """Send a failed delivery again (needs run permission on its use case, like the page's Retry button)."""

    required_scope = ApiKey.Scope.RECOMMENDATIONS_WRITE

    @extend_schema(request=None, responses=DeliverySerializer)
    def post(self, request, pk: int):
        try:
            delivery = selectors.delivery_get(user=request.user, pk=pk)
        except Delivery.DoesNotExist:
            raise NotFound("No such delivery, or you may not see it.") from None
        delivery = services.delivery_retry(actor=Actor.from_request(request), delivery=delivery)
        delivery.refresh_from_db()
        return Response(DeliverySerializer(delivery).data)
