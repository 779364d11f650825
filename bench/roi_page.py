"""The ROI page on 1,000,000 lifecycle events over 90 days on PostgreSQL, in-process (Django's test client):

- the executive's ROI page (GET /roi/, the last 90 days, every use case: figures, charts, tables, and the lift
  against the control group, both use cases keeping one), p95 latency, against a live ORM aggregation of the
  same figures over the raw facts (recommendations, verdicts, events: apps.reporting.services.rollup_compute,
  the grouped queries the rollups are made of) in the same run; the page reads only the rollups and lift
  rows, so the ratio is what they buy;
- the incremental refresh (apps.reporting.services.rollup_refresh, what Celery beat runs) after 10,000 new
  events (2,000 new recommendations of today, 5 events each, with 200 held-out runs and 1,320 outcomes),
  three times in a row; the slowest counts.

The facts are generated inside PostgreSQL with INSERT … SELECT over generate_series: 200,000 recommendations
spread over 90 days on the demo's two use cases, 5 events each (received, delivered, shown, accepted or
rejected by the user with a reason, acted on or ignored), a review verdict for one in five, a held-out run
for every tenth recommendation, and a renewal won or lost for three subjects in five of both groups.

Prints `BENCH roi_page_p95 value=… baseline=<live aggregation p95> ratio=… target=<300ms` and
`BENCH roi_incremental_10k value=… baseline=<full rebuild of 90 days> ratio=… target=<1s`.

Runs inside bench/run.py (after the other measures), or alone:
.venv/bin/python bench/roi_page.py [--events 1000000] [--rounds 60], which recreates the bench database.
"""

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PAGE_TARGET_MS = 300.0
REFRESH_TARGET_S = 1.0
DAYS = 90
EVENTS_PER_RECOMMENDATION = 5
REASONS = ["Too late", "Wrong customer", "Already handled", "Not relevant"]


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def generate(
    *,
    use_case_ids: list[int],
    reviewer_id: int,
    queue_ids: list[int],
    recommendations: int,
    newest_seconds_ago: float,
    span_seconds: float,
    prefix: str,
) -> float:
    """`recommendations` recommendations spread evenly over `span_seconds` ending `newest_seconds_ago` ago,
    each with its 5 events, one in five with a review verdict; returns the seconds it took."""
    from django.db import connection

    started = time.monotonic()
    step = span_seconds / recommendations
    reasons = "ARRAY[" + ",".join("%s" for _ in REASONS) + "]"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS bench_new (id bigint, created_at timestamptz)")
        cursor.execute("TRUNCATE bench_new")
        cursor.execute(
            """
            WITH r AS (
                INSERT INTO workflows_recommendation
                    (use_case_id, subject_key, producer, content, confidence, proposed_action, cost, status,
                     created_at, decided_at, delivered_at)
                SELECT (%s::int[])[1 + g %% 2], %s || g, 'doorstep', jsonb_build_object('text', 'Call the sponsor'),
                       0.8, '{}'::jsonb, 0.0012, CASE WHEN g %% 20 = 0 THEN 'blocked' ELSE 'delivered' END,
                       t.at, t.at, CASE WHEN g %% 20 = 0 THEN NULL ELSE t.at + make_interval(secs => 60 + g %% 3600) END
                FROM generate_series(1, %s) AS g,
                     LATERAL (SELECT now() - make_interval(secs => %s + g * %s)) t(at)
                RETURNING id, created_at
            )
            INSERT INTO bench_new SELECT id, created_at FROM r
            """,
            [use_case_ids, prefix, recommendations, newest_seconds_ago, step],
        )
        cursor.execute(
            f"""
            INSERT INTO workflows_recommendationevent
                (recommendation_id, sequence, type, at, actor_label, payload, prev_hash, hash)
            SELECT n.id, k,
                   CASE k WHEN 1 THEN 'received' WHEN 2 THEN 'delivered' WHEN 3 THEN 'shown'
                          WHEN 4 THEN CASE WHEN n.id %% 4 = 0 THEN 'feedback_rejected' ELSE 'accepted' END
                          ELSE CASE WHEN n.id %% 3 = 0 THEN 'ignored' ELSE 'acted_on' END END,
                   n.created_at + make_interval(mins => (k - 1) * 7),
                   'bench',
                   CASE WHEN k = 4 AND n.id %% 4 = 0
                        THEN jsonb_build_object('reason', ({reasons})[1 + n.id %% {len(REASONS)}])
                        ELSE '{{}}'::jsonb END,
                   md5(n.id::text || '-' || (k - 1)), md5(n.id::text || '-' || k)
            FROM bench_new n, generate_series(1, {EVENTS_PER_RECOMMENDATION}) AS k
            """,
            REASONS,
        )
        cursor.execute(
            """
            WITH t AS (
                INSERT INTO reviews_reviewtask
                    (queue_id, recommendation_id, status, priority, reasons, is_sample, created_at, due_at,
                     decided_at, required_reviews, sla_outcome)
                SELECT (%s::int[])[1 + r.use_case_id %% 2], n.id, 'decided', 0, '[]'::jsonb, false, n.created_at,
                       n.created_at + interval '4 hours', n.created_at + interval '3 minutes', 1, ''
                FROM bench_new n JOIN workflows_recommendation r ON r.id = n.id
                WHERE n.id %% 5 = 0
                RETURNING id, recommendation_id, created_at
            )
            INSERT INTO reviews_reviewverdict
                (task_id, reviewer_id, decision, reason_code, comment, edited_text, diff, edit_distance,
                 seconds_spent, is_adjudication, created_at)
            SELECT t.id, %s, CASE t.recommendation_id %% 3 WHEN 0 THEN 'reject' WHEN 1 THEN 'edit' ELSE 'approve' END,
                   CASE WHEN t.recommendation_id %% 3 = 0 THEN 'inaccurate' ELSE '' END, '', '', '', 0,
                   30 + t.recommendation_id %% 90, false, t.created_at + interval '3 minutes'
            FROM t
            """,
            [queue_ids, reviewer_id],
        )
        # The control group: one held-out run for every tenth recommendation, over the same span (no
        # recommendation, so a subject of its own).
        cursor.execute(
            """
            INSERT INTO workflows_run
                (use_case_id, subject_key, trigger, status, created_at, finished_at, step_timings, used_fallback,
                 model_attempts, tokens_in, tokens_out, cost, error)
            SELECT (%s::int[])[1 + g / 10 %% 2], %s || 'H' || g, 'schedule', 'held_out', t.at, t.at, '{}'::jsonb, false,
                   0, 0, 0, 0, ''
            FROM generate_series(10, %s, 10) AS g,
                 LATERAL (SELECT now() - make_interval(secs => %s + g * %s)) t(at)
            """,
            [use_case_ids, prefix, recommendations, newest_seconds_ago, step],
        )
        # Business outcomes for three subjects in five of each group, up to ~12 days after the trigger
        # (never in the future): renewals won more often where a recommendation was made.
        cursor.execute(
            """
            INSERT INTO reporting_businessoutcome
                (use_case_id, subject_key, kind, value, occurred_at, holdout, external_id, created_at)
            SELECT s.use_case_id, s.subject_key,
                   CASE WHEN s.id %% 10 < CASE WHEN s.holdout THEN 4 ELSE 6 END THEN 'renewal_won'
                        ELSE 'renewal_lost' END,
                   CASE WHEN s.id %% 10 < CASE WHEN s.holdout THEN 4 ELSE 6 END THEN 1200 END,
                   LEAST(now(), s.at + make_interval(hours => (1 + s.id %% 300)::int)), s.holdout,
                   'bench-' || s.subject_key, now()
            FROM (
                SELECT r.id, r.use_case_id, r.subject_key, r.created_at AS at, false AS holdout
                FROM bench_new n JOIN workflows_recommendation r ON r.id = n.id
                UNION ALL
                SELECT u.id, u.use_case_id, u.subject_key, u.created_at, true
                FROM workflows_run u WHERE u.status = 'held_out' AND u.subject_key LIKE %s || 'H%%'
            ) s
            WHERE s.id %% 5 < 3
            """,
            [prefix],
        )
        for table in (
            "workflows_recommendation",
            "workflows_recommendationevent",
            "reviews_reviewverdict",
            "workflows_run",
            "reporting_businessoutcome",
        ):
            cursor.execute(f"ANALYZE {table}")
    return time.monotonic() - started


def measure(events: int = 1_000_000, rounds: int = 60, aggregation_rounds: int = 5) -> dict:
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from apps.core import clock
    from apps.reporting.lift import lift_summary
    from apps.reporting.services import rollup_compute, rollup_rebuild, rollup_refresh
    from apps.workflows.models import RecommendationEvent, UseCase

    use_cases = list(UseCase.objects.order_by("pk"))[:2]
    use_case_ids = [u.pk for u in use_cases]
    queue_ids = [u.review_queue_id for u in use_cases]
    users = get_user_model().objects
    reviewer, executive = users.get(username="reviewer"), users.get(username="executive")
    recommendations = events // EVENTS_PER_RECOMMENDATION
    seconds = generate(
        use_case_ids=use_case_ids,
        reviewer_id=reviewer.pk,
        queue_ids=queue_ids,
        recommendations=recommendations,
        newest_seconds_ago=3600,
        span_seconds=(DAYS - 1) * 86_400,
        prefix="ROI-",
    )
    total_events = RecommendationEvent.objects.count()
    print(
        f"# roi: {recommendations} recommendations, {total_events} events generated in {seconds:.1f}s", file=sys.stderr
    )

    today = timezone.localdate(clock.now())
    start = today - dt.timedelta(days=DAYS - 1)
    started = time.monotonic()
    rollup_rebuild(start=start, end=today)
    rebuild_s = time.monotonic() - started
    started = time.monotonic()
    rollup_refresh()  # catch up the watermarks (the first run reads every fact)
    rollup_refresh()
    catch_up_s = time.monotonic() - started
    print(
        f"# roi: full rebuild of {DAYS} days {rebuild_s:.2f}s; first two refreshes {catch_up_s:.2f}s", file=sys.stderr
    )
    with connection.cursor() as cursor:  # what autovacuum does after a bulk load
        cursor.execute("ANALYZE reporting_liftsubjectday")

    # Both use cases keep a control group, so the page also shows the lift against the holdout (from the lift
    # rows the refresh keeps).
    UseCase.objects.filter(pk__in=use_case_ids).update(holdout_share=Decimal("0.1"))
    visible = UseCase.objects.filter(pk__in=use_case_ids)
    live = []
    for _ in range(aggregation_rounds):
        started = time.perf_counter()
        rollup_compute(start=start, end=today, use_case_ids=[u.pk for u in visible])
        live.append((time.perf_counter() - started) * 1000)

    client = Client()
    client.force_login(executive)
    url = reverse("reporting:roi")
    response = client.get(url)
    if response.status_code != 200 or b'id="roi-data"' not in response.content:
        raise SystemExit(f"the ROI page answered {response.status_code} without its chart data")
    for figures in lift_summary(user=executive, start=start, end=today):
        shown = figures["shown_as"]
        print(
            f"# roi: lift of {figures['use_case'].slug}: {shown['n_treated']} treated / {shown['n_holdout']} holdout, "
            f"outcome rate {shown['rate_lift']} ({shown['rate_interval']}), cycle {shown['cycle_difference']}",
            file=sys.stderr,
        )
    page = []
    for n in range(rounds):
        headers = {"HTTP_HX_REQUEST": "true"} if n % 2 else {}  # the full page and the filter fragment
        started = time.perf_counter()
        client.get(url, **headers)
        page.append((time.perf_counter() - started) * 1000)

    refreshes = []
    for n in range(3):
        generate(
            use_case_ids=use_case_ids,
            reviewer_id=reviewer.pk,
            queue_ids=queue_ids,
            recommendations=2000,
            newest_seconds_ago=60,
            span_seconds=1800,
            prefix=f"NEW{n}-",
        )
        started = time.perf_counter()
        rollup_refresh()
        refreshes.append(time.perf_counter() - started)
    print(
        f"# roi: page p50 {_quantile(page, 0.5):.1f}ms p95 {_quantile(page, 0.95):.1f}ms over {len(page)}; "
        f"live aggregation {', '.join(f'{v:.0f}' for v in live)} ms; "
        f"refresh after 10,000 new events {', '.join(f'{v:.3f}' for v in refreshes)} s",
        file=sys.stderr,
    )
    return {
        "events": total_events,
        "page_p95": _quantile(page, 0.95),
        "live_p95": _quantile(live, 0.95),
        "refresh_s": max(refreshes),
        "rebuild_s": rebuild_s,
    }


def report(stats: dict, line) -> None:
    line(
        "roi_page_p95",
        stats["page_p95"],
        stats["live_p95"],
        "ms",
        f"<{PAGE_TARGET_MS:.0f}ms",
        stats["page_p95"] < PAGE_TARGET_MS,
    )
    line(
        "roi_incremental_10k",
        stats["refresh_s"],
        stats["rebuild_s"],
        "s",
        f"<{REFRESH_TARGET_S:.0f}s",
        stats["refresh_s"] < REFRESH_TARGET_S,
        digits=3,
    )


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench import run as bench_run  # sets the bench settings and the in-memory broker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-") as tmp:
        bench_run.recreate_database()
        bench_run.prepare(Path(tmp))
        report(measure(args.events, args.rounds), bench_run.line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
