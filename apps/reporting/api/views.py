from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from apps.core.actors import Actor
from apps.core.api import BatchResultSerializer, batch_item_error, batch_item_invalid
from apps.core.exceptions import ServiceError
from apps.permissions.models import ApiKey
from apps.reporting.outcomes import OutcomeIn, outcomes_record

from .serializers import OutcomeBatchSerializer, OutcomeInSerializer

LIMIT = 1000


class OutcomeBatchView(GenericAPIView):
    """Business outcomes of subjects (ticket resolved, renewal won or lost, contract signed), with their time
    and value, up to 1,000 per request, idempotent per event id within a use case; the answer reports each
    (200: all stored or repeats, 207: some failed, 400: all failed). Needs run permission on the use case.
    Whether the subject is in the control group is decided when the outcome is recorded."""

    required_scope = ApiKey.Scope.FEEDBACK_WRITE
    serializer_class = OutcomeBatchSerializer

    @extend_schema(request=OutcomeBatchSerializer, responses={200: BatchResultSerializer, 207: BatchResultSerializer})
    def post(self, request):
        items = request.data.get("outcomes") if isinstance(request.data, dict) else None
        if not isinstance(items, list) or not items:
            raise ServiceError(f'Send {{"outcomes": [...]}} with 1 to {LIMIT} outcomes.', field="outcomes")
        if len(items) > LIMIT:
            raise ServiceError(f"{len(items)} outcomes; the limit is {LIMIT} per request.", field="outcomes")
        results: list[dict | None] = [None] * len(items)
        valid: list[tuple[int, OutcomeIn]] = []
        validator = OutcomeInSerializer()  # one for every item: a fresh one per item deep-copies its fields
        for index, item in enumerate(items):
            try:
                data = validator.run_validation(item)
            except serializers.ValidationError as exc:
                results[index] = batch_item_invalid(index, "outcomes", exc)
                continue
            valid.append(
                (
                    index,
                    OutcomeIn(
                        event_id=data["event_id"],
                        use_case=data["use_case"],
                        subject_key=data["subject"],
                        kind=data["kind"],
                        occurred_at=data["occurred_at"],
                        value=data.get("value"),
                        recommendation_id=data.get("recommendation_id"),
                    ),
                )
            )
        recorded = outcomes_record(actor=Actor.from_request(request), items=[item for _, item in valid])
        for (index, _), result in zip(valid, recorded, strict=True):
            if result.status == "error":
                field = {"subject_key": "subject"}.get(result.field, result.field)
                results[index] = batch_item_error(index, [(f"outcomes[{index}].{field}", result.message)])
            else:
                outcome = result.outcome
                results[index] = {
                    "index": index,
                    "status": result.status,
                    "id": outcome.pk,
                    "event_id": outcome.external_id,
                    "holdout": outcome.holdout,
                }
        failed = sum(1 for result in results if result["status"] == "error")
        code = status.HTTP_200_OK
        if failed == len(items):
            code = status.HTTP_400_BAD_REQUEST
        elif failed:
            code = status.HTTP_207_MULTI_STATUS
        return Response({"accepted": len(items) - failed, "failed": failed, "results": results}, status=code)
