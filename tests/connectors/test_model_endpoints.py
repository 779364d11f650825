"""Model endpoint adapters through their real client code against local stand-ins: the OpenAI chat protocol
(OpenAI, Ollama-style without a key, Azure) and a generic HTTP JSON endpoint, with their failures."""

import json
import math
import time
from decimal import Decimal

import pytest

from apps.connectors.clients.errors import ModelCallError
from apps.connectors.clients.model_endpoints import (
    BACKOFF_CAP_S,
    RETRY_AFTER_LIMIT_S,
    ModelRateLimited,
    ModelTimeout,
    call_model,
    retry_delay,
)
from apps.connectors.clients.openai_compat import DEFAULT_SYSTEM_PROMPT
from apps.connectors.models import Connector
from standins.model_http import model_http_standin
from standins.openai import DEFAULT_MODELS, openai_standin
from standins.server import Response, StandIn

RECORD = {"account_id": "ACC-0001", "name": "Acme", "logins_30d": 3, "arr": 12000.0}


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]


# One stand-in of each kind for the module (stopping one takes half a second), fresh state and log per test.
@pytest.fixture(scope="module")
def llm_server():
    with openai_standin() as standin:
        yield standin


@pytest.fixture(scope="module")
def azure_server():
    with openai_standin(azure=True, api_key="azure-key-123") as standin:
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
def azure(azure_server):
    return _fresh(azure_server, api_key="azure-key-123", models=list(DEFAULT_MODELS))


@pytest.fixture
def scorer(scorer_server):
    return _fresh(scorer_server, token="t0k")


def _connector(kind, config, secrets=None):
    # Unsaved on purpose: an adapter needs the config and the decrypted secrets, not a database row.
    connector = Connector(name="Endpoint under test", kind=kind, config=config)
    if secrets:
        connector.set_secrets(secrets)
    return connector


def _openai(llm, **config):
    return _connector(
        "model_openai",
        {"base_url": llm.url + "/v1", "model": "gpt-4o-mini", **config},
        {"api_key": "sk-standin-key"},
    )


def test_openai_call_sends_the_chat_request_and_reads_answer_tokens_and_cost(llm):
    connector = _openai(
        llm,
        prompt_template="Account {name} logged in {logins_30d} times; ARR {arr:,.0f}.",
        price_per_1k_input_tokens="0.15",
        price_per_1k_output_tokens="0.60",
    )
    result = call_model(connector, records=[RECORD], timeout=1.0)
    (sent,) = llm.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-standin-key"
    body = sent.json
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.0 and body["max_tokens"] == 512
    assert body["messages"] == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "Account Acme logged in 3 times; ARR 12,000."},
    ]
    assert result.output == {"text": "Suggested next step, based on: Account Acme logged in 3 times; ARR 12,000."}
    assert result.confidence == 0.82 and result.proposed_action == {"type": "crm_task", "discount_pct": 0}
    # The stand-in counts a token per word: the prompt's words in, the answer's words out.
    assert result.tokens_in == len(DEFAULT_SYSTEM_PROMPT.split()) + 8
    assert result.tokens_out > 0
    expected = Decimal("0.15") * result.tokens_in / 1000 + Decimal("0.60") * result.tokens_out / 1000
    assert result.cost == expected and result.cost > 0
    assert 0 < result.latency_ms < 1000


def test_default_prompt_lists_the_record_and_a_system_prompt_can_be_set(llm):
    call_model(_openai(llm, system_prompt="Be brief."), records=[RECORD], timeout=1.0)
    system, user = llm.requests[0].json["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    assert user["content"] == "Record:\naccount_id: ACC-0001\nname: Acme\nlogins_30d: 3\narr: 12000.0"


def test_a_plain_text_answer_has_no_confidence_unless_logprobs_are_asked_for(llm):
    llm.state["content"] = "Call the sponsor this week."
    plain = call_model(_openai(llm), records=[RECORD], timeout=1.0)
    with_logprobs = call_model(_openai(llm, logprobs=True), records=[RECORD], timeout=1.0)
    assert plain.output == {"text": "Call the sponsor this week."} and plain.proposed_action == {}
    assert plain.confidence is None  # never invented: the policy sees it as no confidence
    assert "logprobs" not in llm.requests[0].json and llm.requests[1].json["logprobs"] is True
    assert with_logprobs.confidence == round(math.exp(-0.1), 4)


def test_a_fenced_json_answer_is_read_as_json(llm):
    llm.state["content"] = '```json\n{"text": "Offer a QBR.", "confidence": 0.6, "segment": "smb"}\n```'
    result = call_model(_openai(llm), records=[RECORD], timeout=1.0)
    assert result.output == {"text": "Offer a QBR.", "segment": "smb"} and result.confidence == 0.6


def test_an_endpoint_without_a_key_gets_no_authorization_header_ollama_style(llm):
    llm.state["api_key"] = None  # a local Ollama accepts any caller
    connector = _connector("model_openai", {"base_url": llm.url, "model": "llama3.1"})
    result = call_model(connector, records=[RECORD], timeout=1.0)
    (sent,) = llm.requests
    assert sent.path == "/chat/completions" and "authorization" not in sent.headers
    assert result.output["text"].startswith("Suggested next step")


def test_azure_style_authenticates_with_api_key_header_and_names_the_api_version(azure):
    config = {"base_url": azure.url + "/openai/deployments/gpt4o-prod", "api_style": "azure"}
    default = call_model(_connector("model_openai", config, {"api_key": "azure-key-123"}), records=[RECORD], timeout=1)
    pinned = _connector("model_openai", {**config, "api_version": "2024-10-21"}, {"api_key": "azure-key-123"})
    call_model(pinned, records=[RECORD], timeout=1.0)
    wrong = _connector("model_openai", config, {"api_key": "not-the-key"})
    with pytest.raises(ModelCallError, match="refused the credentials \\(401\\).*Access denied") as refused:
        call_model(wrong, records=[RECORD], timeout=1.0)
    first, second, _ = azure.requests
    assert first.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert first.headers["api-key"] == "azure-key-123" and "authorization" not in first.headers
    assert first.query == {"api-version": "2024-06-01"} and second.query == {"api-version": "2024-10-21"}
    assert default.tokens_in > 0 and refused.value.permanent


def test_a_prompt_template_field_the_record_lacks_is_named_before_any_call(llm):
    with pytest.raises(ModelCallError, match="uses \\{region\\}, but the record has no field 'region'") as exc:
        call_model(_openai(llm, prompt_template="Region: {region}"), records=[RECORD], timeout=1.0)
    assert exc.value.permanent and "account_id, name, logins_30d, arr" in str(exc.value)
    with pytest.raises(ModelCallError, match="must be a record field's name"):
        call_model(_openai(llm, prompt_template="{name.__class__}"), records=[RECORD], timeout=1.0)
    with pytest.raises(ModelCallError, match="cannot be applied"):
        call_model(_openai(llm, prompt_template="Unclosed {name"), records=[RECORD], timeout=1.0)
    assert llm.requests == []


def test_a_wrong_key_is_a_permanent_error_with_the_endpoints_message(llm):
    llm.state["api_key"] = "sk-the-real-key"
    with pytest.raises(ModelCallError) as exc:
        call_model(_openai(llm), records=[RECORD], timeout=1.0)
    assert exc.value.permanent and not isinstance(exc.value, ModelRateLimited)
    message = str(exc.value)
    assert "Model endpoint Endpoint under test refused the credentials (401)" in message
    assert "Incorrect API key provided" in message and "sk-standin-key" not in message


def test_an_unknown_model_is_a_permanent_error(llm):
    with pytest.raises(ModelCallError, match="answered 404.*model_not_found") as exc:
        call_model(_openai(llm, model="gpt-9"), records=[RECORD], timeout=1.0)
    assert exc.value.permanent


def test_a_malformed_answer_is_a_transient_error(llm):
    llm.fail_next("malformed")
    with pytest.raises(ModelCallError, match="malformed response \\(expected JSON, got text/html\\)") as exc:
        call_model(_openai(llm), records=[RECORD], timeout=1.0)
    assert not exc.value.permanent


def test_json_without_choices_is_not_an_openai_compatible_api():
    def not_openai(standin, request):
        return Response(200, {"result": "ok"})

    with StandIn([("POST", r"/v1/chat/completions", not_openai)]) as other:
        connector = _connector("model_openai", {"base_url": other.url + "/v1", "model": "m"})
        with pytest.raises(ModelCallError, match="answered without choices; is the base URL") as exc:
            call_model(connector, records=[RECORD], timeout=1.0)
    assert exc.value.permanent


def test_a_rate_limit_is_raised_with_its_retry_after_and_not_waited_out_inside_the_call(llm):
    llm.fail_next("ratelimit", retry_after=2)
    started = time.monotonic()
    with pytest.raises(ModelRateLimited, match="429") as exc:
        call_model(_openai(llm), records=[RECORD], timeout=1.0)
    assert time.monotonic() - started < 1.0  # the retry loop is the caller's
    assert exc.value.retry_after == 2 and not exc.value.permanent
    assert len(llm.requests) == 1


def test_no_answer_within_the_timeout_is_a_model_timeout(llm):
    llm.fail_next("slow", seconds=1.0)
    started = time.monotonic()
    with pytest.raises(ModelTimeout, match="did not answer within 0.3s") as exc:
        call_model(_openai(llm), records=[RECORD], timeout=0.3)
    assert time.monotonic() - started < 0.9 and not exc.value.permanent


def test_a_private_address_is_refused_unless_allow_listed(llm, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    with pytest.raises(ModelCallError, match="resolves to a private address") as exc:
        call_model(_openai(llm), records=[RECORD], timeout=1.0)
    assert exc.value.permanent and llm.requests == []


def test_a_bad_price_fails_before_the_call_is_paid_for(llm):
    with pytest.raises(ModelCallError, match="price_per_1k_output_tokens is not a price: 'cheap'"):
        call_model(_openai(llm, price_per_1k_output_tokens="cheap"), records=[RECORD], timeout=1.0)
    assert llm.requests == []


def _scorer_connector(standin, **config):
    return _connector(
        "model_http",
        {
            "url": standin.url + "/predict",
            "output_path": "$.prediction.text",
            "confidence_path": "$.prediction.confidence",
            "cost_per_call": "0.002",
            **config,
        },
        {"token": "t0k"},
    )


def test_generic_http_json_reads_text_and_confidence_at_their_paths(scorer):
    scorer.state["confidence"] = 0.91
    result = call_model(_scorer_connector(scorer), records=[RECORD, {"account_id": "ACC-0001-b"}], timeout=1.0)
    (sent,) = scorer.requests
    assert sent.headers["authorization"] == "Bearer t0k"
    assert sent.json == {"records": [RECORD, {"account_id": "ACC-0001-b"}]}
    assert result.output == {"text": "Prediction for ACC-0001: likely to renew"}
    assert result.confidence == 0.91 and result.cost == Decimal("0.002") and result.latency_ms > 0


def test_generic_http_json_without_a_confidence_path_has_none(scorer):
    result = call_model(
        _scorer_connector(scorer, confidence_path="", output_path="$.prediction"), records=[RECORD], timeout=1
    )
    assert result.confidence is None
    assert json.loads(result.output["text"])["label"] == "renew"  # a non-text value is kept as JSON text


@pytest.mark.parametrize(
    ("config", "state", "message"),
    [
        ({"output_path": "$.answer.text"}, {}, "answered without a value at output_path '\\$.answer.text'"),
        ({"output_path": "$..[?("}, {}, "output_path '\\$..\\[\\?\\(' is not a JSON path"),
        ({}, {"confidence": "high"}, "confidence that is not a number from 0 to 1 at confidence_path: 'high'"),
        ({}, {"confidence": 7}, "confidence that is not a number from 0 to 1 at confidence_path: 7"),
    ],
)
def test_generic_http_json_answers_that_do_not_fit_the_paths_are_permanent_errors(scorer, config, state, message):
    scorer.state.update(state)
    with pytest.raises(ModelCallError, match=message) as exc:
        call_model(_scorer_connector(scorer, **config), records=[RECORD], timeout=1.0)
    assert exc.value.permanent


def test_generic_http_json_with_a_wrong_token_is_refused(scorer):
    scorer.state["token"] = "another"
    with pytest.raises(ModelCallError, match="refused the credentials \\(401\\)") as exc:
        call_model(_scorer_connector(scorer), records=[RECORD], timeout=1.0)
    assert exc.value.permanent


def test_retry_delay_backs_off_with_jitter_and_gives_up_where_retrying_cannot_help():
    transient = ModelCallError("reset")
    for attempt in range(1, 12):
        ceiling = min(BACKOFF_CAP_S, 0.1 * 2 ** (attempt - 1))
        delays = {retry_delay(transient, attempt) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
    assert retry_delay(ModelCallError("bad key", permanent=True), 1) is None
    assert retry_delay(ModelRateLimited("429", retry_after=1), 1) >= 1
    assert retry_delay(ModelRateLimited("429", retry_after=RETRY_AFTER_LIMIT_S + 1), 1) is None
