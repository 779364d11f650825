"""Model-endpoint call overhead: what Doorstep adds to each call of a model, against calling it directly.

Both sides call the same OpenAI-compatible stand-in (standins/openai.py, in a process of its own as a real
endpoint is) with the same request, one call each in turn so drift falls on both alike:

- direct: a plain keep-alive requests.Session POSTs the chat request body and parses the JSON answer;
- pipeline: a run's model step, workflows.services._call_with_fallback(use_case, records): the prompt built
  from the record's fields, the credentials decrypted, the guarded session (SSRF check on connect), the
  answer parsed, tokens priced, the connector's outcome recorded in the database, the duration metric observed.

A third series, the adapter alone (call_model: no database, no metric), is printed as a comment so the
overhead can be split between the client code and the per-call database write.

Prints `BENCH model_call_overhead_p50 value=<pipeline p50 - direct p50>ms baseline=<direct p50>ms
ratio=<pipeline p50 / direct p50> target=<=10ms ok|short` (and the same at p95, for the record).

Runs inside bench/run.py (on its PostgreSQL database, after the ingestion measures), or alone:
.venv/bin/python bench/model_overhead.py [--calls 300], which recreates the bench database like run.py does
(BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/doorstep_bench).
"""

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TARGET_MS = 10.0
PROMPT = (
    "Account {name} ({industry}, {region}): ARR {arr}, {seats} seats, {logins_30d} logins in 30 days, NPS {nps}, "
    "{late_payments_12m} late payments in 12 months. Propose one retention step."
)


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def _standin_process():
    """The stand-in's URL while it serves from a child process: in this one its thread would compete for the
    GIL with the calls being measured. It stops when its stdin closes."""
    code = (
        "import sys; from standins.openai import openai_standin; "
        "s = openai_standin().start(); print(s.url, flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        url = proc.stdout.readline().strip()
        if not url:
            raise RuntimeError(f"the stand-in did not start (exit code {proc.wait(timeout=10)})")
        yield url
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(churn_pk: int, calls: int = 300, warmup: int = 30) -> dict[str, float]:
    """Milliseconds at p50 and p95 of `calls` calls made directly, by the adapter alone and by the pipeline's
    model step (Django must be set up)."""
    import requests
    from django.test import override_settings

    from apps.connectors.clients import openai_compat
    from apps.connectors.clients.model_endpoints import call_model
    from apps.connectors.clients.registry import client_for
    from apps.connectors.models import Connector
    from apps.workflows.models import UseCase
    from apps.workflows.services import _call_with_fallback

    use_case = UseCase.objects.select_related("source_dataset__connector", "fallback_endpoint").get(pk=churn_pk)
    dataset = use_case.source_dataset
    records = client_for(dataset.connector).read_by_key(dataset.table, dataset.key_field, "ACC-0001")
    records = json.loads(json.dumps(records, default=str))  # as a run reads them from its stored snapshot

    with _standin_process() as url, override_settings(DOORSTEP_OUTBOUND_ALLOWLIST=["127.0.0.1"]):
        connector, _ = Connector.objects.update_or_create(
            name="Bench model endpoint (OpenAI stand-in)",
            defaults={
                "kind": Connector.Kind.MODEL_OPENAI,
                "config": {
                    "base_url": url + "/v1",
                    "model": "gpt-4o-mini",
                    "prompt_template": PROMPT,
                    "price_per_1k_input_tokens": "0.15",
                    "price_per_1k_output_tokens": "0.60",
                },
            },
        )
        connector.set_secrets({"api_key": "sk-standin-key"})
        connector.save()
        use_case.model_endpoint = connector  # in memory: the demo use case itself is left as it is

        chat = openai_compat.chat_request(connector.config, connector.secrets, records)
        body = json.dumps(chat.body)
        direct_session = requests.Session()

        def direct() -> None:
            response = direct_session.post(chat.url, data=body, headers=chat.headers, timeout=5)
            response.raise_for_status()
            response.json()

        def adapter() -> None:
            call_model(connector, records=records, timeout=use_case.model_timeout_seconds)

        def pipeline() -> None:
            _, endpoint, used_fallback, _, errors = _call_with_fallback(use_case, records)
            if endpoint != connector or used_fallback or errors:
                raise RuntimeError(f"the pipeline's call did not go straight to the stand-in: {errors}")

        for _ in range(warmup):
            direct()
            adapter()
            pipeline()
        # A run loads its endpoint with the health the warm-up recorded; a stale "unknown" here would make every
        # call re-check the health under a row lock, which a run does only when the health changes.
        connector.refresh_from_db()
        timings: dict[str, list[float]] = {"direct": [], "adapter": [], "pipeline": []}
        for _ in range(calls):
            for name, call in (("direct", direct), ("adapter", adapter), ("pipeline", pipeline)):
                started = time.perf_counter()
                call()
                timings[name].append((time.perf_counter() - started) * 1000)
        direct_session.close()
    return {
        f"{name}_{label}": _quantile(samples, q)
        for name, samples in timings.items()
        for label, q in (("p50", 0.5), ("p95", 0.95))
    }


def report(stats: dict[str, float], line) -> None:
    """The BENCH lines, through bench/run.py's `line`."""
    print(
        f"# model calls: direct p50 {stats['direct_p50']:.2f}ms p95 {stats['direct_p95']:.2f}ms; "
        f"adapter alone p50 {stats['adapter_p50']:.2f}ms p95 {stats['adapter_p95']:.2f}ms; "
        f"pipeline p50 {stats['pipeline_p50']:.2f}ms p95 {stats['pipeline_p95']:.2f}ms",
        file=sys.stderr,
    )
    added = stats["pipeline_p50"] - stats["direct_p50"]
    ratio = stats["pipeline_p50"] / stats["direct_p50"]
    line("model_call_overhead_p50", added, stats["direct_p50"], "ms", "<=10ms", added <= TARGET_MS, 2, ratio=ratio)
    added95 = stats["pipeline_p95"] - stats["direct_p95"]
    ratio95 = stats["pipeline_p95"] / stats["direct_p95"]
    line("model_call_overhead_p95", added95, stats["direct_p95"], "ms", "report", None, 2, ratio=ratio95)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench import run as bench_run  # sets the bench settings and the in-memory broker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="calls on each side (default 300)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-") as tmp:
        bench_run.recreate_database()
        setup = bench_run.prepare(Path(tmp))
        report(measure(setup["churn_pk"], args.calls), bench_run.line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
