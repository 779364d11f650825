"""Model endpoint adapters: call one endpoint for one subject's context and say what it cost.

Every adapter returns a ModelResult; timeouts and retries are the caller's loop (workflows.pipeline),
so all endpoints behave the same under failure.
"""

import time
from dataclasses import dataclass, field
from decimal import Decimal

from .errors import ModelCallError
from .local_models import ChurnModel, ReplyRetriever


@dataclass
class ModelResult:
    output: dict
    confidence: float
    proposed_action: dict = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal("0")
    latency_ms: float = 0.0


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


def call_model(connector, *, records: list[dict], timeout: float) -> ModelResult:
    """Call `connector` (a model endpoint) on the subject's records; `timeout` bounds a remote call (seconds)."""
    if not records:
        raise ModelCallError("No context records for the subject")
    started = time.perf_counter()
    config = connector.config
    kind = connector.kind
    try:
        if kind == "model_sklearn":
            record = records[0]
            probability, drivers = ChurnModel.load(config["artifact"]).predict(record)
            text, action = _retention_advice(record, probability, drivers)
            result = ModelResult(
                output={"text": text, "score": round(probability, 4), "drivers": drivers},
                confidence=round(max(probability, 1 - probability), 4),
                proposed_action=action,
            )
        elif kind == "model_retrieval":
            record = records[0]
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
        else:
            raise ModelCallError(f"{connector.name} is not a model endpoint")
    except (OSError, KeyError, ValueError) as exc:
        raise ModelCallError(f"{connector.name}: {exc}") from exc
    result.latency_ms = (time.perf_counter() - started) * 1000
    price_per_1k = Decimal(str(config.get("price_per_1k_tokens", "0")))
    result.cost = (
        Decimal(str(config.get("cost_per_call", "0"))) + price_per_1k * (result.tokens_in + result.tokens_out) / 1000
    )
    return result
