import django_filters

from .models import Recommendation


class RecommendationFilter(django_filters.FilterSet):
    use_case = django_filters.CharFilter(field_name="use_case__slug", help_text="Slug of the use case")
    subject = django_filters.CharFilter(field_name="subject_key")
    status = django_filters.MultipleChoiceFilter(choices=Recommendation.Status.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Recommendation
        fields = ["use_case", "subject", "status", "created_after", "created_before"]
