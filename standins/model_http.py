"""A generic HTTP JSON model endpoint, the kind an internal team puts in front of its own model.

with model_http_standin(token="t0k") as scorer:       # POST scorer.url + "/predict" {"records": [...]}
    scorer.state["confidence"] = 0.91

It answers {"prediction": {"text", "confidence", "label"}, "model": {"name", "version"}, "records_seen"}; the
text names the first record's first field, so it is deterministic. A wrong or missing Bearer token (when
`token` is set) is a 401, a body without a non-empty "records" list a 422.
"""

from __future__ import annotations

from .server import Request, Response, StandIn


def _predict(standin: StandIn, request: Request) -> Response:
    token = standin.state["token"]
    if token is not None and request.headers.get("authorization") != f"Bearer {token}":
        return Response(401, {"detail": "Invalid or missing bearer token"})
    try:
        records = request.json["records"]
    except (ValueError, KeyError, TypeError):
        records = None
    if not isinstance(records, list) or not records or not isinstance(records[0], dict):
        return Response(422, {"detail": "'records' must be a non-empty list of objects"})
    first = records[0]
    subject = next(iter(first.values()), "the subject") if first else "the subject"
    confidence = standin.state.get("confidence", 0.73)
    return Response(
        200,
        {
            "prediction": {
                "text": f"Prediction for {subject}: likely to renew",
                "confidence": confidence,
                "label": "renew",
            },
            "model": {"name": "standin-scorer", "version": "1"},
            "records_seen": len(records),
        },
    )


def model_http_standin(*, token: str | None = None, **options) -> StandIn:
    """A generic JSON model endpoint at POST /predict (not started: use it as a context manager)."""
    standin = StandIn([("POST", r"/predict", _predict)], **options)
    standin.state["token"] = token
    return standin
