from rest_framework import serializers

from apps.policies.models import Approval, Policy, PolicyVersion, Rule


class RuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Rule
        fields = [
            "id",
            "order",
            "name",
            "description",
            "condition",
            "effect",
            "reviewers",
            "review_queue",
            "redact_fields",
            "redact_patterns",
        ]


class ApprovalSerializer(serializers.ModelSerializer):
    approver = serializers.CharField(source="approver.get_username", read_only=True)

    class Meta:
        model = Approval
        fields = ["approver", "decision", "comment", "at"]


class PolicyVersionSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.get_username", read_only=True)
    rules = RuleSerializer(many=True, read_only=True)
    approvals = ApprovalSerializer(many=True, read_only=True)

    class Meta:
        model = PolicyVersion
        fields = [
            "id",
            "policy",
            "number",
            "state",
            "author",
            "note",
            "submitted_at",
            "effective_from",
            "activated_at",
            "retired_at",
            "emergency",
            "emergency_reason",
            "emergency_expires_at",
            "rules",
            "approvals",
        ]


class PolicyVersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyVersion
        fields = ["id", "number", "state", "emergency", "effective_from", "activated_at"]


class PolicySerializer(serializers.ModelSerializer):
    versions = PolicyVersionSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Policy
        fields = ["id", "name", "description", "business_unit", "versions"]


class ReviewSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Approval.Decision.choices)
    comment = serializers.CharField(max_length=2000)
