"""The review desk at 10k, 100k and 1M review tasks on PostgreSQL, in-process (Django's test client, no HTTP):

- the queue page's htmx fragment (GET /reviews/queues/<pk>/ with HX-Request: the first 25 pending rows),
  p95 latency and SQL queries per request, against the Django admin changelist of ReviewTask on the same
  table for the same user (a guardian-aware ModelAdmin in bench/urls.py's own admin site, 25 a page, the
  admin's COUNT paginator). The user is not a superuser: a reviewer whose *group* holds the object
  permissions on the queue (and, for the admin, is_staff plus the model's view permission);
- claim-next (apps.reviews.services.review_task_claim_next, `FOR UPDATE SKIP LOCKED`) on the 1M table under
  8 concurrent reviewers without pause between claims: threads with a connection each (they share the
  interpreter lock, so Python waits count too), then processes (as gunicorn workers serve reviewers); each
  claimed item is then marked decided by a plain UPDATE (not measured), so the head of the queue moves;
  and, for the record, 8 threads pausing 100 ms between claims (reviewers take seconds per item), where
  the machine is not saturated.

Tasks are generated inside PostgreSQL with one INSERT … SELECT over generate_series per size (recommendations
and their tasks in one statement): 90 % open, 10 % decided, three priorities, a second apart.

Prints, per size: `BENCH review_queue_page_p95_<size>` (baseline = the admin's p95), `BENCH
review_queue_page_queries_<size>` (baseline = the admin's queries); then `BENCH review_queue_page_flat`
(1M p95 against 10k p95, target within ±20 %) and `BENCH review_claim_next_p95_8_threads|processes`
(baseline = the target).

Runs inside bench/run.py (after the other measures), or alone:
.venv/bin/python bench/review_queue.py [--sizes 10000,100000,1000000] [--seconds 8], which recreates the
bench database.
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SIZES = (10_000, 100_000, 1_000_000)
PAGE_TARGET_MS = 150.0
QUERY_TARGET = 10
FLAT_TOLERANCE = 0.20
CLAIM_TARGET_MS = 20.0
PAUSE_MS = 100.0
REVIEWERS = 8
ADMIN_URL = "/bench-admin/reviews/reviewtask/"


def _quantile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _label(size: int) -> str:
    return f"{size // 1_000_000}m" if size >= 1_000_000 and size % 1_000_000 == 0 else f"{size // 1000}k"


def generate(*, use_case_id: int, queue_id: int, first: int, count: int) -> float:
    """Tasks `first`+1 … `first`+`count` of the queue (each with its recommendation); returns the seconds."""
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH recommendations AS (
                INSERT INTO workflows_recommendation
                    (use_case_id, subject_key, producer, content, confidence, proposed_action, cost, status,
                     created_at)
                SELECT %s, 'BQ-' || lpad(g::text, 7, '0'), 'doorstep',
                       jsonb_build_object('text', 'Offer a renewal discount and call the sponsor of ' || g),
                       0.4, '{}'::jsonb, 0, 'queued_for_review', now() - make_interval(secs => g)
                FROM generate_series(%s, %s) AS g
                RETURNING id, created_at
            )
            INSERT INTO reviews_reviewtask
                (queue_id, recommendation_id, status, priority, reasons, is_sample, created_at, due_at,
                 decided_at, required_reviews, sla_outcome)
            SELECT %s, r.id, CASE WHEN r.id %% 10 = 0 THEN 'decided' ELSE 'open' END, (r.id %% 3)::smallint,
                   '[{"name": "Low confidence", "effect": "review"}]'::jsonb, false, r.created_at,
                   r.created_at + interval '4 hours', CASE WHEN r.id %% 10 = 0 THEN r.created_at END, 1, ''
            FROM recommendations r
            """,
            [use_case_id, first + 1, first + count, queue_id],
        )
        cursor.execute("ANALYZE workflows_recommendation")
        cursor.execute("ANALYZE reviews_reviewtask")
    return time.monotonic() - started


def _reviewer(name: str, group, *, staff: bool = False):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(name, password="bench-pass-123!", is_staff=staff)
    user.groups.add(group)
    if staff:  # the admin asks for the model permission; lists still come from the object grants
        user.user_permissions.add(Permission.objects.get(codename="view_reviewtask"))
    return user


def _measure_pages(client, queue_url: str, rounds: int, budget_s: float) -> dict:
    """Our fragment and the admin changelist in turn, so drift falls on both alike."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    samples = {"ours": [], "admin": []}
    queries = {}
    requests = {"ours": (queue_url, {"HTTP_HX_REQUEST": "true"}), "admin": (ADMIN_URL, {})}
    for name, (url, headers) in requests.items():  # warm up, and count the queries once
        client.get(url, **headers)
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url, **headers)
        if response.status_code != 200:
            raise SystemExit(f"{name} {url}: HTTP {response.status_code}")
        if name == "ours" and response.content.count(b"data-task-id=") != 25:
            raise SystemExit(f"the queue fragment shows {response.content.count(b'data-task-id=')} rows, not 25")
        queries[name] = len(ctx.captured_queries)
    stop_at = time.monotonic() + budget_s
    for _ in range(rounds):
        for name, (url, headers) in requests.items():
            started = time.perf_counter()
            client.get(url, **headers)
            samples[name].append((time.perf_counter() - started) * 1000)
        if time.monotonic() > stop_at:
            break
    return {
        "p95": _quantile(samples["ours"], 0.95),
        "admin_p95": _quantile(samples["admin"], 0.95),
        "p50": _quantile(samples["ours"], 0.5),
        "admin_p50": _quantile(samples["admin"], 0.5),
        "n": len(samples["ours"]),
        "queries": queries["ours"],
        "admin_queries": queries["admin"],
    }


def _claim_loop(queue, user, seconds: float, wait=None, pause: float = 0.0) -> tuple[list[float], list[int]]:
    """Claim-next until `seconds` are up or the queue is clear; each claimed item is then marked decided by a
    plain UPDATE (not measured), as its verdict would, and the reviewer pauses `pause` seconds. Returns the
    latencies (ms) and the claimed task ids."""
    from apps.core import clock
    from apps.core.actors import Actor
    from apps.reviews.models import ReviewTask
    from apps.reviews.services import review_task_claim_next

    actor = Actor(user=user)
    took, mine = [], []
    if wait is not None:
        wait()
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        task = review_task_claim_next(actor=actor, queue=queue)
        took.append((time.perf_counter() - started) * 1000)
        if task is None:
            break
        mine.append(task.pk)
        ReviewTask.objects.filter(pk=task.pk).update(status=ReviewTask.Status.DECIDED, decided_at=clock.now())
        time.sleep(pause)
    return took, mine


def _claim_process(queue_id: int, user_id: int, seconds: float, start_at: float, results) -> None:
    """One reviewer in a process of its own (as gunicorn workers are), starting at the wall-clock `start_at`."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from apps.reviews.models import ReviewQueue

    try:
        queue, user = ReviewQueue.objects.get(pk=queue_id), get_user_model().objects.get(pk=user_id)
        took, mine = _claim_loop(queue, user, seconds, wait=lambda: time.sleep(max(0.0, start_at - time.time())))
        results.put((took, mine, ""))
    except Exception as exc:  # reported by the parent
        results.put(([], [], repr(exc)))


def _claim_stats(latencies: list[float], claimed: list[int], errors: list[str], elapsed: float) -> dict:
    return {
        "p50": _quantile(latencies, 0.5),
        "p95": _quantile(latencies, 0.95),
        "claims": len(claimed),
        "duplicates": len(claimed) - len(set(claimed)),
        "errors": errors,
        "per_second": len(claimed) / elapsed if elapsed else 0.0,
    }


def _measure_claim_processes(queue, users: list, seconds: float) -> dict:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 10  # after every child has started Django and connected
    children = [
        context.Process(target=_claim_process, args=(queue.pk, user.pk, seconds, start_at, results)) for user in users
    ]
    for child in children:
        child.start()
    latencies, claimed, errors = [], [], []
    for _ in children:
        took, mine, error = results.get(timeout=seconds + 120)
        latencies += took
        claimed += mine
        errors += [error] if error else []
    for child in children:
        child.join()
    return _claim_stats(latencies, claimed, errors, max(seconds, 1e-9))


def _measure_claims(queue, users: list, seconds: float, pause: float = 0.0) -> dict:
    from django.db import connection

    latencies: list[float] = []
    claimed: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(users))

    def reviewer(user):
        took, mine = [], []
        try:
            took, mine = _claim_loop(queue, user, seconds, wait=start.wait, pause=pause)
        except Exception as exc:  # reported, the others go on
            errors.append(repr(exc))
        finally:
            connection.close()
            with lock:
                latencies.extend(took)
                claimed.extend(mine)

    threads = [threading.Thread(target=reviewer, args=(user,)) for user in users]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _claim_stats(latencies, claimed, errors, time.monotonic() - started)


def measure(sizes=SIZES, seconds: float = 8.0, rounds: int = 60, page_budget_s: float = 40.0) -> dict:
    from django.contrib.auth.models import Group
    from django.db import connections
    from django.test import Client
    from django.urls import reverse

    from apps.permissions.services import object_permission_grant
    from apps.reviews.models import ReviewQueue
    from apps.workflows.models import UseCase

    print(f"# review queue: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", file=sys.stderr)
    queue = ReviewQueue.objects.get(name="Churn review")
    use_case = UseCase.objects.get(review_queue=queue)
    group = Group.objects.create(name="Bench reviewers")
    for codename in ("view_reviewqueue", "review_reviewqueue"):
        object_permission_grant(group=group, codename=codename, obj=queue)
    viewer = _reviewer("bench-reviewer", group, staff=True)
    client = Client()
    client.force_login(viewer)
    queue_url = reverse("reviews:queue-detail", args=[queue.pk])

    pages, made = {}, 0
    for size in sizes:
        seconds_taken = generate(use_case_id=use_case.pk, queue_id=queue.pk, first=made, count=size - made)
        print(f"# review queue: {size - made} tasks generated in {seconds_taken:.1f}s ({size} in all)", file=sys.stderr)
        made = size
        pages[size] = _measure_pages(client, queue_url, rounds, page_budget_s)
        stats = pages[size]
        print(
            f"# review queue {_label(size)}: fragment p50 {stats['p50']:.1f}ms p95 {stats['p95']:.1f}ms, "
            f"{stats['queries']} queries; admin p50 {stats['admin_p50']:.1f}ms p95 {stats['admin_p95']:.1f}ms, "
            f"{stats['admin_queries']} queries; {stats['n']} requests each",
            file=sys.stderr,
        )

    users = [_reviewer(f"bench-claimer-{i}", group) for i in range(REVIEWERS)]
    connections.close_all()  # each thread opens its own
    alone = _measure_claims(queue, users[:1], min(seconds, 3.0))
    print(
        f"# claim-next, 1 reviewer alone: p50 {alone['p50']:.1f}ms p95 {alone['p95']:.1f}ms ({alone['claims']} claims)",
        file=sys.stderr,
    )
    claims = {
        "threads": _measure_claims(queue, users, seconds),
        "processes": _measure_claim_processes(queue, users, seconds),
        # Reviewers take seconds per item: with a pause between claims the machine is not saturated, which
        # shows what the locking alone costs under concurrency.
        f"threads_pausing_{PAUSE_MS:.0f}ms": _measure_claims(queue, users, seconds, pause=PAUSE_MS / 1000),
    }
    for kind, stats in claims.items():
        print(
            f"# claim-next, {REVIEWERS} reviewers in {kind} on {made} tasks: {stats['claims']} claims "
            f"({stats['per_second']:.0f}/s), p50 {stats['p50']:.1f}ms p95 {stats['p95']:.1f}ms, "
            f"{stats['duplicates']} claimed twice, errors {len(stats['errors'])}"
            + (f" (first: {stats['errors'][0]})" if stats["errors"] else ""),
            file=sys.stderr,
        )
    return {"pages": pages, "claims": claims}


def report(stats: dict, line) -> None:
    pages = stats["pages"]
    for size, page in pages.items():
        label = _label(size)
        faster = page["p95"] < page["admin_p95"]
        line(
            f"review_queue_page_p95_{label}",
            page["p95"],
            page["admin_p95"],
            "ms",
            f"<{PAGE_TARGET_MS:.0f}ms" + (" and faster than admin" if size == 100_000 else ""),
            page["p95"] < PAGE_TARGET_MS and (faster or size != 100_000),
        )
        line(
            f"review_queue_page_queries_{label}",
            page["queries"],
            page["admin_queries"],
            "",
            f"<={QUERY_TARGET}",
            page["queries"] <= QUERY_TARGET,
            digits=0,
        )
    if len(pages) > 1:
        smallest, largest = pages[min(pages)], pages[max(pages)]
        ratio = largest["p95"] / smallest["p95"]
        line(
            f"review_queue_page_flat_{_label(min(pages))}_to_{_label(max(pages))}",
            largest["p95"],
            smallest["p95"],
            "ms",
            f"ratio {1 - FLAT_TOLERANCE:.1f}-{1 + FLAT_TOLERANCE:.1f}",
            1 - FLAT_TOLERANCE <= ratio <= 1 + FLAT_TOLERANCE,
        )
    # Threads share one interpreter lock, so they also measure Python waiting for it; processes are how
    # gunicorn serves reviewers.
    for kind, claims in stats["claims"].items():
        saturating = "pausing" not in kind  # the target is for reviewers claiming back to back
        line(
            f"review_claim_next_p95_{REVIEWERS}_{kind}",
            claims["p95"],
            CLAIM_TARGET_MS,
            "ms",
            f"<{CLAIM_TARGET_MS:.0f}ms, 0 claimed twice" if saturating else "report",
            (claims["p95"] < CLAIM_TARGET_MS and claims["duplicates"] == 0 and not claims["errors"])
            if saturating
            else None,
        )


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench import run as bench_run  # sets the bench settings and the in-memory broker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(str(size) for size in SIZES), help="task counts, ascending")
    parser.add_argument("--seconds", type=float, default=8.0, help="claim-next: seconds of concurrent claiming")
    parser.add_argument("--rounds", type=int, default=60, help="requests per size, to each side")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-") as tmp:
        bench_run.recreate_database()
        bench_run.prepare(Path(tmp))
        report(measure(sizes, args.seconds, args.rounds), bench_run.line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
