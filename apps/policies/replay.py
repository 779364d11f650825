"""Replay before activation: a version's rules re-evaluated on the last N days of real outputs, side by side
with the policy's active version (the baseline), so an approver sees what would change before it does.

Inputs of each output are rebuilt from what was stored when it was decided: the output (Recommendation
content), the proposed action, confidence, cost and subject; freshness and quality from the stored
PolicyDecision signals; the data-gate findings from the stored decision (a property of the data at the time,
not of the rules); the context record from the run's ContextSnapshot when its values were stored. A context
that was not stored (outputs submitted by an outside model, datasets that keep only a hash) is `{}`; the
report counts those outputs.

Both the draft and the baseline are evaluated with `evaluation.evaluate` on the same rebuilt inputs, so a flip
is caused by the rule change alone, never by a lossy rebuild. The stored decision is not the baseline: it is
compared with the re-evaluated baseline, and the report says how many agree (the fidelity of the rebuild).
"""

import hashlib
import json
import logging
import statistics
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

from django.db import transaction

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.core.permissions import has_object_permission
from apps.core.tasks import send_after_commit
from apps.reviews.models import ReviewVerdict
from apps.workflows.models import ContextSnapshot, Recommendation, UseCase

from . import evaluation, pii
from .models import PolicyReplay, PolicyVersion, Rule
from .selectors import policy_active_version

logger = logging.getLogger(__name__)

CHUNK = 2000
SAMPLE_SIZE = 20
MAX_DAYS = 90
REPLAYABLE_STATES = (PolicyVersion.State.DRAFT, PolicyVersion.State.IN_REVIEW)
# The inputs read per output: one query per chunk, no model instances (a replay reads up to millions of rows).
_COLUMNS = (
    "pk",
    "use_case_id",
    "run_id",
    "subject_key",
    "content",
    "confidence",
    "proposed_action",
    "cost",
    "created_at",
    "policy_decision__effect",
    "policy_decision__version_id",
    "policy_decision__signals",
    "policy_decision__fired_rules",
)


def _hash_rules(rules: tuple[evaluation.RuleSpec, ...]) -> str:
    """sha256 over the rules in evaluation order, everything but their ids: any edit changes it."""
    payload = json.dumps([list(rule[1:]) for rule in rules], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def rules_hash(version: PolicyVersion) -> str:
    return _hash_rules(evaluation.read_rules(version.pk))


def replay_is_current(version: PolicyVersion) -> bool:
    """A succeeded replay of exactly the version's current rules exists (approval requires one)."""
    return PolicyReplay.objects.filter(
        version=version, status=PolicyReplay.Status.SUCCEEDED, rules_hash=rules_hash(version)
    ).exists()


def policy_replay_latest(*, version: PolicyVersion) -> PolicyReplay | None:
    return (
        PolicyReplay.objects.filter(version=version)
        .select_related("baseline", "requested_by")
        .order_by("-requested_at", "-pk")
        .first()
    )


def policy_replay_request(*, actor: Actor, version: PolicyVersion, days: int) -> PolicyReplay:
    """Start a replay of `version` over the last `days` days (1–90). Needs approve_policy or change_policy on
    the policy; only a draft or a version in review is replayed. A replay of the same rules still pending or
    running is returned instead of starting a second one."""
    if not (
        has_object_permission(actor.user, "approve_policy", version.policy)
        or has_object_permission(actor.user, "change_policy", version.policy)
    ):
        raise PermissionDenied()
    try:
        days = int(days)
    except (TypeError, ValueError):
        raise ServiceError("Days must be a whole number.", field="days") from None
    if not 1 <= days <= MAX_DAYS:
        raise ServiceError(f"Days must be between 1 and {MAX_DAYS}.", field="days")
    with transaction.atomic():
        version = PolicyVersion.objects.select_for_update().select_related("policy").get(pk=version.pk)
        if version.state not in REPLAYABLE_STATES:
            raise ServiceError(
                f"Only a draft or a version in review is replayed; this one is {version.get_state_display()}."
            )
        current = rules_hash(version)
        unfinished = (
            PolicyReplay.objects.filter(
                version=version,
                rules_hash=current,
                days=days,
                status__in=[PolicyReplay.Status.PENDING, PolicyReplay.Status.RUNNING],
            )
            .order_by("-pk")
            .first()
        )
        if unfinished is not None:
            return unfinished
        replay = PolicyReplay.objects.create(
            version=version,
            baseline=policy_active_version(policy_id=version.policy_id),
            rules_hash=current,
            days=days,
            requested_by=actor.user,
            requested_at=clock.now(),
        )
        from .tasks import policy_replay_task  # tasks import this module

        send_after_commit(policy_replay_task, replay.pk)
    return replay


def _context_records(run_ids: list[int]) -> dict[int, dict]:
    records = {}
    for run_id, stored in ContextSnapshot.objects.filter(run_id__in=run_ids, values_hashed=False).values_list(
        "run_id", "records"
    ):
        if stored and run_id not in records:
            records[run_id] = stored[0]
    return records


def _median_review_minutes(use_case: UseCase) -> tuple[float, str]:
    """Median reviewer handling time in the use case's queue (last 1,000 verdicts), else its manual baseline."""
    if use_case.review_queue_id:
        seconds = list(
            ReviewVerdict.objects.filter(task__queue_id=use_case.review_queue_id, seconds_spent__gt=0)
            .order_by("-created_at")
            .values_list("seconds_spent", flat=True)[:1000]
        )
        if seconds:
            return statistics.median(seconds) / 60, f"median of {len(seconds)} verdicts in {use_case.review_queue}"
    minutes = float(use_case.manual_minutes_per_item)
    return minutes, "no reviewer verdicts yet: the use case's manual minutes per item"


def _redacted(value, limit: int) -> str:
    text = str(value)[:limit]
    return pii.redact(text, pii.scan(text))


class _Tally:
    """What the report needs, accumulated chunk by chunk."""

    def __init__(self, draft_rules: tuple):
        self.matrix: dict[str, Counter] = defaultdict(Counter)
        self.review_delta: Counter = Counter()  # use case id → (draft reviews - baseline reviews)
        self.outputs: Counter = Counter()  # use case id → outputs replayed
        self.draft_hits = {rule.id: {"hits": 0, "errors": 0} for rule in draft_rules}
        self.baseline_hits: Counter = Counter()
        self.samples: dict[tuple, list] = defaultdict(list)
        self.context_missing = 0
        self.stored_compared = 0
        self.stored_agree = 0

    def add(self, row: dict, use_case: UseCase, old, new, has_context: bool, context: dict) -> None:
        self.matrix[old.effect][new.effect] += 1
        self.outputs[use_case.pk] += 1
        self.review_delta[use_case.pk] += (new.effect == Rule.Effect.REVIEW) - (old.effect == Rule.Effect.REVIEW)
        for fired in new.fired:
            if fired["rule_id"] in self.draft_hits:
                self.draft_hits[fired["rule_id"]]["errors" if "error" in fired else "hits"] += 1
        for fired in old.fired:
            if fired["rule_id"] is not None:
                self.baseline_hits[fired["name"]] += 1
        self.context_missing += not has_context
        flip = (old.effect, new.effect)
        if old.effect != new.effect and len(self.samples[flip]) < SAMPLE_SIZE:
            self.samples[flip].append(
                {
                    "recommendation_id": row["pk"],
                    "use_case": use_case.slug,
                    "subject": row["subject_key"],
                    "created_at": row["created_at"].isoformat(),
                    "from": old.effect,
                    "to": new.effect,
                    "draft_rules": [f["name"] for f in new.fired],
                    "baseline_rules": [f["name"] for f in old.fired],
                    "text": _redacted(
                        (row["content"] or {}).get("text", "") if isinstance(row["content"], dict) else row["content"],
                        200,
                    ),
                    "context": {str(k): _redacted(v, 60) for k, v in list(context.items())[:6]},
                }
            )

    def sample(self) -> list[dict]:
        """Up to SAMPLE_SIZE flips, taken in turn from each kind of flip so a rare kind is not crowded out."""
        queues = [list(cases) for _, cases in sorted(self.samples.items())]
        picked = []
        while len(picked) < SAMPLE_SIZE and any(queues):
            for cases in queues:
                if cases and len(picked) < SAMPLE_SIZE:
                    picked.append(cases.pop(0))
        return picked


def policy_replay_run(*, replay_id: int) -> PolicyReplay:
    """Run (or, after a lost worker, rerun from the start) one replay; a finished replay is left as it is."""
    replay = PolicyReplay.objects.select_related("version__policy", "baseline").get(pk=replay_id)
    if replay.status in (PolicyReplay.Status.SUCCEEDED, PolicyReplay.Status.FAILED):
        return replay
    started = clock.now()
    PolicyReplay.objects.filter(pk=replay.pk).update(
        status=PolicyReplay.Status.RUNNING, started_at=started, done=0, error=""
    )
    try:
        report, total, current_hash = _replay(replay)
    except Exception as exc:
        logger.exception("replay %s failed", replay.pk)
        PolicyReplay.objects.filter(pk=replay.pk).update(
            status=PolicyReplay.Status.FAILED, error=str(exc)[:2000], finished_at=clock.now()
        )
    else:
        if current_hash != rules_hash(replay.version):
            PolicyReplay.objects.filter(pk=replay.pk).update(
                status=PolicyReplay.Status.FAILED,
                error="The rules were edited while the replay ran; replay again.",
                finished_at=clock.now(),
            )
        else:
            PolicyReplay.objects.filter(pk=replay.pk).update(
                status=PolicyReplay.Status.SUCCEEDED,
                rules_hash=current_hash,
                report=report,
                total=total,
                done=total,
                finished_at=clock.now(),
            )
    replay.refresh_from_db()
    return replay


def replay_outputs(*, replay: PolicyReplay):
    """The outputs a replay covers: those of the use cases now under the policy, in the `days` before the
    request (a fixed window, so a rerun replays the same outputs)."""
    since = replay.requested_at - timedelta(days=replay.days)
    return Recommendation.objects.filter(
        use_case__policy_id=replay.version.policy_id, created_at__gte=since, created_at__lte=replay.requested_at
    )


def _replay(replay: PolicyReplay) -> tuple[dict, int, str]:
    draft, baseline = replay.version, replay.baseline
    # The rules are read once, at the start: their hash is stored and re-checked at the end.
    draft_rules = evaluation.rules_for(draft)
    baseline_rules = evaluation.rules_for(baseline) if baseline is not None else ()
    current_hash = _hash_rules(draft_rules)
    use_cases = {uc.pk: uc for uc in UseCase.objects.filter(policy_id=draft.policy_id).select_related("review_queue")}
    use_case_vars = {
        pk: {"slug": uc.slug, "risk_tier": uc.risk_tier, "business_unit": uc.business_unit}
        for pk, uc in use_cases.items()
    }
    # The use cases as they stood at the start: one moved to another policy mid-replay changes nothing here.
    outputs = replay_outputs(replay=replay).filter(use_case_id__in=list(use_cases))
    total = outputs.count()
    PolicyReplay.objects.filter(pk=replay.pk).update(total=total, rules_hash=current_hash)
    tally = _Tally(draft_rules)
    done, last_pk = 0, 0
    while True:
        rows = [
            dict(zip(_COLUMNS, values, strict=True))
            for values in outputs.filter(pk__gt=last_pk).order_by("pk").values_list(*_COLUMNS)[:CHUNK]
        ]
        if not rows:
            break
        contexts = _context_records([row["run_id"] for row in rows if row["run_id"]])
        for row in rows:
            use_case = use_cases[row["use_case_id"]]
            signals = row["policy_decision__signals"] or {}
            context = contexts.get(row["run_id"])
            inputs = {
                "output": row["content"] if isinstance(row["content"], dict) else {"text": str(row["content"])},
                "context": context or {},
                "action": row["proposed_action"] or {},
                "use_case": use_case_vars[use_case.pk],
                "subject": row["subject_key"],
                "confidence": row["confidence"],
                "freshness": signals.get("freshness", "unknown"),
                "quality": signals.get("quality", "unchecked"),
                "cost": float(row["cost"]),
                "data_gate": [f for f in row["policy_decision__fired_rules"] or () if f.get("gate")],
            }
            old = evaluation.evaluate(baseline, rules=baseline_rules, **inputs)
            new = evaluation.evaluate(draft, rules=draft_rules, **inputs)
            tally.add(row, use_case, old, new, context is not None, inputs["context"])
            if baseline is not None and row["policy_decision__version_id"] == baseline.pk:
                tally.stored_compared += 1
                tally.stored_agree += old.effect == row["policy_decision__effect"]
        done += len(rows)
        last_pk = rows[-1]["pk"]
        PolicyReplay.objects.filter(pk=replay.pk).update(done=done)
    return _report(replay, tally, draft_rules, use_cases, total), total, current_hash


def _report(replay: PolicyReplay, tally: _Tally, draft_rules: tuple, use_cases: dict, total: int) -> dict:
    weeks = replay.days / 7
    per_use_case, hours_total, cost_total = [], 0.0, Decimal("0")
    for pk, count in sorted(tally.outputs.items()):
        use_case = use_cases[pk]
        minutes, basis = _median_review_minutes(use_case)
        reviews_per_week = tally.review_delta[pk] / weeks
        hours = reviews_per_week * minutes / 60
        cost = (Decimal(str(hours)) * use_case.hourly_cost).quantize(Decimal("0.01"))
        hours_total += hours
        cost_total += cost
        per_use_case.append(
            {
                "use_case": use_case.slug,
                "name": use_case.name,
                "outputs": count,
                "review_delta_per_week": round(reviews_per_week, 2),
                "minutes_per_review": round(minutes, 2),
                "minutes_basis": basis,
                "reviewer_hours_per_week": round(hours, 2),
                "hourly_cost": str(use_case.hourly_cost),
                "cost_delta_per_week": str(cost),
            }
        )
    matrix = {old: dict(sorted(new.items())) for old, new in sorted(tally.matrix.items())}
    flipped = sum(count for old, row in matrix.items() for new, count in row.items() if old != new)
    return {
        "outputs": total,
        "days": replay.days,
        "baseline": str(replay.baseline) if replay.baseline else None,
        "matrix": matrix,
        "flipped": flipped,
        "reviewer_hours_per_week": round(hours_total, 2),
        "cost_delta_per_week": str(cost_total),
        "use_cases": per_use_case,
        "rule_hits": [{"name": rule.name, "effect": rule.effect, **tally.draft_hits[rule.id]} for rule in draft_rules],
        "baseline_rule_hits": dict(sorted(tally.baseline_hits.items())),
        "sample": tally.sample(),
        "context_missing": tally.context_missing,
        "stored_compared": tally.stored_compared,
        "stored_agree": tally.stored_agree,
    }
