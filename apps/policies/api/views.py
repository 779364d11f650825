from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.actors import Actor
from apps.core.exceptions import NotFound
from apps.permissions.models import ApiKey
from apps.policies import selectors, services
from apps.policies.models import Policy, PolicyVersion

from .serializers import PolicySerializer, PolicyVersionSerializer, ReviewSerializer

# Approving production rules is a person's decision: a key limited to scopes never holds this one, so only a
# key without scope limits (acting for its user with all their rights) may review through the API.
REVIEW_SCOPE = "policies:review"


class PolicyListView(generics.ListAPIView):
    """Policies the caller may view, with their versions."""

    serializer_class = PolicySerializer
    required_scope = ApiKey.Scope.READ

    def get_queryset(self):
        return selectors.policy_list(user=self.request.user).prefetch_related("versions").order_by("pk")


class PolicyDetailView(APIView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(responses=PolicySerializer)
    def get(self, request, pk: int):
        try:
            policy = selectors.policy_detail(user=request.user, pk=pk)
        except Policy.DoesNotExist:
            raise NotFound("No such policy, or it is not visible to you.") from None
        return Response(PolicySerializer(policy).data)


def _version(user, pk: int, version_pk: int) -> PolicyVersion:
    try:
        return selectors.policy_version_get(user=user, policy_id=pk, pk=version_pk)
    except PolicyVersion.DoesNotExist:
        raise NotFound("No such policy version, or it is not visible to you.") from None


class PolicyVersionDetailView(APIView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(responses=PolicyVersionSerializer)
    def get(self, request, pk: int, version_pk: int):
        return Response(PolicyVersionSerializer(_version(request.user, pk, version_pk)).data)


class PolicyVersionReviewView(APIView):
    """Approve or reject a version in review: the same service as the page and the command (maker-checker,
    M of N, replay before approval)."""

    required_scope = REVIEW_SCOPE

    @extend_schema(request=ReviewSerializer, responses=PolicyVersionSerializer)
    def post(self, request, pk: int, version_pk: int):
        version = _version(request.user, pk, version_pk)
        serializer = ReviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.policy_version_review(actor=Actor.from_request(request), version=version, **serializer.validated_data)
        return Response(
            PolicyVersionSerializer(_version(request.user, pk, version_pk)).data, status=status.HTTP_201_CREATED
        )
