"""Ingestion benchmark on PostgreSQL, behind a real gunicorn (config/gunicorn.py: 2 workers × 4 threads),
side by side in one run:

- POST /api/v1/recommendations (policy evaluation, events, routing; auto-approved so a delivery is enqueued)
- POST /api/v1/recommendations/batch with 500 items
- POST /api/stock/recommendations/ — a stock DRF ModelViewSet create on the same model (the baseline)
- a model-endpoint call through the pipeline's model step vs the same call made directly (bench/model_overhead.py)
- policy evaluation on ten rules with the PII scan vs the same rules in cel-python (bench/policy_eval.py)
- a replay of 1,000,000 stored outputs against the 5-minute target (bench/replay.py)
- the audit record: history cost, and the audit trail over 5,000,000 history rows (bench/audit.py)
- the review desk's queue fragment at 10k/100k/1M tasks vs the Django admin changelist, and claim-next under
  8 concurrent reviewers (bench/review_queue.py)

One line per measure: `BENCH <name> value=<v><unit> baseline=<b><unit> ratio=<r> target=<t> ok|short`.

Usage: .venv/bin/python bench/run.py [--concurrency 4] [--single 1500] [--batches 20] [--model-calls 300]
       [--policy-seconds 5] [--replay-outputs 1000000]
       [--review-queue-sizes 10000,100000,1000000] [--profile]
Env: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/doorstep_bench); the database is
dropped and recreated on every run.
"""

import argparse
import http.client
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ["CELERY_BROKER_URL"] = "memory://"

from bench import audit as audit_bench  # noqa: E402
from bench import events_ingest, model_overhead, policy_eval  # noqa: E402 - needs ROOT on the path
from bench import replay as replay_bench  # noqa: E402
from bench import review_queue as review_queue_bench  # noqa: E402
from bench import roi_page as roi_page_bench  # noqa: E402

# Time budgets (seconds): a phase stops launching requests when the next one would not finish within its
# budget, so the whole run stays under ~3 minutes even on a slow or busy machine; throughput is items / time.
ROUNDS_BUDGET_S = 60.0  # single and stock together, split evenly over the rounds and the two
REVIEW_BUDGET_S = 10.0
BATCH_BUDGET_S = 35.0
TEXT = (
    "Account shows falling logins and one late payment this quarter; propose a check-in call with the "
    "sponsor this week, share the renewal plan and confirm the open support tickets are closed first."
)


def _database_url() -> str:
    from bench.settings import DEFAULT_DATABASE_URL

    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)


def recreate_database() -> None:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = _database_url()
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def prepare(tmp: Path) -> dict:
    """Migrate, build the demo company, and make an API key for the integrator."""
    import django

    django.setup()
    from django.core.management import call_command

    from apps.core import clock
    from apps.core.actors import Actor
    from apps.permissions.services import api_key_create
    from apps.workflows.demo.world import build_world

    call_command("migrate", verbosity=0)
    world = build_world(demo_dir=tmp / "demo", password="bench-pass-123!", now=clock.now())
    _, raw = api_key_create(actor=Actor(user=world.integrator), user=world.integrator, name="bench")
    return {"key": raw, "churn_pk": world.churn.pk}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port: int, tmp: Path) -> tuple[subprocess.Popen, Path]:
    prom_dir = tmp / "prometheus"
    prom_dir.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "PYTHONPATH": str(ROOT),
        "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),  # as `make run` does
    }
    log = tmp / "gunicorn.log"
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        "bench.wsgi",
        "-c",
        "config/gunicorn.py",
        "-b",
        f"127.0.0.1:{port}",
        "-w",
        "2",
        "--timeout",
        "120",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, log
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer /healthz in 30s:\n{log.read_text()[-3000:]}")


def stop_gunicorn(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- payloads ---------------------------------------------------------------------------------------------


def our_item(i: int, confidence: float = 0.9) -> dict:
    return {
        "use_case": "churn-risk",
        "subject": f"ACC-{i % 1000:04d}",
        "content": {"text": TEXT},
        "confidence": confidence,
        "proposed_action": {"type": "crm_task", "discount_pct": 0},
    }


def stock_item(i: int, use_case_pk: int) -> dict:
    return {
        "use_case": use_case_pk,
        "subject_key": f"ACC-{i % 1000:04d}",
        "content": {"text": TEXT},
        "confidence": 0.9,
        "proposed_action": {"type": "crm_task", "discount_pct": 0},
        "cost": "0",
    }


# --- load -------------------------------------------------------------------------------------------------


class Result:
    def __init__(self):
        self.latencies: list[float] = []  # seconds, successful requests
        self.items = 0
        self.errors = 0
        self.first_error = ""
        self.elapsed = 0.0

    def merge(self, other: "Result") -> None:
        self.latencies += other.latencies
        self.items += other.items
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.elapsed += other.elapsed

    @property
    def throughput(self) -> float:
        return self.items / self.elapsed if self.elapsed else 0.0

    def quantile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def load(
    port: int, path: str, bodies: list[bytes], headers: dict, concurrency: int, check, budget_s: float = 30.0
) -> Result:
    """POST every body with `concurrency` threads; `check(status, body)` returns the items created or raises.
    A thread stops early when its last request's latency would take it past `budget_s`."""
    result = Result()
    lock = threading.Lock()
    work = iter(bodies)
    stop_at = time.monotonic() + budget_s

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        last = 0.0
        while time.monotonic() + last < stop_at:
            with lock:
                body = next(work, None)
            if body is None:
                break
            started = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                data = response.read()
                latency = last = time.perf_counter() - started
                items = check(response.status, data)
            except Exception as exc:  # count and go on; the first one is printed
                last = time.perf_counter() - started
                conn.close()
                with lock:
                    result.errors += 1
                    result.first_error = result.first_error or f"{path}: {exc!r}"
                continue
            with lock:
                result.latencies.append(latency)
                result.items += items
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.elapsed = time.perf_counter() - started
    return result


def expect_created(status: int, data: bytes) -> int:
    if status != 201:
        raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
    return 1


def expect_batch(status: int, data: bytes) -> int:
    if status != 201:
        raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
    body = json.loads(data)
    if body.get("failed"):
        raise RuntimeError(f"{body['failed']} items failed: {data[:300]!r}")
    return body["created"]


# --- in-process measures (queries per request, profile) ----------------------------------------------------


def count_queries(key: str, churn_pk: int) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    def queries(path: str, payload: dict) -> float:
        try:
            client.post(path, json.dumps(payload), content_type="application/json")  # warm caches
            with CaptureQueriesContext(connection) as ctx:
                response = client.post(path, json.dumps(payload), content_type="application/json")
        except Exception as exc:  # the app is mid-edit, say: report, don't crash
            print(f"#   query count {path}: {exc!r}", file=sys.stderr)
            return float("nan")
        if response.status_code != 201:
            print(f"#   query count {path}: HTTP {response.status_code} {response.content[:300]!r}", file=sys.stderr)
            return float("nan")
        return len(ctx.captured_queries)

    batch_items = 50
    return {
        "single": queries("/api/v1/recommendations", our_item(1)),
        "review": queries("/api/v1/recommendations", our_item(1, confidence=0.4)),
        "stock": queries("/api/stock/recommendations/", stock_item(1, churn_pk)),
        "batch_per_item": queries("/api/v1/recommendations/batch", {"items": [our_item(i) for i in range(batch_items)]})
        / batch_items,
    }


def profile(key: str, churn_pk: int, n: int = 200) -> None:
    import cProfile
    import pstats

    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    batch = {"items": [our_item(i) for i in range(500)]}
    for label, path, payload, count in (
        ("single POST /api/v1/recommendations", "/api/v1/recommendations", our_item(1), n),
        ("stock POST /api/stock/recommendations/", "/api/stock/recommendations/", stock_item(1, churn_pk), n),
        ("batch of 500 POST /api/v1/recommendations/batch", "/api/v1/recommendations/batch", batch, 4),
    ):
        body = json.dumps(payload)
        for _ in range(min(count, 20)):
            client.post(path, body, content_type="application/json")
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(count):
            client.post(path, body, content_type="application/json")
        profiler.disable()
        per_request = (time.perf_counter() - started) / count * 1000
        print(f"\n=== profile: {label}, {count} requests in-process, {per_request:.2f} ms/request ===", file=sys.stderr)
        stats = pstats.Stats(profiler, stream=sys.stderr).strip_dirs()
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(20)


# --- report -----------------------------------------------------------------------------------------------


def line(
    name: str,
    value: float,
    baseline: float,
    unit: str,
    target: str,
    ok: bool | None,
    digits: int = 1,
    *,
    ratio: float | None = None,
) -> None:
    """`ratio` defaults to value / baseline; a measure whose value is a difference gives its own."""
    if ratio is None:
        ratio = value / baseline if baseline else float("nan")
    verdict = "" if ok is None else (" ok" if ok else " short")
    print(
        f"BENCH {name} value={value:.{digits}f}{unit} baseline={baseline:.{digits}f}{unit} "
        f"ratio={ratio:.2f} target={target}{verdict}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--single", type=int, default=1500, help="single posts, and as many stock posts")
    parser.add_argument("--rounds", type=int, default=3, help="single and stock alternate in this many rounds")
    parser.add_argument("--batches", type=int, default=20, help="batches of --batch-size items")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--batch-concurrency", type=int, default=2, help="client threads for batches (default 2, one per worker)"
    )
    parser.add_argument("--review", type=int, default=300, help="single posts that the policy sends to review")
    parser.add_argument(
        "--model-calls", type=int, default=300, help="model-endpoint calls, direct and through the pipeline"
    )
    parser.add_argument(
        "--policy-seconds", type=float, default=5.0, help="policy evaluation: seconds per engine (default 5)"
    )
    parser.add_argument(
        "--replay-outputs", type=int, default=1_000_000, help="outputs replayed (default 1,000,000; 0 skips)"
    )
    parser.add_argument(
        "--review-queue-sizes",
        default="10000,100000,1000000",
        help="review tasks in the queue for the review desk measures, ascending (default 10k,100k,1M; '' skips)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the single and stock posts in-process")
    args = parser.parse_args()

    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collected static files here
    run_started = time.monotonic()
    print(f"# load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-") as tmp_name:
        tmp = Path(tmp_name)
        recreate_database()
        setup = prepare(tmp)
        key, churn_pk = setup["key"], setup["churn_pk"]
        print(f"# setup (database, migrate, demo world): {time.monotonic() - run_started:.1f}s", file=sys.stderr)

        port = free_port()
        proc, log = start_gunicorn(port, tmp)
        try:
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            ours, stock = "/api/v1/recommendations", "/api/stock/recommendations/"
            counter = itertools.count()

            def single_bodies(n, confidence=0.9):
                return [json.dumps(our_item(next(counter), confidence)).encode() for _ in range(n)]

            def stock_bodies(n):
                return [json.dumps(stock_item(next(counter), churn_pk)).encode() for _ in range(n)]

            # Warm both workers (imports, policy cache, connections).
            load(port, ours, single_bodies(40), headers, args.concurrency, expect_created, 10)
            load(port, stock, stock_bodies(40), headers, args.concurrency, expect_created, 10)
            warm_batch = json.dumps({"items": [our_item(i) for i in range(50)]}).encode()
            load(port, ours + "/batch", [warm_batch] * 2, headers, 2, expect_batch, 10)

            # Single and stock alternate, so drift (table growth, autovacuum, neighbours) falls on both alike.
            single, baseline = Result(), Result()
            per_round = max(1, args.single // args.rounds)
            budget = ROUNDS_BUDGET_S / args.rounds / 2
            for _ in range(args.rounds):
                baseline.merge(
                    load(port, stock, stock_bodies(per_round), headers, args.concurrency, expect_created, budget)
                )
                single.merge(
                    load(port, ours, single_bodies(per_round), headers, args.concurrency, expect_created, budget)
                )

            review = load(
                port, ours, single_bodies(args.review, 0.4), headers, args.concurrency, expect_created, REVIEW_BUDGET_S
            )

            batch_bodies = [
                json.dumps({"items": [our_item(next(counter)) for _ in range(args.batch_size)]}).encode()
                for _ in range(args.batches)
            ]
            batch = load(
                port, ours + "/batch", batch_bodies, headers, args.batch_concurrency, expect_batch, BATCH_BUDGET_S
            )
        finally:
            stop_gunicorn(proc)

        queries = count_queries(key, churn_pk)
        model_calls = model_overhead.measure(churn_pk, args.model_calls)
        policy_stats = policy_eval.measure(args.policy_seconds)
        replay_stats = replay_bench.measure(args.replay_outputs) if args.replay_outputs else None
        queue_sizes = sorted(int(size) for size in args.review_queue_sizes.split(",") if size.strip())
        review_queue_stats = review_queue_bench.measure(queue_sizes) if queue_sizes else None
        events_stats = events_ingest.measure(key)

        for label, result in (("single", single), ("stock", baseline), ("review", review), ("batch", batch)):
            print(
                f"# {label}: {result.items} items, {len(result.latencies)} requests in {result.elapsed:.2f}s, "
                f"p50 {result.quantile_ms(0.5):.1f}ms p95 {result.quantile_ms(0.95):.1f}ms "
                f"p99 {result.quantile_ms(0.99):.1f}ms, errors {result.errors}",
                file=sys.stderr,
            )
            if result.first_error:
                print(f"#   first error: {result.first_error}", file=sys.stderr)

        clean = not (single.errors or baseline.errors or batch.errors)
        s, b = single.throughput, baseline.throughput
        line("ingest_single_throughput", s, b, "/s", ">=250/s and >=1.0x", clean and s >= 250 and b and s / b >= 1.0)
        p95, bp95 = single.quantile_ms(0.95), baseline.quantile_ms(0.95)
        line("ingest_single_p95", p95, bp95, "ms", "<50ms", clean and p95 < 50)
        line("ingest_single_p50", single.quantile_ms(0.5), baseline.quantile_ms(0.5), "ms", "report", None)
        t = batch.throughput
        line(
            f"ingest_batch{args.batch_size}_throughput",
            t,
            s,
            "/s",
            ">=3000/s and >=10x",
            clean and t >= 3000 and s and t / s >= 10,
        )
        line("ingest_single_review_throughput", review.throughput, s, "/s", "report", None)
        line("ingest_single_queries", queries["single"], queries["stock"], "", "report", None, digits=0)
        line("ingest_single_review_queries", queries["review"], queries["stock"], "", "report", None, digits=0)
        line("ingest_batch_queries_per_item", queries["batch_per_item"], queries["single"], "", "report", None)
        model_overhead.report(model_calls, line)
        policy_eval.report(policy_stats, line)
        if replay_stats:
            replay_bench.report(replay_stats, line)
        if review_queue_stats:
            review_queue_bench.report(review_queue_stats, line)
        events_ingest.report(events_stats, line)
        roi_page_bench.report(roi_page_bench.measure(), line)
        audit_bench.report(audit_bench.measure(), line)

        if args.profile:
            profile(key, churn_pk)
        print(
            f"# total {time.monotonic() - run_started:.1f}s; load average after: {os.getloadavg()[0]:.2f}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
