"""Prometheus metrics of the app, and their rendering for `GET /metrics`.

Under gunicorn (several workers) and the Celery worker, `PROMETHEUS_MULTIPROC_DIR` is set before the
processes start, so every process writes its samples to files there and a scrape adds them all up;
without it, each scrape would show only the share of the one worker that answered.
"""

import logging
import os

from django.db import DatabaseError
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
MODEL_COST_TOTAL = Counter(
    "doorstep_model_cost_total",
    "Estimated model cost of the calls whose answer a run kept, by use case and endpoint.",
    ["use_case", "endpoint"],
)
MODEL_TOKENS_TOTAL = Counter(
    "doorstep_model_tokens_total",
    "Tokens of the calls whose answer a run kept, by endpoint and direction (in, out).",
    ["endpoint", "direction"],
)
MODEL_ANSWERS_TOTAL = Counter(
    "doorstep_model_answers_total",
    "Model answers a run kept, by use case and whether the fallback endpoint gave it (fallback rate).",
    ["use_case", "fallback"],
)
REVIEW_VERDICTS_TOTAL = Counter(
    "doorstep_review_verdicts_total",
    "Human review decisions recorded, by decision.",
    ["decision"],
)
# Unlabelled, so it exists from import on: a scrape is valid Prometheus text (with `# TYPE`) even before
# any labelled metric has been touched, in multiprocess mode too.
METRICS_SCRAPES_TOTAL = Counter("doorstep_metrics_scrapes_total", "Scrapes of the metrics endpoint.")


logger = logging.getLogger(__name__)
# Collectors that read the database at scrape time (figures of now, such as the review backlog), added by the
# apps that own the figures. The database is shared, so they are right whichever worker answers the scrape.
SCRAPE_COLLECTORS: list = []


def render_metrics() -> tuple[bytes, str]:
    """Return the exposition body and its content type, summed over all processes when multiprocess, followed
    by the figures the scrape collectors read from the database."""
    METRICS_SCRAPES_TOTAL.inc()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    if SCRAPE_COLLECTORS:
        scraped = CollectorRegistry()
        for collector in SCRAPE_COLLECTORS:
            scraped.register(collector)
        try:
            body += generate_latest(scraped)
        except DatabaseError:  # the process counters still tell what happened; readyz reports the database
            logger.warning("metrics: database figures left out of this scrape", exc_info=True)
    return body, CONTENT_TYPE_LATEST
