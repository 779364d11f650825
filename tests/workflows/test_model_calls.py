"""Runs whose model endpoint is remote (an OpenAI-compatible stand-in, a generic HTTP JSON stand-in), end to end
through run_execute: what a run records of the call, and how it retries, waits out a short rate limit and
falls back when the primary endpoint fails."""

import socket
import time
from decimal import Decimal

import pytest

from apps.connectors.models import Connector
from apps.core.actors import Actor
from apps.workflows.models import Recommendation, Run
from apps.workflows.services import run_execute, run_request
from standins.model_http import model_http_standin
from standins.openai import DEFAULT_MODELS, openai_standin

PROMPT = (
    "Account {name} ({industry}, {region}): ARR {arr}, {seats} seats, {logins_30d} logins in 30 days, NPS {nps}, "
    "{late_payments_12m} late payments. Propose one retention step."
)


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]


# One stand-in of each kind for the module (stopping one takes half a second), fresh state and log per test.
@pytest.fixture(scope="module")
def llm_server():
    with openai_standin() as standin:
        yield standin


@pytest.fixture(scope="module")
def scorer_server():
    with model_http_standin(token="t0k") as standin:
        yield standin


def _fresh(standin, **state):
    standin.requests.clear()
    standin.state.clear()
    standin.state.update(state)
    return standin


@pytest.fixture
def llm(llm_server):
    return _fresh(llm_server, api_key="sk-standin-key", models=list(DEFAULT_MODELS))


@pytest.fixture
def scorer(scorer_server):
    return _fresh(scorer_server, token="t0k")


def _save(connector, secrets):
    connector.set_secrets(secrets)
    connector.save()
    return connector


def _gpt(base_url, key="sk-standin-key"):
    return _save(
        Connector(
            name="GPT churn advisor",
            kind=Connector.Kind.MODEL_OPENAI,
            config={
                "base_url": base_url,
                "model": "gpt-4o-mini",
                "prompt_template": PROMPT,
                "price_per_1k_input_tokens": "0.15",
                "price_per_1k_output_tokens": "0.60",
            },
        ),
        {"api_key": key},
    )


def _scorer_endpoint(scorer):
    return _save(
        Connector(
            name="In-house churn scorer",
            kind=Connector.Kind.MODEL_HTTP,
            config={
                "url": scorer.url + "/predict",
                "output_path": "$.prediction.text",
                "confidence_path": "$.prediction.confidence",
                "cost_per_call": "0.002",
            },
        ),
        {"token": "t0k"},
    )


def _use(world, primary, *, fallback="keep", timeout=None, attempts=None):
    """world.churn on `primary`, its sklearn fallback kept unless another (or None) is given."""
    use_case = world.churn
    use_case.model_endpoint = primary
    if fallback != "keep":
        use_case.fallback_endpoint = fallback
    use_case.model_timeout_seconds = timeout or use_case.model_timeout_seconds
    use_case.model_max_attempts = attempts or use_case.model_max_attempts
    use_case.save()
    return use_case


def _run(world, subject="ACC-0007") -> Run:
    run = run_request(
        actor=Actor(user=world.integrator), use_case=world.churn, subject_key=subject, trigger=Run.Trigger.API
    )
    return run_execute(run_id=run.pk)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


def test_a_run_on_an_openai_compatible_endpoint_records_tokens_latency_and_cost(world, llm):
    gpt = _use(world, _gpt(llm.url + "/v1")).model_endpoint
    run = _run(world)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.model_endpoint == gpt and not run.used_fallback and run.model_attempts == 1 and run.error == ""
    (sent,) = llm.requests
    system, user = sent.json["messages"]
    assert user["content"].startswith("Account ") and "logins in 30 days" in user["content"]
    # The stand-in counts a token per word of the prompt (in) and of its answer (out).
    assert run.tokens_in == len(system["content"].split()) + len(user["content"].split())
    assert run.tokens_out > 0 and run.model_latency_ms > 0
    expected = (Decimal("0.15") * run.tokens_in + Decimal("0.60") * run.tokens_out) / 1000
    assert run.cost == expected.quantize(Decimal("0.000001")) and run.cost > 0
    recommendation = run.recommendation
    assert recommendation.content["text"] == "Suggested next step, based on: " + " ".join(user["content"].split()[:12])
    assert recommendation.confidence == 0.82 and recommendation.cost == run.cost
    called = recommendation.events.get(type="model_called").payload
    assert called["endpoint"] == gpt.name and called["tokens_in"] == run.tokens_in and not called["fallback"]
    gpt.refresh_from_db()
    assert gpt.health == Connector.Health.OK and gpt.last_success_at is not None


def test_a_refused_key_is_not_retried_and_the_fallback_answers(world, llm):
    gpt = _use(world, _gpt(llm.url + "/v1", key="sk-revoked")).model_endpoint
    run = _run(world)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert len(llm.requests) == 1  # a permanent error: no second attempt on that endpoint
    assert run.used_fallback and run.model_endpoint == world.churn_fallback and run.model_attempts == 2
    assert "GPT churn advisor refused the credentials (401)" in run.error and "Incorrect API key" in run.error
    gpt.refresh_from_db()
    assert gpt.health == Connector.Health.FAILING and "refused the credentials" in gpt.last_error


def test_a_slow_endpoint_is_retried_within_the_timeout_then_the_fallback_answers(world, llm):
    _use(world, _gpt(llm.url + "/v1"), timeout=0.5, attempts=2)
    llm.fail_next("slow", times=2, seconds=1.0)
    started = time.monotonic()
    run = _run(world)
    assert time.monotonic() - started < 2.5
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert len(llm.requests) == 2 and run.model_attempts == 3
    assert run.used_fallback and run.model_endpoint == world.churn_fallback
    assert run.error.count("did not answer within 0.5s") == 2


def test_a_malformed_answer_is_retried_on_the_same_endpoint(world, llm):
    gpt = _use(world, _gpt(llm.url + "/v1")).model_endpoint
    llm.fail_next("malformed")
    run = _run(world)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.model_endpoint == gpt and not run.used_fallback and run.model_attempts == 2
    assert "sent a malformed response (expected JSON, got text/html)" in run.error


def test_a_429_with_a_short_retry_after_is_waited_out_and_the_call_succeeds(world, llm):
    gpt = _use(world, _gpt(llm.url + "/v1")).model_endpoint
    llm.fail_next("ratelimit", retry_after=1)
    started = time.monotonic()
    run = _run(world)
    elapsed = time.monotonic() - started
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert 1.0 <= elapsed < 3.0
    assert len(llm.requests) == 2 and run.model_endpoint == gpt and not run.used_fallback
    assert "rate limiting us (429); retry after 1s" in run.error


def test_a_429_with_a_long_retry_after_moves_to_the_fallback_at_once(world, llm):
    _use(world, _gpt(llm.url + "/v1"))
    llm.fail_next("ratelimit", retry_after=60)
    started = time.monotonic()
    run = _run(world)
    assert time.monotonic() - started < 2.0
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert len(llm.requests) == 1 and run.used_fallback and run.model_endpoint == world.churn_fallback


def test_the_fallback_endpoint_answers_when_the_primary_is_down(world, scorer):
    scorer.state["confidence"] = 0.91
    fallback = _scorer_endpoint(scorer)
    _use(world, _gpt(_closed_port_url()), fallback=fallback)
    run = _run(world)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.used_fallback and run.model_endpoint == fallback
    assert run.model_attempts == world.churn.model_max_attempts + 1
    assert run.error.count("connection failed") == world.churn.model_max_attempts
    # The generic endpoint got the subject's records; its text and confidence were read at their paths.
    (sent,) = scorer.requests
    assert [r["account_id"] for r in sent.json["records"]] == ["ACC-0007"]
    assert run.recommendation.content == {"text": "Prediction for ACC-0007: likely to renew"}
    assert run.recommendation.confidence == 0.91 and run.cost == Decimal("0.002")


def test_a_run_fails_with_every_error_when_no_endpoint_answers(world):
    _use(world, _gpt(_closed_port_url()), fallback=None, attempts=2)
    run = _run(world)
    assert run.status == Run.Status.FAILED and run.model_output is None
    assert run.error.count("Cannot reach Model endpoint GPT churn advisor") == 2


def test_an_answer_without_confidence_goes_to_review(world, llm):
    _use(world, _gpt(llm.url + "/v1"))
    llm.state["content"] = "Call the sponsor this week and review adoption."
    run = _run(world)
    recommendation = run.recommendation
    assert recommendation.content == {"text": "Call the sponsor this week and review adoption."}
    assert recommendation.confidence is None  # not invented; the policy reads it as 0
    assert recommendation.status == Recommendation.Status.QUEUED
    assert "Low confidence" in [rule["name"] for rule in recommendation.policy_decision.fired_rules]
