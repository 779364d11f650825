from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.trace import trace_document
from apps.core.actors import Actor
from apps.core.api import BatchResultSerializer, error_body, idempotent
from apps.core.exceptions import NotFound, ServiceError
from apps.permissions.models import ApiKey
from apps.workflows import selectors, services
from apps.workflows.filters import RecommendationFilter
from apps.workflows.models import Recommendation, Run, UseCase

from .serializers import (
    RecommendationBatchInSerializer,
    RecommendationInSerializer,
    RecommendationSerializer,
    RunInSerializer,
    RunSerializer,
    UseCaseSerializer,
    UseCaseTransitionInSerializer,
)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="A repeat with the same key and body returns the first response and creates nothing.",
)


def _use_case(user, slug: str, *, field: str = "use_case") -> UseCase:
    """A use case the caller may view; an unknown and an invisible slug answer the same."""
    use_case = selectors.use_case_by_slug(user=user, slug=slug)
    if use_case is None:
        raise ServiceError(f"No use case {slug!r} that you can access.", field=field, code="not_found")
    return use_case


def _draft(data: dict) -> services.Draft:
    return services.Draft(
        subject_key=data["subject"],
        content=data["content"],
        confidence=data.get("confidence"),
        proposed_action=data.get("proposed_action") or {},
        cost=data.get("cost"),
        producer=data.get("producer") or "external",
        context=data.get("context") or {},
    )


class UseCaseListView(generics.ListAPIView):
    serializer_class = UseCaseSerializer
    required_scope = ApiKey.Scope.READ

    def get_queryset(self):
        return selectors.use_case_list(user=self.request.user).order_by("pk")


class UseCaseTransitionView(APIView):
    """Move a use case along its lifecycle, with a reason (the same service as the page)."""

    # Governance changes are not among the narrow scopes a key can be limited to: only a full key may.
    required_scope = ApiKey.Scope.USE_CASES_WRITE

    @extend_schema(request=UseCaseTransitionInSerializer, responses={200: UseCaseSerializer})
    def post(self, request, slug: str):
        use_case = selectors.use_case_by_slug(user=request.user, slug=slug)
        if use_case is None:
            raise NotFound("No such use case, or you may not see it.")
        serializer = UseCaseTransitionInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            use_case = services.use_case_transition(
                actor=Actor.from_request(request),
                use_case=use_case,
                to=serializer.validated_data["to"],
                reason=serializer.validated_data["reason"],
            )
        except services.ControlsFailing as exc:
            errors = [{"field": exc.field, "message": exc.message}] + [
                {"field": f"controls.{control.key}", "message": f"{control.name}: {control.reason}"}
                for control in exc.controls
            ]
            return Response(error_body(exc.code, errors), status=exc.status_code)
        return Response(UseCaseSerializer(use_case).data)


class RecommendationListCreateView(generics.ListAPIView):
    """GET: recommendations of use cases the caller may view, newest first, filterable, cursor-paginated.
    POST: bring your own model."""

    required_scope = {"GET": ApiKey.Scope.READ, "POST": ApiKey.Scope.RECOMMENDATIONS_WRITE}
    serializer_class = RecommendationSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = RecommendationFilter

    def get_queryset(self):
        return selectors.recommendation_list(user=self.request.user).select_related(
            "use_case", "policy_decision", "policy_version__policy"
        )

    @extend_schema(
        request=RecommendationInSerializer, responses={201: RecommendationSerializer}, parameters=[IDEMPOTENCY_HEADER]
    )
    def post(self, request):
        def handler():
            serializer = RecommendationInSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            (recommendation,) = services.recommendation_submit(
                actor=Actor.from_request(request),
                use_case=_use_case(request.user, data["use_case"]),
                drafts=[_draft(data)],
            )
            return Response(RecommendationSerializer(recommendation).data, status=status.HTTP_201_CREATED)

        return idempotent("recommendations", request, handler)


class RecommendationBatchView(GenericAPIView):
    """Up to 1,000 outputs in one request; each item stands alone and the answer reports each."""

    required_scope = ApiKey.Scope.RECOMMENDATIONS_WRITE
    serializer_class = RecommendationBatchInSerializer

    @extend_schema(
        request=RecommendationBatchInSerializer,
        responses={201: BatchResultSerializer, 207: BatchResultSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        def handler():
            items = request.data.get("items") if isinstance(request.data, dict) else None
            if not isinstance(items, list) or not items:
                raise ServiceError('Send {"items": [...]} with 1 to 1000 items.', field="items")
            if len(items) > 1000:
                raise ServiceError(f"{len(items)} items; the limit is 1000 per request.", field="items")
            results: list[dict | None] = [None] * len(items)
            by_use_case: dict[str, list[tuple[int, dict]]] = {}
            # One serializer validates every item: a fresh one per item costs a deep copy of its fields.
            validator = RecommendationInSerializer()
            for index, item in enumerate(items):
                try:
                    data = validator.run_validation(item)
                except serializers.ValidationError as exc:
                    detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
                    errors = [
                        {
                            "field": f"items[{index}]" if name == "non_field_errors" else f"items[{index}].{name}",
                            "message": str(messages[0]),
                        }
                        for name, messages in detail.items()
                    ]
                    results[index] = {"index": index, "status": "error", "errors": errors}
                    continue
                by_use_case.setdefault(data["use_case"], []).append((index, data))
            actor = Actor.from_request(request)
            for slug, entries in by_use_case.items():
                try:
                    use_case = _use_case(request.user, slug)
                    # Subjects of the control group are refused one by one; the rest of the batch goes on.
                    held = services.holdout_subjects_record(
                        actor=actor, use_case=use_case, subject_keys=[data["subject"] for _, data in entries]
                    )
                    for index, data in entries:
                        if data["subject"] in held:
                            message = f"Subject {data['subject']!r} is in the control group (holdout) of {slug}."
                            results[index] = {
                                "index": index,
                                "status": "error",
                                "errors": [{"field": f"items[{index}].subject", "message": message}],
                            }
                    entries = [(index, data) for index, data in entries if data["subject"] not in held]
                    recommendations = []
                    if entries:
                        recommendations = services.recommendation_submit(
                            actor=actor, use_case=use_case, drafts=[_draft(data) for _, data in entries]
                        )
                except ServiceError as exc:
                    for index, _ in entries:
                        field = f"items[{index}].{exc.field}" if exc.field else f"items[{index}]"
                        results[index] = {
                            "index": index,
                            "status": "error",
                            "errors": [{"field": field, "message": exc.message}],
                        }
                    continue
                for (index, _), recommendation in zip(entries, recommendations, strict=True):
                    results[index] = {
                        "index": index,
                        "status": "created",
                        "id": recommendation.pk,
                        "recommendation_status": recommendation.status,
                    }
            created = sum(1 for result in results if result["status"] == "created")
            code = status.HTTP_201_CREATED if created == len(items) else status.HTTP_207_MULTI_STATUS
            if created == 0:
                code = status.HTTP_400_BAD_REQUEST
            return Response({"created": created, "failed": len(items) - created, "results": results}, status=code)

        return idempotent("recommendations-batch", request, handler)


class RecommendationDetailView(APIView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(responses=RecommendationSerializer)
    def get(self, request, pk: int):
        recommendation = (
            selectors.recommendation_list(user=request.user)
            .select_related("use_case", "policy_decision", "policy_version__policy")
            .filter(pk=pk)
            .first()
        )
        if recommendation is None:
            raise NotFound("No such recommendation, or you may not see it.")
        return Response(RecommendationSerializer(recommendation).data)


class RecommendationTraceView(APIView):
    """The output's whole path as JSON: trigger, context, model call, policy verdict, review, deliveries,
    lifecycle events and business outcomes (the trace page's content)."""

    required_scope = ApiKey.Scope.READ

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, pk: int):
        try:
            recommendation = selectors.recommendation_trace(user=request.user, pk=pk)
        except Recommendation.DoesNotExist:
            raise NotFound("No such recommendation, or you may not see it.") from None
        return Response(trace_document(recommendation))


class RunListCreateView(APIView):
    required_scope = {"GET": ApiKey.Scope.READ, "POST": ApiKey.Scope.RUNS_WRITE}

    @extend_schema(request=RunInSerializer, responses={202: RunSerializer}, parameters=[IDEMPOTENCY_HEADER])
    def post(self, request):
        def handler():
            serializer = RunInSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            run = services.run_request(
                actor=Actor.from_request(request),
                use_case=_use_case(request.user, data["use_case"]),
                subject_key=data["subject"],
                trigger=Run.Trigger.API,
            )
            run.refresh_from_db()
            return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

        return idempotent("runs", request, handler)


class RunDetailView(APIView):
    required_scope = ApiKey.Scope.READ

    @extend_schema(responses=RunSerializer)
    def get(self, request, pk: int):
        run = selectors.run_list(user=request.user).select_related("use_case", "recommendation").filter(pk=pk).first()
        if run is None:
            raise NotFound("No such run, or you may not see it.")
        return Response(RunSerializer(run).data)
