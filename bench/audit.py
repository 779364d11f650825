"""What the audit record costs, on PostgreSQL:

- history cost: 10,000 governed objects (review queues) updated through save() with simple-history recording
  each change, against the same updates with history switched off for the model, in the same run; target ≤ 2×;
- the audit trail page (a governance officer, keyset pages of 50, no count) with 5,000,000 history rows of a
  use case they may see: p95 of the first page, of a page deep in the trail and of the first page filtered to
  an actor with only a few of the rows (the admin); the worst of the three counts, target < 200 ms. The trail
  also holds 1,000,000 recommendation events (200,000 outputs over 90 days), as a working deployment would.

The history rows are generated inside PostgreSQL (INSERT … SELECT over generate_series), as simple-history
writes them, so setting up five million takes about a minute.

Prints `BENCH audit_history_cost …` and `BENCH audit_trail_page_p95_5m …`. Runs inside bench/run.py, or alone:
.venv/bin/python bench/audit.py [--rows 5000000], which recreates the bench database.
"""

import argparse
import html
import re
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent

HISTORY_OBJECTS = 10_000
HISTORY_TARGET = 2.0
PAGE_TARGET_MS = 200.0
ROUNDS = 40
EVENT_RECOMMENDATIONS = 200_000  # 1,000,000 events


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _history_cost() -> tuple[float, float]:
    """Seconds to update HISTORY_OBJECTS queues one save() each, with history and without."""
    from django.db import transaction

    from apps.reviews.models import ReviewQueue

    ReviewQueue.objects.bulk_create(ReviewQueue(name=f"Bench queue {i:05d}") for i in range(HISTORY_OBJECTS))
    queues = list(ReviewQueue.objects.filter(name__startswith="Bench queue "))

    def update(record: bool, suffix: str) -> float:
        started = time.perf_counter()
        with transaction.atomic():
            for queue in queues:
                queue.description = f"updated {suffix}"
                if record:  # simple-history skips a save whenever the attribute exists, whatever its value
                    queue.__dict__.pop("skip_history_when_saving", None)
                else:
                    queue.skip_history_when_saving = True
                queue.save()
        return time.perf_counter() - started

    update(True, "warm-up")  # the first pass pays for first-time statement preparation and caches
    without = update(False, "without history")
    with_history = update(True, "with history")
    return with_history, without


def _generate_history(*, use_case_id: int, rows: int) -> float:
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO workflows_historicalusecase
                (id, slug, name, purpose, business_unit, owner_id, risk_tier, risk_reason, status,
                 source_dataset_id, model_endpoint_id, fallback_endpoint_id, policy_id, review_queue_id,
                 embed_origins, review_sample_rate, holdout_share, monthly_budget, budget_soft_share,
                 budget_hard_action, sla_breach_action, model_timeout_seconds, model_max_attempts,
                 manual_minutes_per_item, hourly_cost, value_per_accepted, created_at, updated_at,
                 history_date, history_change_reason, history_type, history_user_id)
            SELECT u.id, u.slug, u.name, u.purpose, u.business_unit, u.owner_id, u.risk_tier, u.risk_reason,
                   u.status, u.source_dataset_id, u.model_endpoint_id, u.fallback_endpoint_id, u.policy_id,
                   u.review_queue_id, u.embed_origins, u.review_sample_rate, u.holdout_share, u.monthly_budget,
                   u.budget_soft_share, u.budget_hard_action, u.sla_breach_action, u.model_timeout_seconds,
                   u.model_max_attempts, u.manual_minutes_per_item + (g %% 7), u.hourly_cost, u.value_per_accepted,
                   u.created_at, u.updated_at, now() - make_interval(secs => g * 5), 'Bench change ' || g, '~',
                   u.owner_id
            FROM workflows_usecase u, generate_series(1, %s) AS g
            WHERE u.id = %s
            """,
            [rows, use_case_id],
        )
        cursor.execute("ANALYZE workflows_historicalusecase")
    return time.monotonic() - started


def _generate_events(recommendations: int) -> float:
    """Outputs of both use cases over 90 days with their lifecycle events (as the ROI bench makes them), so the
    trail's event source is as large as a working deployment's."""
    from django.contrib.auth import get_user_model

    from apps.workflows.models import UseCase
    from bench.roi_page import generate

    use_cases = list(UseCase.objects.order_by("pk"))
    return generate(
        use_case_ids=[use_case.pk for use_case in use_cases],
        reviewer_id=get_user_model().objects.get(username="reviewer").pk,  # the demo's reviewer decides a fifth
        queue_ids=[use_case.review_queue_id for use_case in use_cases],
        recommendations=recommendations,
        newest_seconds_ago=60,
        span_seconds=90 * 86400,
        prefix="AU",
    )


def _trail_pages(client, rounds: int, rare_actor: str) -> tuple[list[float], list[float], list[float]]:
    """Latencies (ms) of the first page, of a page reached by following 20 cursors, and of the first page
    filtered to an actor with few rows among the millions."""
    from django.urls import reverse

    url = reverse("audit:trail")
    first, deep, by_actor = [], [], []
    cursor = ""
    for _ in range(20):
        response = client.get(url, {"type": "usecase", "cursor": cursor}, HTTP_HX_REQUEST="true")
        found = re.search(r'cursor=([^"&]+)"', response.content.decode())
        cursor = unquote(html.unescape(found.group(1))) if found else ""
    for _ in range(rounds):
        for samples, params in (
            (first, {}),
            (deep, {"type": "usecase", "cursor": cursor}),
            (by_actor, {"actor": rare_actor}),
        ):
            started = time.perf_counter()
            response = client.get(url, params, HTTP_HX_REQUEST="true")
            samples.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"the trail answered {response.status_code}")
    return first, deep, by_actor


def measure(rows: int = 5_000_000) -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from apps.workflows.models import UseCase

    with_history, without = _history_cost()
    print(
        f"# audit: {HISTORY_OBJECTS} saves with history {with_history:.2f}s, without {without:.2f}s",
        file=sys.stderr,
    )
    churn = UseCase.objects.get(slug="churn-risk")
    seconds = _generate_history(use_case_id=churn.pk, rows=rows)
    print(f"# audit: {rows} history rows generated in {seconds:.1f}s", file=sys.stderr)
    seconds = _generate_events(EVENT_RECOMMENDATIONS)
    print(f"# audit: {EVENT_RECOMMENDATIONS * 5} recommendation events generated in {seconds:.1f}s", file=sys.stderr)
    client = Client()
    client.force_login(churn.owner)  # the governance officer, who may see the use case
    admin = get_user_model().objects.get(is_superuser=True)  # a handful of the rows are the admin's
    first, deep, by_actor = _trail_pages(client, ROUNDS, admin.username)
    stats = {
        "with": with_history,
        "without": without,
        "rows": rows,
        "first_p50": _quantile(first, 0.5),
        "first_p95": _quantile(first, 0.95),
        "deep_p95": _quantile(deep, 0.95),
        "actor_p95": _quantile(by_actor, 0.95),
    }
    print(
        f"# audit trail with {rows} history rows: first page p50 {stats['first_p50']:.1f}ms "
        f"p95 {stats['first_p95']:.1f}ms; 21st page p95 {stats['deep_p95']:.1f}ms; filtered to a rare actor p95 "
        f"{stats['actor_p95']:.1f}ms",
        file=sys.stderr,
    )
    return stats


def report(stats: dict, line) -> None:
    ratio = stats["with"] / stats["without"]
    line(
        "audit_history_cost_10k",
        stats["with"],
        stats["without"],
        "s",
        f"<={HISTORY_TARGET:g}x",
        ratio <= HISTORY_TARGET,
        digits=2,
    )
    worst = max(stats["first_p95"], stats["deep_p95"], stats["actor_p95"])
    name = "audit_trail_page_p95_5m" if stats["rows"] == 5_000_000 else f"audit_trail_page_p95_{stats['rows']}"
    line(name, worst, PAGE_TARGET_MS, "ms", f"<{PAGE_TARGET_MS:.0f}ms", worst < PAGE_TARGET_MS)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench import run as bench_run  # sets the bench settings and the in-memory broker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-") as tmp:
        bench_run.recreate_database()
        bench_run.prepare(Path(tmp))
        report(measure(args.rows), bench_run.line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
