"""Replay of 1,000,000 stored outputs on PostgreSQL: the demo's pending change of the support-reply policy
(apps.workflows.demo.world: weak matches reviewed below 0.25) replayed against the active version on a
million outputs of the last 30 days, by the same service the Celery task runs (apps.policies.replay).

The outputs are generated inside PostgreSQL with INSERT … SELECT over generate_series, as the pipeline
stores them: a run, its context snapshot (the ticket, whose subject the privacy rule reads), the
recommendation (realistic support replies, some with PII, some with refund promises) and its stored policy
decision, so setting up a million outputs takes a minute or two, not an hour.

The replay runs in a child process, as a worker would, while this process polls its progress. It is given
the target's time (300 s) plus a margin: a replay that has not finished by then is stopped and its total
time projected from its progress (printed as such), so the whole bench stays under ~10 minutes.

Prints `BENCH replay_1m value=<seconds>s baseline=300s ratio=<value/target> target=<300s ok|short`: no other
implementation of replay exists to compare with, so the baseline is the target itself.

Runs inside bench/run.py (after the other measures), or alone:
.venv/bin/python bench/replay.py [--outputs 1000000] [--budget 330], which recreates the bench database.
"""

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TARGET_S = 300.0
TEXTS = [
    "You can reset the password from the login page; the link is valid for one hour.",
    "Your invoice is attached; the charge matches the seats on the account.",
    "We will refund the duplicate charge within five business days.",
    "Export the report from Settings, then Data, then Export; the file arrives by e-mail.",
    "Write to billing@acme-corp.example and the team will send a copy of the contract.",
    "Call the support desk on +44 20 7946 0958 between 9 and 5 on weekdays.",
    "The plan includes ten seats; add more from the Billing page at any time.",
    "The outage is resolved; no data was lost and no action is needed from you.",
]


SUBJECTS = ["Billing question", "Password reset", "Please delete my data (GDPR)", "Renewal", "Export", "Outage"]


def generate(*, use_case_id: int, dataset_id: int, version_id: int, count: int) -> float:
    """`count` runs of the last 30 days, each with its stored context record (a ticket), its output and the
    decision stored when it was made; returns the seconds it took."""
    from django.db import connection

    started = time.monotonic()
    texts = "ARRAY[" + ",".join("%s" for _ in TEXTS) + "]"
    subjects = "ARRAY[" + ",".join("%s" for _ in SUBJECTS) + "]"
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO workflows_run
                (use_case_id, subject_key, trigger, status, created_at, started_at, finished_at, step_timings,
                 used_fallback, model_attempts, tokens_in, tokens_out, cost, error)
            SELECT %s, 'TCK-' || lpad(g::text, 7, '0'), 'api', 'succeeded', at, at, at, '{}'::jsonb,
                   false, 1, 120, 40, 0.0012, ''
            FROM generate_series(1, %s) AS g, LATERAL (SELECT now() - make_interval(mins => g %% (29 * 24 * 60))) t(at)
            """,
            [use_case_id, count],
        )
        cursor.execute(
            f"""
            INSERT INTO workflows_contextsnapshot
                (run_id, dataset_id, source, record_ids, records, content_hash, freshness, quality, quality_errors,
                 values_hashed, fetched_at)
            SELECT r.id, %s, 'Helpdesk / tickets', jsonb_build_array(r.subject_key),
                   jsonb_build_array(jsonb_build_object(
                       'ticket_id', r.subject_key, 'subject', ({subjects})[1 + r.id %% {len(SUBJECTS)}],
                       'channel', 'email')),
                   md5(r.subject_key), 'unknown', 'unchecked', '[]'::jsonb, false, r.created_at
            FROM workflows_run r WHERE r.use_case_id = %s
            """,
            [dataset_id, *SUBJECTS, use_case_id],
        )
        cursor.execute(
            f"""
            INSERT INTO workflows_recommendation
                (use_case_id, run_id, subject_key, producer, content, confidence, proposed_action, cost,
                 status, policy_version_id, created_at, decided_at)
            SELECT %s, r.id, r.subject_key, 'doorstep', jsonb_build_object('text', ({texts})[1 + r.id %% {len(TEXTS)}]),
                   (r.id * 7919 %% 1000) / 1000.0, '{{}}'::jsonb, r.cost, 'approved', %s, r.created_at, r.created_at
            FROM workflows_run r WHERE r.use_case_id = %s
            """,
            [use_case_id, *TEXTS, version_id, use_case_id],
        )
        cursor.execute(
            """
            INSERT INTO policies_policydecision
                (recommendation_id, version_id, effect, fired_rules, signals, redactions, evaluated_at, duration_us)
            SELECT r.id, %s, 'allow', '[]'::jsonb,
                   jsonb_build_object('freshness', 'unknown', 'quality', 'unchecked', 'confidence', r.confidence),
                   0, r.created_at, 0
            FROM workflows_recommendation r
            LEFT JOIN policies_policydecision d ON d.recommendation_id = r.id
            WHERE r.use_case_id = %s AND d.id IS NULL
            """,
            [version_id, use_case_id],
        )
        cursor.execute("ANALYZE workflows_run")
        cursor.execute("ANALYZE workflows_contextsnapshot")
        cursor.execute("ANALYZE workflows_recommendation")
        cursor.execute("ANALYZE policies_policydecision")
    return time.monotonic() - started


def _run_replay(replay_id: int) -> None:
    import django

    django.setup()
    from apps.policies.replay import policy_replay_run

    policy_replay_run(replay_id=replay_id)


def measure(outputs: int = 1_000_000, budget: float = TARGET_S * 1.1) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connections

    from apps.core.actors import Actor
    from apps.policies.models import Policy, PolicyReplay, PolicyVersion
    from apps.policies.replay import policy_replay_request
    from apps.workflows.models import UseCase

    policy = Policy.objects.get(name="Support reply policy")
    use_case = UseCase.objects.get(policy=policy)
    active = PolicyVersion.objects.get(policy=policy, state=PolicyVersion.State.ACTIVE)
    draft = PolicyVersion.objects.filter(policy=policy, state=PolicyVersion.State.IN_REVIEW).get()
    seconds = generate(
        use_case_id=use_case.pk, dataset_id=use_case.source_dataset_id, version_id=active.pk, count=outputs
    )
    print(f"# replay: {outputs} outputs generated in {seconds:.1f}s", file=sys.stderr)

    officer = Actor(user=get_user_model().objects.filter(is_superuser=True).first())
    replay = policy_replay_request(actor=officer, version=draft, days=30)  # the task is left unsent (no worker)
    connections.close_all()  # the child opens its own
    child = multiprocessing.get_context("spawn").Process(target=_run_replay, args=(replay.pk,))
    started = time.monotonic()
    child.start()
    while child.is_alive() and time.monotonic() - started < budget:
        child.join(2)
    elapsed = time.monotonic() - started
    stopped = child.is_alive()
    if stopped:
        child.terminate()
        child.join()
    replay.refresh_from_db()
    if replay.status == PolicyReplay.Status.SUCCEEDED:
        report = replay.report
        print(
            f"# replay: {replay.total} outputs in {elapsed:.1f}s, flipped {report['flipped']}, "
            f"matrix {report['matrix']}",
            file=sys.stderr,
        )
        return {"seconds": elapsed, "total": replay.total, "projected": False}
    if not stopped:
        raise SystemExit(f"the replay ended {replay.status}: {replay.error}")
    rate = replay.done / elapsed if replay.done else 0.0
    projected = replay.total / rate if rate else float("inf")
    print(
        f"# replay: stopped after {elapsed:.0f}s at {replay.done} of {replay.total} outputs "
        f"({rate:.0f} outputs/s); {projected:.0f}s projected for all",
        file=sys.stderr,
    )
    return {"seconds": projected, "total": replay.total, "projected": True}


def report(stats: dict, line) -> None:
    name = "replay_1m" if stats["total"] == 1_000_000 else f"replay_{stats['total']}"
    suffix = " (projected from progress)" if stats["projected"] else ""
    line(name, stats["seconds"], TARGET_S, "s", f"<{TARGET_S:.0f}s{suffix}", stats["seconds"] < TARGET_S, digits=0)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench import run as bench_run  # sets the bench settings and the in-memory broker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=int, default=1_000_000)
    parser.add_argument("--budget", type=float, default=TARGET_S * 1.1, help="seconds before the replay is stopped")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-") as tmp:
        bench_run.recreate_database()
        bench_run.prepare(Path(tmp))
        report(measure(args.outputs, args.budget), bench_run.line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
