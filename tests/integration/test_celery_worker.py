"""A run goes through a real Celery worker on Redis, against PostgreSQL, to written-back state."""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.core.actors import Actor
from apps.reviews.services import review_task_decide
from apps.workflows.models import Recommendation, Run
from apps.workflows.services import run_request
from config import celery_app

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(world):
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs DATABASE_URL=postgres://… and CELERY_BROKER_URL=redis://… (CI sets both)")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        # The worker must see the test database the fixtures committed to.
        "DATABASE_URL": "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**connection.settings_dict),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "-l", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    celery_app.conf.task_always_eager = False
    try:
        yield process
    finally:
        celery_app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for(predicate, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"worker exited: {process.stdout.read().decode(errors='replace')}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the worker")


def test_run_goes_through_a_real_worker_to_written_back_state(world, worker):
    run = run_request(
        actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-0010", trigger=Run.Trigger.API
    )
    run = _wait_for(lambda: Run.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(), worker)
    assert run.status == "succeeded", run.error
    recommendation = Recommendation.objects.get(run=run)
    if recommendation.status == Recommendation.Status.QUEUED:
        review_task_decide(actor=Actor(user=world.reviewer), task=recommendation.review_task, decision="approve")
    _wait_for(lambda: Recommendation.objects.filter(pk=recommendation.pk, status="delivered").exists(), worker)
    with sqlite3.connect(world.source_db) as conn:
        rows = conn.execute("SELECT account_id, created_by FROM crm_tasks").fetchall()
    assert rows == [("ACC-0010", "doorstep:churn-risk")]
    delivered = recommendation.events.get(type="delivered")
    assert delivered.actor_label == "system:delivery_send"
