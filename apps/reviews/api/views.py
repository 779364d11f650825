from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.actors import Actor
from apps.core.exceptions import NotFound, ServiceError
from apps.permissions.models import ApiKey
from apps.reviews import approvals, selectors, services
from apps.reviews.models import ReviewTask
from apps.workflows import selectors as workflow_selectors

from .serializers import (
    ApprovalRequestCreatedSerializer,
    ApprovalRequestInSerializer,
    ApprovalRequestSerializer,
    DecisionSerializer,
    ReviewTaskSerializer,
)


class ReviewTaskListView(generics.ListAPIView):
    """Pending tasks of the queues granted to the caller."""

    serializer_class = ReviewTaskSerializer
    required_scope = ApiKey.Scope.READ

    def get_queryset(self):
        return selectors.task_list(user=self.request.user, status="pending").order_by("pk")


def _task(user, pk) -> ReviewTask:
    try:
        return selectors.task_get(user=user, pk=pk)
    except ReviewTask.DoesNotExist:
        raise NotFound("No such review task, or it is not in a queue granted to you.") from None


class ReviewTaskDetailView(APIView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(responses=ReviewTaskSerializer)
    def get(self, request, pk: int):
        return Response(ReviewTaskSerializer(_task(request.user, pk)).data)


class ReviewTaskDecisionView(APIView):
    required_scope = ApiKey.Scope.RECOMMENDATIONS_WRITE

    @extend_schema(request=DecisionSerializer, responses=ReviewTaskSerializer)
    def post(self, request, pk: int):
        task = _task(request.user, pk)
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.review_task_decide(actor=Actor.from_request(request), task=task, **serializer.validated_data)
        task.refresh_from_db()
        return Response(ReviewTaskSerializer(task).data)


class _ReadsApprovals(BasePermission):
    """Polling needs the read scope, or the scope that made the approval (an agent's key has only that)."""

    message = "This API key needs the read or approvals:write scope."

    def has_permission(self, request, view):
        key = request.auth
        return not hasattr(key, "allows") or key.allows(ApiKey.Scope.READ) or key.allows(ApiKey.Scope.APPROVALS_WRITE)


class ApprovalCreateView(APIView):
    """Ask for a blocking approval: the proposed action waits in the use case's review queue."""

    required_scope = ApiKey.Scope.APPROVALS_WRITE

    @extend_schema(
        request=ApprovalRequestInSerializer,
        responses={201: ApprovalRequestCreatedSerializer, 200: ApprovalRequestCreatedSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="The same key and request return the first approval (200); a different request, 409.",
            )
        ],
    )
    def post(self, request):
        serializer = ApprovalRequestInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key, key_field = data["idempotency_key"], "idempotency_key"
        header = request.headers.get("Idempotency-Key", "")
        if header:
            if key and key != header:
                raise ServiceError("The body and the Idempotency-Key header hold different keys.", field=key_field)
            if len(header) > 100:
                raise ServiceError("The Idempotency-Key header is longer than 100 characters.", field="Idempotency-Key")
            key, key_field = header, "Idempotency-Key"
        use_case = workflow_selectors.use_case_by_slug(user=request.user, slug=data["use_case"])
        if use_case is None:
            raise ServiceError(f"No use case {data['use_case']!r} that you can access.", field="use_case")
        approval, secret, created = approvals.approval_request(
            actor=Actor.from_request(request),
            use_case=use_case,
            data=approvals.ApprovalInput(
                subject=data["subject"],
                action=data["action"],
                text=data["summary"],
                timeout_seconds=data["timeout_seconds"],
                on_timeout=data["on_timeout"],
                callback_url=data["callback_url"],
                context=data["context"],
                confidence=data["confidence"],
            ),
            idempotency_key=key,
            key_field=key_field,
        )
        body = ApprovalRequestCreatedSerializer({**approvals.approval_data(approval), "callback_secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ApprovalDetailView(APIView):
    """Poll one approval (404 for an approval of a use case the caller cannot see)."""

    permission_classes = [IsAuthenticated, _ReadsApprovals]

    @extend_schema(responses=ApprovalRequestSerializer)
    def get(self, request, public_id):
        approval = approvals.approval_get(user=request.user, public_id=public_id)
        if approval is None:
            raise NotFound("No such approval, or it is of a use case you cannot see.")
        return Response(ApprovalRequestSerializer(approvals.approval_data(approval)).data)
