import datetime as dt

import django_filters

from .models import Recommendation


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 time with any valid offset, compared in UTC: PostgreSQL refuses offsets beyond ±15:59 that
    ISO 8601 allows, and a year near 1 or 9999 may leave the range once shifted."""

    def filter(self, qs, value):
        if value is not None:
            try:
                value = value.astimezone(dt.UTC)
            except OverflowError:
                return qs.none()
        return super().filter(qs, value)


class RecommendationFilter(django_filters.FilterSet):
    use_case = django_filters.CharFilter(field_name="use_case__slug", help_text="Slug of the use case")
    subject = django_filters.CharFilter(field_name="subject_key")
    status = django_filters.MultipleChoiceFilter(choices=Recommendation.Status.choices)
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Recommendation
        fields = ["use_case", "subject", "status", "created_after", "created_before"]
