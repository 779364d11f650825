"""Schema fuzzing, in-process: schemathesis generates requests from /api/schema/ for every API operation and
sends them to the WSGI app as an admin's API key; no answer may be a 5xx, and every answer must match the
schema (status documented, content type, body)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.core.actors import Actor
from apps.permissions.services import api_key_create
from config.wsgi import application

CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance]


# Generating the schema reads no table, so it is loaded once, at collection.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """Requests go straight to the WSGI app, not through Django's test client, so, as that client does, the
    end of a request must not close the test's database connection (it holds the test transaction)."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def admin_key(world):
    _, raw = api_key_create(actor=Actor(user=world.admin), user=world.admin, name="fuzz")
    return {"Authorization": f"Bearer {raw}"}


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_within_its_schema(case, admin_key):
    response = case.call(headers=admin_key)
    case.validate_response(response, checks=[*CHECKS, response_schema_conformance])
