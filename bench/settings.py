"""Benchmark settings: the test settings on PostgreSQL, served by gunicorn, with deliveries only enqueued.

`.delay()` publishes to kombu's in-memory transport, so the worker's work (deliveries) does not run inside
the measured requests, and no broker is needed.
"""

import os

import environ

os.environ.setdefault("CELERY_BROKER_URL", "memory://")

from config.settings.test import *  # noqa: E402, F403

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/doorstep_bench"

DATABASES = {"default": environ.Env.db_url_config(os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = 60

DEBUG = False
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_URL = "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
ROOT_URLCONF = "bench.urls"
WSGI_APPLICATION = "bench.wsgi.application"
