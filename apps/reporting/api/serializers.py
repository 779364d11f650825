from rest_framework import serializers


class OutcomeInSerializer(serializers.Serializer):
    event_id = serializers.CharField(max_length=120, help_text="Your id for the outcome; repeats are ignored")
    use_case = serializers.SlugField(max_length=50)
    subject = serializers.CharField(max_length=120)
    kind = serializers.RegexField(
        r"^[a-z][a-z0-9_]*$", max_length=60, help_text="e.g. ticket_resolved, renewal_won, renewal_lost"
    )
    occurred_at = serializers.DateTimeField()
    value = serializers.DecimalField(max_digits=14, decimal_places=2, required=False, allow_null=True)
    recommendation_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False, allow_null=True)


class OutcomeBatchSerializer(serializers.Serializer):
    outcomes = OutcomeInSerializer(many=True, allow_empty=False, max_length=1000)
