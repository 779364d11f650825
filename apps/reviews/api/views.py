from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.actors import Actor
from apps.core.exceptions import NotFound
from apps.permissions.models import ApiKey
from apps.reviews import selectors, services
from apps.reviews.models import ReviewTask

from .serializers import DecisionSerializer, ReviewTaskSerializer


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
