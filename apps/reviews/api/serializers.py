from rest_framework import serializers

from apps.reviews.models import ReviewTask, ReviewVerdict


class ReviewTaskSerializer(serializers.ModelSerializer):
    queue = serializers.StringRelatedField()
    claimed_by = serializers.StringRelatedField()
    use_case = serializers.CharField(source="recommendation.use_case.slug", read_only=True)
    subject = serializers.CharField(source="recommendation.subject_key", read_only=True)
    text = serializers.CharField(source="recommendation.text", read_only=True)

    class Meta:
        model = ReviewTask
        fields = [
            "id",
            "queue",
            "status",
            "priority",
            "reasons",
            "created_at",
            "due_at",
            "claimed_by",
            "lease_expires_at",
            "decided_at",
            "recommendation",
            "use_case",
            "subject",
            "text",
        ]


class DecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=ReviewVerdict.Decision.choices)
    edited_text = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    reason_code = serializers.ChoiceField(
        choices=ReviewVerdict.Reason.choices, required=False, allow_blank=True, default=""
    )
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
