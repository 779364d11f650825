from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"

    def ready(self):
        from apps.core import metrics

        from .metrics import DatabaseFiguresCollector

        if not any(isinstance(c, DatabaseFiguresCollector) for c in metrics.SCRAPE_COLLECTORS):
            metrics.SCRAPE_COLLECTORS.append(DatabaseFiguresCollector())
