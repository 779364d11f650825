"""Prometheus metrics of the app, and their rendering for `GET /metrics`.

Under gunicorn (several workers) and the Celery worker, `PROMETHEUS_MULTIPROC_DIR` is set before the
processes start, so every process writes its samples to files there and a scrape adds them all up;
without it, each scrape would show only the share of the one worker that answered.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

RECOMMENDATIONS_TOTAL = Counter(
    "doorstep_recommendations_total",
    "Recommendations produced, by use case and policy verdict.",
    ["use_case", "verdict"],
)
RUNS_TOTAL = Counter(
    "doorstep_runs_total",
    "Workflow runs finished, by use case and final status.",
    ["use_case", "status"],
)
MODEL_CALL_SECONDS = Histogram(
    "doorstep_model_call_seconds",
    "Duration of calls to model endpoints, by endpoint and outcome.",
    ["endpoint", "outcome"],
)
DELIVERIES_TOTAL = Counter(
    "doorstep_deliveries_total",
    "Delivery attempts, by delivery kind and status.",
    ["kind", "status"],
)
REVIEW_VERDICTS_TOTAL = Counter(
    "doorstep_review_verdicts_total",
    "Human review decisions recorded, by decision.",
    ["decision"],
)
# Unlabelled, so it exists from import on: a scrape is valid Prometheus text (with `# TYPE`) even before
# any labelled metric has been touched, in multiprocess mode too.
METRICS_SCRAPES_TOTAL = Counter("doorstep_metrics_scrapes_total", "Scrapes of the metrics endpoint.")


def render_metrics() -> tuple[bytes, str]:
    """Return the exposition body and its content type, summed over all processes when multiprocess."""
    METRICS_SCRAPES_TOTAL.inc()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
