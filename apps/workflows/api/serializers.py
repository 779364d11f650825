from decimal import Decimal

from rest_framework import serializers

from apps.workflows.models import Recommendation, Run, UseCase

MAX_CONTENT_CHARS = 20_000


class UseCaseSerializer(serializers.ModelSerializer):
    effective_review_sample_rate = serializers.DecimalField(max_digits=4, decimal_places=3, read_only=True)

    class Meta:
        model = UseCase
        fields = [
            "id",
            "slug",
            "name",
            "business_unit",
            "risk_tier",
            "status",
            "review_sample_rate",
            "effective_review_sample_rate",
        ]


class UseCaseTransitionInSerializer(serializers.Serializer):
    to = serializers.ChoiceField(choices=UseCase.Status.choices, help_text="The status to move to")
    reason = serializers.CharField(max_length=100, help_text="Why; kept in the use case's history")


class RecommendationInSerializer(serializers.Serializer):
    """An output produced elsewhere ("bring your own model")."""

    use_case = serializers.SlugField(help_text="Slug of the use case")
    subject = serializers.CharField(max_length=120)
    content = serializers.JSONField(help_text='The output: an object with at least "text"')
    confidence = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    proposed_action = serializers.JSONField(required=False, default=dict)
    cost = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=Decimal("0"), required=False, default=Decimal("0")
    )
    producer = serializers.CharField(max_length=100, required=False, default="external")
    context = serializers.JSONField(required=False, default=dict)

    def validate_content(self, value):
        if not isinstance(value, dict) or not isinstance(value.get("text"), str) or not value["text"].strip():
            raise serializers.ValidationError('Must be an object with a non-empty "text" string.')
        if len(value["text"]) > MAX_CONTENT_CHARS:
            raise serializers.ValidationError(f"The text is longer than {MAX_CONTENT_CHARS} characters.")
        return value

    def validate_proposed_action(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        return value

    def validate_context(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        return value


class RecommendationBatchInSerializer(serializers.Serializer):
    items = RecommendationInSerializer(many=True, allow_empty=False, max_length=1000)


class RecommendationSerializer(serializers.ModelSerializer):
    use_case = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    verdict = serializers.CharField(source="policy_decision.effect", read_only=True, default=None)
    fired_rules = serializers.JSONField(source="policy_decision.fired_rules", read_only=True, default=list)
    policy_version = serializers.StringRelatedField()

    class Meta:
        model = Recommendation
        fields = [
            "id",
            "use_case",
            "subject_key",
            "producer",
            "status",
            "verdict",
            "fired_rules",
            "policy_version",
            "content",
            "final_content",
            "confidence",
            "proposed_action",
            "cost",
            "created_at",
            "decided_at",
            "delivered_at",
        ]


class RunInSerializer(serializers.Serializer):
    use_case = serializers.SlugField()
    subject = serializers.CharField(max_length=120)


class RunSerializer(serializers.ModelSerializer):
    use_case = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    recommendation = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "use_case",
            "subject_key",
            "trigger",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            "step_timings",
            "used_fallback",
            "model_attempts",
            "model_latency_ms",
            "tokens_in",
            "tokens_out",
            "cost",
            "error",
            "recommendation",
        ]
