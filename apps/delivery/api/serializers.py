from rest_framework import serializers

from apps.delivery.models import Delivery
from apps.delivery.services import FEEDBACK_TYPES

MAX_ID = 2**63 - 1  # a bigint: a larger id is refused here, not by the database


class FeedbackEventSerializer(serializers.Serializer):
    event_id = serializers.CharField(max_length=120, help_text="Your id for the event; repeats are ignored")
    recommendation_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    type = serializers.ChoiceField(choices=sorted(FEEDBACK_TYPES))
    at = serializers.DateTimeField(required=False)
    payload = serializers.JSONField(required=False, default=dict)

    def validate_payload(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        return value


class FeedbackBatchSerializer(serializers.Serializer):
    events = FeedbackEventSerializer(many=True, allow_empty=False, max_length=1000)


class DeliverySerializer(serializers.ModelSerializer):
    recommendation_id = serializers.IntegerField(read_only=True)
    use_case = serializers.CharField(source="recommendation.use_case.slug", read_only=True)
    subject = serializers.CharField(source="recommendation.subject_key", read_only=True)
    destination = serializers.CharField(source="destination.name", read_only=True)
    destination_kind = serializers.CharField(source="destination.kind", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "recommendation_id",
            "use_case",
            "subject",
            "destination",
            "destination_kind",
            "status",
            "attempts",
            "external_id",
            "last_error",
            "last_response",
            "attempt_log",
            "created_at",
            "delivered_at",
            "next_attempt_at",
        ]
        read_only_fields = fields
