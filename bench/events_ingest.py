"""Batch event ingest through the real HTTP stack: POST /api/v1/feedback with 1,000 lifecycle events per request
(shown, opened, accepted, acted on), behind gunicorn (config/gunicorn.py, 2 workers), on PostgreSQL.

Each event is checked like a single one (scope, run permission on its output's use case, status, idempotency
per event id) and appended to its output's hash chain. Two client threads, one per worker; consecutive
batches touch different outputs, as separate integrations would. The baseline is the same endpoint fed one
event per request (4 client threads), in the same run. The outcomes endpoint (POST /api/v1/outcomes, 1,000
per request) is measured too, for the record.

Prints `BENCH events_ingest_batch1000_throughput value=<events/s> baseline=<events/s one per request>
ratio=<r> target=>=5000/s ok|short`, and `BENCH outcomes_ingest_batch1000_throughput ... target=report`.

Runs inside bench/run.py (after the ingestion measures), or alone:
.venv/bin/python bench/events_ingest.py [--batches 100] [--outputs 4000], which recreates the bench database like
run.py does (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/doorstep_bench).
"""

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TARGET = 5000.0
BATCH = 1000
TYPES = ("shown", "opened", "accepted", "acted_on")
BUDGET_S = 30.0


def _outputs(n: int) -> list[int]:
    """`n` churn outputs the policy lets through (status delivering: the in-memory broker runs no worker)."""
    from apps.core.actors import Actor
    from apps.workflows.models import UseCase
    from apps.workflows.services import Draft, recommendation_submit

    use_case = UseCase.objects.get(slug="churn-risk")
    actor = Actor.for_system("bench")
    ids = []
    for start in range(0, n, 500):
        drafts = [
            Draft(
                subject_key=f"EVT-{i:06d}",
                content={"text": "Call the sponsor this week."},
                confidence=0.95,
                proposed_action={"type": "crm_task", "discount_pct": 0},
            )
            for i in range(start, min(n, start + 500))
        ]
        ids += [r.pk for r in recommendation_submit(actor=actor, use_case=use_case, drafts=drafts)]
    return ids


def _expect_events(status: int, data: bytes) -> int:
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
    body = json.loads(data)
    if body["failed"] or any(r["status"] != "created" for r in body["results"]):
        raise RuntimeError(f"not all created: {data[:300]!r}")
    return body["accepted"]


def measure(key: str, *, batches: int = 100, outputs: int = 4000, singles: int = 1500) -> dict:
    from bench import run as bench_run

    ids = _outputs(outputs)
    counter = itertools.count()

    def event(rec_id: int) -> dict:
        n = next(counter)
        return {"event_id": f"bench-{n}", "recommendation_id": rec_id, "type": TYPES[n % len(TYPES)]}

    def batch_bodies(count: int) -> list[bytes]:
        bodies, offset = [], 0
        for _ in range(count):
            chunk = [ids[(offset + i) % len(ids)] for i in range(BATCH)]
            offset += BATCH
            bodies.append(json.dumps({"events": [event(rec_id) for rec_id in chunk]}).encode())
        return bodies

    outcome_bodies = [
        json.dumps(
            {
                "outcomes": [
                    {
                        "event_id": f"out-{b}-{i}",
                        "use_case": "churn-risk",
                        "subject": f"EVT-{(b * BATCH + i) % outputs:06d}",
                        "kind": "renewal_won" if i % 3 else "renewal_lost",
                        "value": "1200.00",
                        "occurred_at": "2026-03-02T10:00:00Z",
                    }
                    for i in range(BATCH)
                ]
            }
        ).encode()
        for b in range(max(4, batches // 4))
    ]
    single_bodies = [json.dumps({"events": [event(ids[i % len(ids)])]}).encode() for i in range(singles)]
    warm = batch_bodies(2)
    measured = batch_bodies(batches)

    with tempfile.TemporaryDirectory(prefix="doorstep-bench-events-") as tmp:
        port = bench_run.free_port()
        proc, _ = bench_run.start_gunicorn(port, Path(tmp))
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        try:
            bench_run.load(port, "/api/v1/feedback", warm, headers, 2, _expect_events, 20)
            batch = bench_run.load(port, "/api/v1/feedback", measured, headers, 2, _expect_events, BUDGET_S)
            single = bench_run.load(port, "/api/v1/feedback", single_bodies, headers, 4, _expect_events, 15)
            outcomes = bench_run.load(port, "/api/v1/outcomes", outcome_bodies, headers, 2, _expect_events, 15)
        finally:
            bench_run.stop_gunicorn(proc)
    return {"batch": batch, "single": single, "outcomes": outcomes}


def report(stats: dict, line) -> None:
    for label, result in stats.items():
        print(
            f"# events {label}: {result.items} items, {len(result.latencies)} requests in {result.elapsed:.2f}s, "
            f"p50 {result.quantile_ms(0.5):.1f}ms p95 {result.quantile_ms(0.95):.1f}ms, errors {result.errors}",
            file=sys.stderr,
        )
        if result.first_error:
            print(f"#   first error: {result.first_error}", file=sys.stderr)
    batch, single, outcomes = stats["batch"], stats["single"], stats["outcomes"]
    clean = not (batch.errors or single.errors)
    value = batch.throughput
    line(
        f"events_ingest_batch{BATCH}_throughput",
        value,
        single.throughput,
        "/s",
        f">={TARGET:.0f}/s",
        clean and value >= TARGET,
    )
    line(
        f"outcomes_ingest_batch{BATCH}_throughput",
        outcomes.throughput,
        single.throughput,
        "/s",
        "report",
        None,
    )


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench import run as bench_run  # sets the bench settings and the in-memory broker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100, help="batches of 1,000 events (default 100)")
    parser.add_argument("--outputs", type=int, default=4000, help="outputs the events are spread over")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-") as tmp:
        bench_run.recreate_database()
        setup = bench_run.prepare(Path(tmp))
        report(measure(setup["key"], batches=args.batches, outputs=args.outputs), bench_run.line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
