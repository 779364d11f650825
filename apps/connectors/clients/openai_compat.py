"""The OpenAI chat-completions protocol as OpenAI, Azure OpenAI, vLLM, Ollama and LiteLLM serve it: the
request built from a subject's records, and what is read from the answer.

No I/O here: model_endpoints sends the request through the guarded session and measures it.
"""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import dataclass, field

from .errors import ModelCallError

DEFAULT_SYSTEM_PROMPT = (
    "You advise a business user about one record of their system of record. Answer with a JSON object only: "
    '{"text": your recommendation in plain words, "confidence": how sure you are, from 0 to 1, '
    '"action": an object naming the proposed action, e.g. {"type": "crm_task"}}.'
)
DEFAULT_AZURE_API_VERSION = "2024-06-01"
DEFAULT_MAX_TOKENS = 512  # bounds the cost of one call when the integrator set no limit
_FENCE = re.compile(r"\A```(?:json)?\s*(.*?)\s*```\Z", re.DOTALL)


@dataclass(frozen=True)
class ChatRequest:
    url: str
    headers: dict
    params: dict
    body: dict


@dataclass
class ChatAnswer:
    output: dict
    confidence: float | None
    action: dict = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0


class _RecordFormatter(string.Formatter):
    """str.format over one record's fields, by name only. `{arr}` and `{arr:,.0f}` work; `{0}`, `{a.b}` and
    `{a[0]}` are refused, since attribute access in an integrator-written template reaches Python objects."""

    def __init__(self, record: dict):
        self.record = record

    def get_field(self, field_name, args, kwargs):
        if field_name.isdigit() or any(c in field_name for c in ".[]"):
            raise ModelCallError(
                f"The prompt template's placeholder {{{field_name}}} must be a record field's name, e.g. {{name}}",
                permanent=True,
            )
        if field_name not in self.record:
            raise ModelCallError(
                f"The prompt template uses {{{field_name}}}, but the record has no field {field_name!r} "
                f"(its fields: {', '.join(map(str, self.record)) or 'none'})",
                permanent=True,
            )
        return self.record[field_name], field_name


def user_prompt(template: str, record: dict) -> str:
    """The user message: the integrator's template over the record, or the record's fields one per line."""
    if not template:
        return "Record:\n" + "\n".join(f"{name}: {value}" for name, value in record.items())
    try:
        return _RecordFormatter(record).format(template)
    except (ValueError, TypeError) as exc:  # unbalanced braces, a format spec that does not fit the value
        raise ModelCallError(f"The prompt template cannot be applied to the record: {exc}", permanent=True) from exc


def _number(config: dict, name: str, default, kind):
    value = config.get(name)
    if value in (None, ""):
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ModelCallError(f"The setting {name} is not a number: {value!r}", permanent=True) from None


def _flag(value) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def chat_request(config: dict, secrets: dict, records: list[dict]) -> ChatRequest:
    """POST {base_url}/chat/completions with a system and a user message built from the first record.
    Azure style authenticates with `api-key` and names the API version in the query; OpenAI style sends a
    Bearer key, or nothing when there is none (a local Ollama or vLLM)."""
    base_url = (config.get("base_url") or "").rstrip("/")
    if not base_url:
        raise ModelCallError("No base URL configured (config.base_url)", permanent=True)
    azure = config.get("api_style") == "azure"
    if not config.get("model") and not azure:  # Azure names the deployment in the URL instead
        raise ModelCallError("No model configured (config.model)", permanent=True)
    body = {
        "model": config.get("model") or "",
        "messages": [
            {"role": "system", "content": config.get("system_prompt") or DEFAULT_SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(config.get("prompt_template") or "", records[0])},
        ],
        "temperature": _number(config, "temperature", 0.0, float),  # governed outputs: as repeatable as it gets
        "max_tokens": _number(config, "max_tokens", DEFAULT_MAX_TOKENS, int),
    }
    if _flag(config.get("logprobs")):
        body["logprobs"] = True
    headers, params = {"Content-Type": "application/json", "Accept": "application/json"}, {}
    api_key = secrets.get("api_key")
    if azure:
        params["api-version"] = config.get("api_version") or DEFAULT_AZURE_API_VERSION
        if api_key:
            headers["api-key"] = api_key
    elif api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return ChatRequest(url=f"{base_url}/chat/completions", headers=headers, params=params, body=body)


def _tokens(value) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _probability(value) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None


def _logprob_confidence(choice: dict) -> float | None:
    """The geometric mean of the answer's token probabilities, when the endpoint returned logprobs."""
    tokens = (choice.get("logprobs") or {}).get("content") or []
    values = [t["logprob"] for t in tokens if isinstance(t, dict) and isinstance(t.get("logprob"), int | float)]
    return round(math.exp(sum(values) / len(values)), 4) if values else None


def chat_answer(body) -> ChatAnswer:
    """Read choices[0].message.content and usage. A JSON answer with `text` gives the output, and its
    `confidence` and `action` when present; any other answer is the output text. The confidence is never
    invented: without one from the answer or from logprobs it is None."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = body.get("error") if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else error
        raise ModelCallError(
            "answered without choices; is the base URL an OpenAI-compatible API?"
            + (f" It said: {detail}" if detail else ""),
            permanent=True,
        )
    choice = choices[0]
    content = (choice.get("message") or {}).get("content")
    if not isinstance(content, str) or not content.strip():
        raise ModelCallError(f"answered no text (finish reason: {choice.get('finish_reason')})", permanent=True)
    usage = body.get("usage") or {}
    answer = ChatAnswer(
        output={"text": content},
        confidence=None,
        tokens_in=_tokens(usage.get("prompt_tokens")),
        tokens_out=_tokens(usage.get("completion_tokens")),
    )
    stripped = content.strip()
    fenced = _FENCE.match(stripped)
    try:
        parsed = json.loads(fenced.group(1) if fenced else stripped)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("text"), str):
        answer.output = {k: v for k, v in parsed.items() if k not in ("confidence", "action")}
        answer.confidence = _probability(parsed.get("confidence"))
        answer.action = parsed["action"] if isinstance(parsed.get("action"), dict) else {}
    if answer.confidence is None:
        answer.confidence = _logprob_confidence(choice)
    return answer
