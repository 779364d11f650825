"""Model endpoint adapters: call one endpoint for one subject's context and say what it cost.

Kinds: model_openai (any OpenAI-compatible chat endpoint: OpenAI, Azure OpenAI, vLLM, Ollama), model_http
(a generic HTTP JSON endpoint), model_sklearn and model_retrieval (local joblib files).

One call here is one attempt: a remote call is bounded by `timeout` and never retried inside. The retry
loop (backoff with jitter, short Retry-After honoured, permanent errors not retried) and the fallback
endpoint are the caller's (workflows.services._call_with_fallback, with `retry_delay`), so every kind
behaves the same under failure.

`confidence` is None when the endpoint gave none (a plain-text chat answer without logprobs): it is never
invented. The policy then sees 0 (apps.policies.evaluation), so a confidence floor sends the output to review.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import requests
from jsonpath_ng.ext import parse as jsonpath_parse

from . import http, openai_compat
from .errors import ConnectorError, ModelCallError
from .local_models import ChurnModel, ReplyRetriever

RETRY_AFTER_LIMIT_S = 5.0  # a 429 asking for a longer wait moves on to the fallback instead of holding the run
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
PRICE_SETTINGS = ("cost_per_call", "price_per_1k_tokens", "price_per_1k_input_tokens", "price_per_1k_output_tokens")


class ModelTimeout(ModelCallError):
    """The endpoint did not answer within the use case's timeout."""


class ModelRateLimited(ModelCallError):
    """The endpoint said 429; `retry_after` is the wait it asked for, in seconds."""

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class ModelResult:
    output: dict
    confidence: float | None
    proposed_action: dict = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal("0")
    latency_ms: float = 0.0


def retry_delay(error: ModelCallError, attempt: int) -> float | None:
    """Seconds to wait before calling the same endpoint again after its `attempt`-th failure (1-based), or
    None when another attempt cannot help: a permanent error (credentials, a 4xx, configuration) or a rate
    limit asking for more than RETRY_AFTER_LIMIT_S."""
    if error.permanent:
        return None
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
    backoff = ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter: runs that failed together retry apart
    if isinstance(error, ModelRateLimited):
        return None if error.retry_after > RETRY_AFTER_LIMIT_S else max(error.retry_after, backoff)
    return backoff


# --- HTTP -------------------------------------------------------------------------------------------------

_sessions = threading.local()


def _session(connector) -> requests.Session:
    """The guarded session of this connector in this thread: calls reuse its open connection (keep-alive),
    which is most of the cost of calling a fast endpoint. Every new connection still passes the SSRF check."""
    if connector.pk is None:
        return http.session()
    by_connector = _sessions.__dict__.setdefault("by_connector", {})
    if connector.pk not in by_connector:
        by_connector[connector.pk] = http.session()
    return by_connector[connector.pk]


def _post(connector, url: str, *, timeout: float, **kwargs) -> tuple[dict | list, float]:
    """One POST with no retry inside; returns the JSON answer and the milliseconds the HTTP call took."""
    system = f"Model endpoint {connector.name}"
    started = time.perf_counter()
    try:
        response = http.request(
            _session(connector),
            "POST",
            url,
            system=system,
            timeout=(min(3.05, timeout), timeout),
            attempts=1,
            **kwargs,
        )
        latency_ms = (time.perf_counter() - started) * 1000
        return http.json_body(response, system=system), latency_ms
    except http.RateLimited as exc:
        raise ModelRateLimited(str(exc), retry_after=exc.retry_after) from exc
    except ConnectorError as exc:
        error = ModelTimeout if isinstance(exc.__cause__, requests.Timeout) else ModelCallError
        raise error(str(exc), permanent=exc.permanent) from exc


def _call_openai(connector, records: list[dict], timeout: float) -> ModelResult:
    try:
        chat = openai_compat.chat_request(connector.config, connector.secrets, records)
    except ModelCallError as exc:
        raise ModelCallError(f"{connector.name}: {exc}", permanent=exc.permanent) from exc
    body, latency_ms = _post(
        connector,
        chat.url,
        timeout=timeout,
        params=chat.params,
        headers=chat.headers,
        data=json.dumps(chat.body),
    )
    try:
        answer = openai_compat.chat_answer(body)
    except ModelCallError as exc:
        raise ModelCallError(f"Model endpoint {connector.name} {exc}", permanent=exc.permanent) from exc
    return ModelResult(
        output=answer.output,
        confidence=answer.confidence,
        proposed_action=answer.action,
        tokens_in=answer.tokens_in,
        tokens_out=answer.tokens_out,
        latency_ms=latency_ms,
    )


@lru_cache(maxsize=256)
def _jsonpath(path: str):
    return jsonpath_parse(path)


def _value_at(connector, setting: str, body, *, required: bool):
    path = (connector.config.get(setting) or "").strip()
    if not path:
        if required:
            raise ModelCallError(f"{connector.name}: no {setting} configured", permanent=True)
        return None
    try:
        expression = _jsonpath(path)
    except Exception as exc:  # noqa: BLE001 - jsonpath-ng raises its own errors and bare Exception on bad syntax
        raise ModelCallError(f"{connector.name}: {setting} {path!r} is not a JSON path: {exc}", permanent=True) from exc
    matches = expression.find(body)
    if not matches:
        if required:
            raise ModelCallError(
                f"Model endpoint {connector.name} answered without a value at {setting} {path!r}", permanent=True
            )
        return None
    return matches[0].value


def _call_http_json(connector, records: list[dict], timeout: float) -> ModelResult:
    """POST {"records": [...]} to the endpoint; the text and the confidence are read at their JSON paths."""
    url = connector.config.get("url")
    if not url:
        raise ModelCallError(f"{connector.name}: no endpoint URL configured (config.url)", permanent=True)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token := connector.secrets.get("token"):
        headers["Authorization"] = f"Bearer {token}"
    body, latency_ms = _post(
        connector, url, timeout=timeout, headers=headers, data=json.dumps({"records": records}, default=str)
    )
    text = _value_at(connector, "output_path", body, required=True)
    raw = _value_at(connector, "confidence_path", body, required=False)
    confidence = None
    if raw is not None:
        try:
            confidence = None if isinstance(raw, bool) else float(raw)
        except (TypeError, ValueError):
            pass
        if confidence is None or not 0 <= confidence <= 1:  # also refuses NaN
            raise ModelCallError(
                f"Model endpoint {connector.name} answered a confidence that is not a number from 0 to 1 "
                f"at confidence_path: {raw!r}",
                permanent=True,
            )
    return ModelResult(
        output={"text": text if isinstance(text, str) else json.dumps(text, default=str)},
        confidence=confidence,
        latency_ms=latency_ms,
    )


# --- local models -----------------------------------------------------------------------------------------


def _retention_advice(record: dict, probability: float, drivers: dict) -> tuple[str, dict]:
    """Turn a churn probability into the text and action a CRM user can act on."""
    discount = 20 if probability >= 0.85 else 10 if probability >= 0.6 else 0
    top = sorted(drivers.items(), key=lambda kv: kv[1], reverse=True)[:2]
    reasons = ", ".join(f"{name.replace('_', ' ')} ({record.get(name)})" for name, _ in top)
    if probability >= 0.6:
        step = "schedule an executive check-in this week"
        step += f" and offer a {discount}% renewal discount" if discount else ""
    elif probability >= 0.35:
        step = "have the account owner review adoption with the customer"
    else:
        step = "no action needed; keep the regular cadence"
    name = record.get("name", "this account")
    text = f"Churn risk {probability:.0%} for {name}. Main drivers: {reasons}. Suggested: {step}."
    return text, {"type": "crm_task", "discount_pct": discount}


def _call_local(connector, records: list[dict]) -> ModelResult:
    started = time.perf_counter()
    config = connector.config
    record = records[0]
    try:
        if connector.kind == "model_sklearn":
            probability, drivers = ChurnModel.load(config["artifact"]).predict(record)
            text, action = _retention_advice(record, probability, drivers)
            result = ModelResult(
                output={"text": text, "score": round(probability, 4), "drivers": drivers},
                confidence=round(max(probability, 1 - probability), 4),
                proposed_action=action,
            )
        else:
            query = f"{record.get('subject', '')} {record.get('body', '')}".strip()
            suggestion = ReplyRetriever.load(config["artifact"]).suggest(query)
            result = ModelResult(
                output={
                    "text": suggestion["reply"],
                    "article_id": suggestion["article_id"],
                    "article_title": suggestion["title"],
                },
                confidence=round(float(suggestion["similarity"]), 4),
                proposed_action={"type": "ticket_reply"},
                tokens_in=len(query.split()),
                tokens_out=len(suggestion["reply"].split()),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ModelCallError(f"{connector.name}: {exc}") from exc
    result.latency_ms = (time.perf_counter() - started) * 1000
    return result


# --- the call ---------------------------------------------------------------------------------------------


def _prices(connector) -> dict[str, Decimal]:
    prices = {}
    for name in PRICE_SETTINGS:
        value = connector.config.get(name)
        try:
            price = Decimal(str(value)) if value not in (None, "") else Decimal("0")
        except InvalidOperation:
            price = Decimal("-1")
        if not price.is_finite() or price < 0:
            raise ModelCallError(f"{connector.name}: the setting {name} is not a price: {value!r}", permanent=True)
        prices[name] = price
    return prices


def call_model(connector, *, records: list[dict], timeout: float) -> ModelResult:
    """Call `connector` (a model endpoint) on the subject's records; `timeout` bounds a remote call (seconds).
    The cost is cost_per_call plus the tokens at their price per 1k (input and output priced apart for
    chat endpoints); the latency is that of the HTTP call, or of the prediction for a local model."""
    if not records:
        raise ModelCallError("No context records for the subject", permanent=True)
    prices = _prices(connector)  # a bad price fails before a call is paid for
    if connector.kind == "model_openai":
        result = _call_openai(connector, records, timeout)
    elif connector.kind == "model_http":
        result = _call_http_json(connector, records, timeout)
    elif connector.kind in ("model_sklearn", "model_retrieval"):
        result = _call_local(connector, records)
    else:
        raise ModelCallError(f"{connector.name} is not a model endpoint", permanent=True)
    result.cost = (
        prices["cost_per_call"]
        + prices["price_per_1k_tokens"] * (result.tokens_in + result.tokens_out) / 1000
        + prices["price_per_1k_input_tokens"] * result.tokens_in / 1000
        + prices["price_per_1k_output_tokens"] * result.tokens_out / 1000
    )
    return result
