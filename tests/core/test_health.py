import pytest

from apps.core.metrics import REVIEW_VERDICTS_TOTAL
from config import celery_app

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


def test_healthz_answers_ok_without_login(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.content == b"ok"


@pytest.mark.django_db
def test_readyz_reports_database_and_broker_ok(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_answers_503_when_the_broker_is_unreachable(client, monkeypatch):
    # Celery reads CELERY_BROKER_URL from the environment before its own conf (CI sets it), so patch both.
    monkeypatch.setenv("CELERY_BROKER_URL", UNREACHABLE_BROKER)
    monkeypatch.setitem(celery_app.conf, "broker_url", UNREACHABLE_BROKER)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"].startswith("error")


@pytest.mark.django_db  # the scrape also reads figures of now (review backlog, month cost) from the database
def test_metrics_exposes_prometheus_text(client):
    REVIEW_VERDICTS_TOTAL.labels(decision="approve").inc()

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "# TYPE doorstep_review_verdicts_total counter" in text
    assert 'doorstep_review_verdicts_total{decision="approve"}' in text


def test_metrics_can_require_a_bearer_token(client, settings, db):
    settings.DOORSTEP_METRICS_TOKEN = "s3cret-scrape"
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    allowed = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape")
    assert allowed.status_code == 200 and allowed["Content-Type"].startswith("text/plain")
