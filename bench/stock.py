"""The baseline: a stock DRF ModelViewSet create on the same model, without policy evaluation or events."""

from rest_framework import serializers, viewsets

from apps.workflows.models import Recommendation


class StockRecommendationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recommendation
        fields = ["id", "use_case", "subject_key", "content", "confidence", "proposed_action", "cost"]


class StockRecommendationViewSet(viewsets.ModelViewSet):
    queryset = Recommendation.objects.all()
    serializer_class = StockRecommendationSerializer
