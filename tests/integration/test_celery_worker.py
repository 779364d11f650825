"""A run goes through a real Celery worker on Redis, against PostgreSQL, to written-back state."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.connectors.models import Connector, Destination
from apps.core.actors import Actor
from apps.reviews.services import review_task_decide
from apps.workflows.models import Recommendation, Run
from apps.workflows.services import run_request
from config import celery_app

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(world, tmp_path):
    if connection.vendor != "postgresql" or not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs DATABASE_URL=postgres://… and CELERY_BROKER_URL=redis://… (CI sets both)")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        # The worker must see the test database the fixtures committed to.
        "DATABASE_URL": "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**connection.settings_dict),
        "DOORSTEP_OUTBOUND_ALLOWLIST": "127.0.0.1",  # the local webhook receiver
    }
    # prefork with one child: the tests kill the child mid-task, as the OOM killer or a deploy would.
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork", "-c", "1", "-l", "info"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    process.log_path = tmp_path / "worker.log"
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
            raise AssertionError(f"worker exited ({process.returncode}):\n{process.log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for the worker:\n{process.log_path.read_text()[-3000:]}")


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


def test_a_worker_killed_mid_delivery_loses_nothing_and_delivers_once(world, worker, queued_recommendation):
    """acks_late + reject_on_worker_lost: the killed child's task goes back to the queue and runs again;
    delivery_send is idempotent, so the outcome is one delivery, one event."""
    first_request = threading.Event()
    received = []

    class SlowOnce(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.headers["webhook-id"])
            self.rfile.read(int(self.headers["content-length"]))
            if len(received) == 1:
                first_request.set()
                time.sleep(30)  # the worker is killed while it waits for this answer
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connector = Connector(
        name="Slow hook", kind=Connector.Kind.WEBHOOK, config={"url": f"http://127.0.0.1:{server.server_port}/hook"}
    )
    connector.set_secrets({"signing_secret": "whsec"})
    connector.save()
    world.churn.destinations.set([Destination.objects.create(name="Slow", kind="webhook", connector=connector)])
    recommendation = queued_recommendation()
    review_task_decide(actor=Actor(user=world.reviewer), task=recommendation.review_task, decision="approve")

    assert first_request.wait(60), "the worker never called the receiver"
    children = subprocess.check_output(["pgrep", "-P", str(worker.pid)]).split()
    for child in children:
        os.kill(int(child), signal.SIGKILL)
    _wait_for(lambda: Recommendation.objects.filter(pk=recommendation.pk, status="delivered").exists(), worker)
    server.shutdown()
    assert len(received) == 2 and len(set(received)) == 1  # sent again, under the same webhook-id
    assert recommendation.events.filter(type="delivered").count() == 1
    assert recommendation.deliveries.get().status == "succeeded"
