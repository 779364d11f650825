from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.actors import Actor
from apps.core.api import BatchResultSerializer, batch_item_error, batch_item_invalid
from apps.core.exceptions import NotFound, ServiceError
from apps.delivery import selectors, services
from apps.delivery.models import Delivery
from apps.permissions.models import ApiKey

from .serializers import MAX_ID, DeliverySerializer, FeedbackBatchSerializer, FeedbackEventSerializer


def _plain_event(item) -> services.FeedbackIn | None:
    """The event, when it is plainly valid (the common case, a thousand times per request: the serializer costs
    more than the rest of the event's work); None sends it through FeedbackEventSerializer, which says what
    is wrong. Accepts only what the serializer accepts, with the same values."""
    if not isinstance(item, dict) or not item.keys() <= PLAIN_KEYS:
        return None
    event_id, recommendation_id, kind = item.get("event_id"), item.get("recommendation_id"), item.get("type")
    payload = item.get("payload", {})
    if not (
        isinstance(event_id, str)
        and 0 < len(event_id) <= 120
        and event_id == event_id.strip()
        and "\x00" not in event_id
        and event_id.isascii()  # anything else (surrogates, say) is left to the serializer
        and type(recommendation_id) is int
        and 1 <= recommendation_id <= MAX_ID
        and isinstance(kind, str)
        and kind in services.FEEDBACK_TYPES
        and isinstance(payload, dict)
    ):
        return None
    at = None
    if "at" in item:
        at = parse_datetime(item["at"]) if isinstance(item["at"], str) else None
        if at is None or at.tzinfo is None:
            return None
    return services.FeedbackIn(event_id, recommendation_id, kind, at, payload)


PLAIN_KEYS = {"event_id", "recommendation_id", "type", "at", "payload"}


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
        results: list[dict | None] = [None] * len(events)
        valid: list[tuple[int, services.FeedbackIn]] = []
        # One serializer validates every item: a fresh one per item costs a deep copy of its fields.
        validator = FeedbackEventSerializer()
        for index, item in enumerate(events):
            fast = _plain_event(item)
            if fast is not None:
                valid.append((index, fast))
                continue
            try:
                data = validator.run_validation(item)
            except serializers.ValidationError as exc:
                results[index] = batch_item_invalid(index, "events", exc)
                continue
            valid.append((index, services.FeedbackIn(**data)))
        outcomes = services.feedback_record_batch(actor=Actor.from_request(request), items=[i for _, i in valid])
        for (index, _), (state, value) in zip(valid, outcomes, strict=True):
            if state == "error":
                field = f"events[{index}].{value.field}" if value.field else f"events[{index}]"
                results[index] = batch_item_error(index, [(field, value.message)])
            else:
                results[index] = {"index": index, "status": state, "event_id": value}
        failed = sum(1 for result in results if result["status"] == "error")
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
