from rest_framework import serializers

from apps.delivery.services import FEEDBACK_TYPES


class FeedbackEventSerializer(serializers.Serializer):
    event_id = serializers.CharField(max_length=120, help_text="Your id for the event; repeats are ignored")
    recommendation_id = serializers.IntegerField(min_value=1)
    type = serializers.ChoiceField(choices=sorted(FEEDBACK_TYPES))
    at = serializers.DateTimeField(required=False)
    payload = serializers.JSONField(required=False, default=dict)

    def validate_payload(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        return value


class FeedbackBatchSerializer(serializers.Serializer):
    events = FeedbackEventSerializer(many=True, allow_empty=False, max_length=1000)
