from rest_framework import serializers

from apps.reviews import approvals
from apps.reviews.models import ApprovalRequest, ReviewTask, ReviewVerdict


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


class ApprovalRequestInSerializer(serializers.Serializer):
    """An agent's proposed action, waiting for a person's verdict."""

    use_case = serializers.SlugField(help_text="Slug of the use case whose review queue decides")
    subject = serializers.CharField(max_length=120, help_text="What the action is about (account, ticket, …)")
    action = serializers.JSONField(help_text="The proposed action: an object, evaluated by the policy as `action`")
    summary = serializers.CharField(max_length=20_000, help_text="What the reviewer reads: the action in words")
    timeout_seconds = serializers.IntegerField(
        min_value=int(approvals.MIN_TIMEOUT.total_seconds()),
        max_value=int(approvals.MAX_TIMEOUT.total_seconds()),
        default=3600,
        help_text="10 seconds to 7 days",
    )
    on_timeout = serializers.ChoiceField(
        choices=ApprovalRequest.OnTimeout.choices,
        default=ApprovalRequest.OnTimeout.REJECT,
        help_text="The decision when nobody decides in time",
    )
    callback_url = serializers.URLField(
        required=False, allow_blank=True, default="", max_length=500, help_text="Receives the signed verdict"
    )
    idempotency_key = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=100, help_text="Or the Idempotency-Key header"
    )
    confidence = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0.0, max_value=1.0)
    context = serializers.JSONField(required=False, default=dict, help_text="Facts the policy may read as `context`")

    def validate_action(self, value):
        if not isinstance(value, dict) or not value:
            raise serializers.ValidationError("Must be a non-empty object.")
        return value

    def validate_summary(self, value):
        if not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        return value

    def validate_context(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        return value


class ApprovalRequestSerializer(serializers.Serializer):
    """An approval as the agent sees it (the poll answer, and the `data` of the callback)."""

    id = serializers.UUIDField()
    use_case = serializers.CharField()
    subject = serializers.CharField()
    status = serializers.ChoiceField(choices=ApprovalRequest.Status.choices)
    decision = serializers.ChoiceField(
        choices=ApprovalRequest.OnTimeout.choices, allow_null=True, help_text="Null while pending"
    )
    comment = serializers.CharField(help_text="The reviewer's comment, or why the approval resolved alone")
    decided_at = serializers.DateTimeField(allow_null=True)
    decided_by = serializers.CharField(allow_null=True, help_text="The reviewer's username; null for a timeout")
    edited = serializers.BooleanField(help_text="Whether the reviewer edited the text before approving")
    text = serializers.CharField(help_text="The text as approved (edited, redacted) or as proposed")
    action = serializers.JSONField()
    on_timeout = serializers.ChoiceField(choices=ApprovalRequest.OnTimeout.choices)
    timeout_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    recommendation_id = serializers.IntegerField()
    poll_url = serializers.URLField()
    callback_url = serializers.CharField()
    callback_attempts = serializers.IntegerField()
    callback_delivered_at = serializers.DateTimeField(allow_null=True)


class ApprovalRequestCreatedSerializer(ApprovalRequestSerializer):
    callback_secret = serializers.CharField(
        allow_null=True,
        help_text="Verifies the callback's signature (Standard Webhooks); returned only when the approval is created",
    )
