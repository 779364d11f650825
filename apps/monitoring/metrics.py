"""Figures of now for Prometheus, read from the database at scrape time (four queries): the review
backlog and its overdue part per use case, this month's model cost and budget per use case, and open alerts.
Counters of events (runs, calls, cost, tokens, deliveries) live in apps.core.metrics."""

from django.db.models import Count, Q
from prometheus_client.core import GaugeMetricFamily

from apps.core import clock
from apps.reviews.models import ReviewTask
from apps.workflows.models import UseCase

from .models import Alert, MonthlySpend
from .services import month_start


class DatabaseFiguresCollector:
    def collect(self):
        now = clock.now()
        use_cases = list(UseCase.objects.values_list("pk", "slug", "monthly_budget"))
        slugs = {pk: slug for pk, slug, _ in use_cases}
        backlog = GaugeMetricFamily("doorstep_review_backlog", "Review items not decided yet.", labels=["use_case"])
        overdue = GaugeMetricFamily(
            "doorstep_review_overdue", "Review items past their SLA and not decided.", labels=["use_case"]
        )
        rows = (
            ReviewTask.objects.exclude(status=ReviewTask.Status.DECIDED)
            .values_list("recommendation__use_case")
            .annotate(n=Count("pk"), late=Count("pk", filter=Q(due_at__lt=now)))
        )
        for use_case_id, n, late in rows:
            backlog.add_metric([slugs.get(use_case_id, "")], n)
            overdue.add_metric([slugs.get(use_case_id, "")], late)
        cost = GaugeMetricFamily(
            "doorstep_month_cost", "Model cost of the use case this calendar month so far.", labels=["use_case"]
        )
        budget = GaugeMetricFamily("doorstep_month_budget", "The use case's monthly model budget.", labels=["use_case"])
        spent = dict(
            MonthlySpend.objects.filter(month=month_start(now), use_case__isnull=False).values_list("use_case", "cost")
        )
        for pk, slug, monthly_budget in use_cases:
            cost.add_metric([slug], float(spent.get(pk, 0)))
            if monthly_budget is not None:
                budget.add_metric([slug], float(monthly_budget))
        alerts = GaugeMetricFamily("doorstep_alerts_open", "Unresolved alerts, by severity.", labels=["severity"])
        counts = dict(
            Alert.objects.exclude(status=Alert.Status.RESOLVED).values_list("severity").annotate(n=Count("pk"))
        )
        for severity in Alert.Severity.values:
            alerts.add_metric([severity], counts.get(severity, 0))
        yield from (backlog, overdue, cost, budget, alerts)
