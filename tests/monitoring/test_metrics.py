"""/metrics: the monitoring signals for Prometheus — counters summed over every process in multiprocess mode
(several gunicorn workers), and figures of now read from the database at scrape time."""

import subprocess
import sys
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.core.actors import Actor
from apps.monitoring.models import MonthlySpend
from apps.monitoring.services import alert_raise, month_start
from apps.workflows.models import Run
from apps.workflows.services import run_execute, run_request

WORKER = """
from apps.core import metrics
metrics.MODEL_COST_TOTAL.labels("churn-risk", "GPT").inc({cost})
metrics.MODEL_ANSWERS_TOTAL.labels("churn-risk", "true").inc()
"""
SCRAPE = "from apps.core.metrics import render_metrics; import sys; sys.stdout.write(render_metrics()[0].decode())"


def _samples(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_add_up_over_worker_processes(tmp_path):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for cost in (1.5, 2.25, 0.25):  # three workers, each its own process and pid
        subprocess.run([sys.executable, "-c", WORKER.format(cost=cost)], env=env, check=True, cwd=".")
    text = subprocess.run(
        [sys.executable, "-c", SCRAPE], env=env, check=True, cwd=".", capture_output=True, text=True
    ).stdout
    samples = _samples(text)
    assert samples[("doorstep_model_cost_total", (("endpoint", "GPT"), ("use_case", "churn-risk")))] == 4.0
    assert samples[("doorstep_model_answers_total", (("fallback", "true"), ("use_case", "churn-risk")))] == 3.0


@pytest.mark.django_db
def test_a_run_and_the_database_figures_show_on_the_scrape(client, world, queued_recommendation):
    before = _samples(client.get("/metrics").content.decode())
    world.churn.monthly_budget = Decimal("100")
    world.churn.save()
    run = run_request(actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-0007", trigger="api")
    run = run_execute(run_id=run.pk)
    assert run.status == Run.Status.SUCCEEDED and run.cost > 0
    queued_recommendation()
    alert_raise(key="k", kind="test", title="T", severity="critical")
    samples = _samples(client.get("/metrics").content.decode())
    key = ("doorstep_model_cost_total", (("endpoint", world.churn_model.name), ("use_case", "churn-risk")))
    assert samples[key] - before.get(key, 0) == pytest.approx(float(run.cost))
    answers = ("doorstep_model_answers_total", (("fallback", "false"), ("use_case", "churn-risk")))
    assert samples[answers] - before.get(answers, 0) == 1
    tokens = ("doorstep_model_tokens_total", (("direction", "in"), ("endpoint", world.churn_model.name)))
    assert samples[tokens] - before.get(tokens, 0) == run.tokens_in
    spent = MonthlySpend.objects.get(use_case=world.churn, month=month_start(run.created_at)).cost
    assert samples[("doorstep_month_cost", (("use_case", "churn-risk"),))] == pytest.approx(float(spent))
    assert samples[("doorstep_month_budget", (("use_case", "churn-risk"),))] == 100.0
    backlog = world.churn.recommendations.filter(status="queued_for_review").count()
    assert samples[("doorstep_review_backlog", (("use_case", "churn-risk"),))] == backlog >= 1
    assert samples[("doorstep_review_overdue", (("use_case", "churn-risk"),))] == 0
    assert samples[("doorstep_alerts_open", (("severity", "critical"),))] == 1
