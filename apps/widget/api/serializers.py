from rest_framework import serializers


class WidgetLinkInSerializer(serializers.Serializer):
    subject = serializers.CharField(max_length=120, help_text="The key of the record the host page shows")
    ttl_minutes = serializers.IntegerField(
        min_value=15, max_value=60, required=False, default=30, help_text="How long the link works"
    )


class WidgetLinkSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="The widget page: frame it (iframe src) from an allowed origin")
    snippet = serializers.CharField(help_text="A script tag that frames the widget where it is placed")
    expires_at = serializers.DateTimeField()
    subject = serializers.CharField(source="widget_token.subject_key")
    allowed_origins = serializers.ListField(child=serializers.CharField(), help_text="Who may frame it")
