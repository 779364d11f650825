"""Policy evaluation throughput: a realistic rule set (10 rules, with the built-in PII scan) evaluated on
realistic outputs by Doorstep's engine, `apps.policies.evaluation.evaluate` (CEL compiled once by the `cel`
package), against the same rules in `cel-python` (celpy, pure Python), in the same run, on one core.

Both sides do the same work per output: the PII scan, the signals, every rule in order, an evaluation error
counted as review, the strongest effect. The outputs are the same for both, and the two sides must agree on
every verdict (checked on a sample before timing).

Prints `BENCH policy_eval_throughput value=<outputs/s/core> baseline=<celpy outputs/s> ratio=<x>
target=>=20000/s and >=20x ok|short`, and as a comment the same engine without the two regex rules
(`matches()`), to show what the regex rules cost (CEL's own matches() compiled its pattern on every call and
made them 40–100 µs each until evaluation served them from a cache of compiled patterns).

Runs inside bench/run.py (on its database, after the other measures), or alone:
.venv/bin/python bench/policy_eval.py [--seconds 5], which recreates the bench database like run.py does.
"""

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TARGET_PER_S, TARGET_RATIO = 20_000, 20
RULES = [
    {"name": "Low confidence", "condition": "signals.confidence < 0.7", "effect": "review"},
    {"name": "Large discount", "condition": "has(action.discount_pct) && action.discount_pct > 15", "effect": "review"},
    {"name": "Stale data", "condition": 'signals.freshness == "stale"', "effect": "review"},
    {"name": "Failed data quality", "condition": 'signals.quality == "failed"', "effect": "review"},
    {"name": "E-mail address", "condition": '"email" in signals.pii_kinds', "effect": "redact"},
    {
        "name": "Card number",
        "condition": '"card" in signals.pii_kinds || "iban" in signals.pii_kinds',
        "effect": "block",
    },
    {
        "name": "PII on a high-risk use case",
        "condition": 'use_case.risk_tier == "high" && signals.pii_count > 0',
        "effect": "review",
    },
    {"name": "Expensive output", "condition": "signals.cost > 0.05", "effect": "review"},
    {"name": "Refund promise", "condition": 'output.text.matches("(?i)\\\\brefund")', "effect": "review"},
    {
        "name": "Privacy request",
        "condition": 'has(context.subject) && context.subject.matches("(?i)gdpr|delete my data|erasure")',
        "effect": "block",
    },
]
TEXTS = [
    "Account shows falling logins and one late payment this quarter; propose a check-in call with the sponsor "
    "this week and confirm the open support tickets are closed first.",
    "Offer the annual plan at the current price and share the renewal timeline with the finance contact.",
    "Customer asked about the invoice; reply that the charge is correct and attach the usage report.",
    "We will refund the duplicate charge within five business days; no action is needed from you.",
    "Ask the champion, jane.doe@acme-corp.example, to join the quarterly review next Tuesday.",
    "The customer can reach the billing desk on +44 20 7946 0958 between 9 and 5.",
    "Payment failed for card 4111 1111 1111 1111; ask the customer to update the payment method.",
    "Transfer the credit to IBAN DE89 3704 0044 0532 0130 00 once the contract is signed.",
]
SUBJECTS = ["Billing question", "Password reset", "Please delete my data (GDPR)", "Renewal", "Export"]


def outputs(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "output": {"text": rng.choice(TEXTS), "score": round(rng.random(), 3)},
            "context": {"subject": rng.choice(SUBJECTS), "plan": rng.choice(["pro", "team", "enterprise"])}
            if rng.random() < 0.8
            else {},
            "action": {"type": "crm_task", "discount_pct": rng.choice([0, 5, 10, 20])},
            "use_case": {"slug": "bench", "risk_tier": rng.choice(["limited", "high"]), "business_unit": "Sales"},
            "subject": f"ACC-{rng.randrange(10_000):05}",
            "confidence": round(rng.random(), 3),
            "freshness": rng.choice(["fresh", "fresh", "fresh", "stale"]),
            "quality": rng.choice(["passed", "passed", "failed"]),
            "cost": round(rng.random() / 10, 4),
        }
        for _ in range(n)
    ]


class CelPython:
    """The same evaluation as apps.policies.evaluation.evaluate, with the rules run by celpy."""

    def __init__(self, rules: list[dict]):
        import celpy

        self.celpy = celpy
        env = celpy.Environment()
        self.rules = [(r["name"], r["effect"], env.program(env.compile(r["condition"]))) for r in rules]

    def evaluate(self, item: dict) -> str:
        from apps.policies import pii
        from apps.policies.models import Rule

        findings = pii.scan(str(item["output"].get("text", "")))
        signals = {
            "pii_kinds": sorted({f.kind for f in findings}),
            "pii_count": len(findings),
            "freshness": item["freshness"],
            "quality": item["quality"],
            "cost": item["cost"],
            "confidence": item["confidence"] if item["confidence"] is not None else 0.0,
        }
        activation = {
            name: self.celpy.json_to_cel(value)
            for name, value in (
                ("output", item["output"]),
                ("context", item["context"]),
                ("action", item["action"]),
                ("use_case", item["use_case"]),
                ("subject", item["subject"]),
                ("signals", signals),
            )
        }
        effect = Rule.Effect.ALLOW
        for _name, rule_effect, program in self.rules:
            try:
                result = program.evaluate(activation)
                failed = isinstance(result, self.celpy.CELEvalError)
            except Exception:  # noqa: BLE001 - fail safe to review, as evaluate() does
                failed = True
            if failed:
                effect = max(effect, Rule.Effect.REVIEW, key=Rule.STRENGTH.get)
            elif isinstance(result, self.celpy.celtypes.BoolType) and result:
                effect = max(effect, rule_effect, key=Rule.STRENGTH.get)
        return str(effect)


def _version(rules: list[dict], name: str):
    """A version in review (its rules frozen and cached, as the active version's are on the hot path)."""
    from django.contrib.auth import get_user_model

    from apps.core.actors import Actor
    from apps.policies.models import Policy
    from apps.policies.services import policy_version_create, policy_version_submit

    actor = Actor(user=get_user_model().objects.filter(is_superuser=True).first())
    policy = Policy.objects.create(name=name, business_unit="Sales")
    version = policy_version_create(actor=actor, policy=policy, rules=rules)
    return policy_version_submit(actor=actor, version=version)


def _rate(evaluate, items: list[dict], seconds: float) -> float:
    """Outputs per second over whole passes of `items` for at least `seconds` (at least one pass)."""
    started, done = time.perf_counter(), 0
    while True:
        for item in items:
            evaluate(item)
        done += len(items)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def measure(seconds: float = 5.0) -> dict[str, float]:
    from apps.policies import evaluation

    version = _version(RULES, "Bench: ten rules")
    no_regex = _version([r for r in RULES if "matches(" not in r["condition"]], "Bench: without regex rules")
    celpy_side = CelPython(RULES)
    items = outputs(2000)

    def ours(item, version=version):
        return evaluation.evaluate(version, **item).effect

    disagree = [i for i, item in enumerate(items[:300]) if ours(item) != celpy_side.evaluate(item)]
    if disagree:
        raise SystemExit(f"the two engines disagree on outputs {disagree[:10]}: not the same rules")
    effects = {}
    for item in items:
        effects[ours(item)] = effects.get(ours(item), 0) + 1
    print(f"# policy_eval: verdicts on {len(items)} outputs: {effects}", file=sys.stderr)
    return {
        "ours": _rate(ours, items, seconds),
        "celpy": _rate(celpy_side.evaluate, items[:200], seconds),
        "no_regex": _rate(lambda item: ours(item, no_regex), items, seconds / 2),
    }


def report(stats: dict[str, float], line) -> None:
    print(f"# policy_eval: the same engine without the two matches() rules: {stats['no_regex']:.0f}/s", file=sys.stderr)
    ours, celpy = stats["ours"], stats["celpy"]
    line(
        "policy_eval_throughput",
        ours,
        celpy,
        "/s",
        f">={TARGET_PER_S}/s and >={TARGET_RATIO}x",
        ours >= TARGET_PER_S and celpy and ours / celpy >= TARGET_RATIO,
        digits=0,
    )


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench import run as bench_run  # sets the bench settings and the in-memory broker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="time on each side (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doorstep-bench-") as tmp:
        bench_run.recreate_database()
        bench_run.prepare(Path(tmp))
        report(measure(args.seconds), bench_run.line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
