"""An OpenAI-compatible chat-completions server, the shape OpenAI, vLLM, Ollama and Azure OpenAI serve.

with openai_standin(api_key="sk-test") as llm:     # base URL: llm.url + "/v1" (or llm.url, as Ollama allows)
    llm.state["content"] = "Call the sponsor."     # optional: a fixed answer instead of the default JSON one
    llm.fail_next("ratelimit", retry_after=1)      # auth and ratelimit faults answer in OpenAI's error shape

Routes: POST /v1/chat/completions and /chat/completions, GET /v1/models and /models; with `azure=True`,
POST /openai/deployments/<deployment>/chat/completions?api-version=… authenticated by an `api-key` header.
The answer is built from the prompt, so it is deterministic: by default a JSON object {"text", "confidence",
"action"} whose text quotes the start of the user message. `usage` counts one token per whitespace-separated
word (an approximation of a tokenizer, good enough for cost arithmetic); `max_tokens` truncates the answer with
finish_reason "length"; `logprobs: true` returns a logprob per token (state["logprob"], default -0.1).
"""

from __future__ import annotations

import itertools
import json
import time

from .server import Request, Response, StandIn

DEFAULT_MODELS = ("gpt-4o-mini", "llama3.1")
_ids = itertools.count(1)


def _openai_error(status: int, message: str, *, type_: str, code: str | None, headers=None) -> Response:
    return Response(status, {"error": {"message": message, "type": type_, "param": None, "code": code}}, headers or {})


def _azure_error(status: int, message: str) -> Response:
    return Response(status, {"error": {"code": str(status), "message": message}})


def _masked(key: str) -> str:
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "***"


class OpenAIStandIn(StandIn):
    def __init__(self, routes, *, azure: bool, **kwargs):
        super().__init__(routes, **kwargs)
        self.azure = azure

    def _dispatch(self, request: Request) -> Response:
        # Auth and rate-limit faults answer as the real service does; the others (slow, malformed, unavailable)
        # are what a proxy in front of it shows, so the generic server's answers fit.
        with self._lock:
            fault = self._faults[0] if self._faults and self._faults[0][0] in ("auth", "ratelimit") else None
            if fault is not None:
                self._faults.pop(0)
        if fault is None:
            return super()._dispatch(request)
        kind, options = fault
        if kind == "auth":
            return self._unauthorized("sk-revoked")
        retry_after = str(options.get("retry_after", 1))
        if self.azure:
            return Response(
                429,
                {
                    "error": {
                        "code": "429",
                        "message": "Requests to the ChatCompletions_Create Operation have exceeded the call rate "
                        f"limit of your current pricing tier. Please retry after {retry_after} seconds.",
                    }
                },
                {"Retry-After": retry_after},
            )
        return _openai_error(
            429,
            "Rate limit reached for requests per min (RPM) in organization org-standin: Limit 3, Used 3, "
            f"Requested 1. Please try again in {retry_after}s.",
            type_="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": retry_after},
        )

    def _unauthorized(self, given: str | None) -> Response:
        if self.azure:
            return _azure_error(
                401,
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource.",
            )
        if not given:
            message = "You didn't provide an API key. You need to provide your API key in an Authorization header."
            return _openai_error(401, message, type_="invalid_request_error", code=None)
        return _openai_error(
            401,
            f"Incorrect API key provided: {_masked(given)}. You can find your API key in your account settings.",
            type_="invalid_request_error",
            code="invalid_api_key",
        )

    def refuse(self, request: Request) -> Response | None:
        """The error answer for a request with the wrong credentials, or None when they are right."""
        expected = self.state["api_key"]
        if self.azure:
            given = request.headers.get("api-key")
        else:
            header = request.headers.get("authorization", "")
            given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        if expected is None or given == expected:
            return None
        return self._unauthorized(given)


def _content(standin: OpenAIStandIn, prompt: str) -> str:
    if "content" in standin.state:
        return standin.state["content"]
    quoted = " ".join(prompt.split()[:12])
    return json.dumps(
        {
            "text": f"Suggested next step, based on: {quoted}",
            "confidence": standin.state.get("confidence", 0.82),
            "action": {"type": "crm_task", "discount_pct": 0},
        }
    )


def _complete(standin: OpenAIStandIn, request: Request) -> Response:
    refused = standin.refuse(request)
    if refused is not None:
        return refused
    if standin.azure and not request.query.get("api-version"):
        return _azure_error(404, "Resource not found")
    try:
        body = request.json
        messages = body["messages"]
        prompt = "\n".join(m["content"] for m in messages if m["role"] in ("system", "user"))
    except (ValueError, KeyError, TypeError):
        return _openai_error(
            400, "'messages' is a required property", type_="invalid_request_error", code="invalid_request_error"
        )
    model = request.params.get("deployment") or body.get("model")
    if not standin.azure and model not in standin.state["models"]:
        return _openai_error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            type_="invalid_request_error",
            code="model_not_found",
        )
    words = _content(standin, messages[-1]["content"]).split(" ")
    finish_reason = "stop"
    if isinstance(body.get("max_tokens"), int) and len(words) > body["max_tokens"]:
        words, finish_reason = words[: body["max_tokens"]], "length"
    content = " ".join(words)
    logprobs = None
    if body.get("logprobs"):
        logprob = standin.state.get("logprob", -0.1)
        logprobs = {"content": [{"token": w, "logprob": logprob, "top_logprobs": []} for w in content.split()]}
    prompt_tokens, completion_tokens = len(prompt.split()), len(content.split())
    return Response(
        200,
        {
            "id": f"chatcmpl-standin{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_standin",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": logprobs,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
    )


def _models(standin: OpenAIStandIn, request: Request) -> Response:
    refused = standin.refuse(request)
    if refused is not None:
        return refused
    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "standin"} for m in standin.state["models"]]
    return Response(200, {"object": "list", "data": data})


def openai_standin(
    *, api_key: str | None = "sk-standin-key", azure: bool = False, models=DEFAULT_MODELS, **options
) -> OpenAIStandIn:
    """An OpenAI-compatible endpoint (not started: use it as a context manager). `api_key` None accepts any
    caller, as a local Ollama does. `options` go to StandIn (e.g. slow_seconds)."""
    if azure:
        routes = [("POST", r"/openai/deployments/(?P<deployment>[^/]+)/chat/completions", _complete)]
    else:
        routes = [
            ("POST", r"(/v1)?/chat/completions", _complete),
            ("GET", r"(/v1)?/models", _models),
        ]
    standin = OpenAIStandIn(routes, azure=azure, **options)
    standin.state.update(api_key=api_key, models=list(models))
    return standin
