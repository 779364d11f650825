"""Evaluating a policy version on one output: CEL conditions compiled once, strongest effect wins.

A rule whose condition cannot be evaluated (missing field, wrong type) sends the output to review:
an error must never let an output through unchecked.
"""

import functools
import re
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import cel

from . import pii
from .models import PolicyVersion, Rule

VARIABLES = ("output", "context", "action", "use_case", "subject", "signals")
# The keys `evaluate` puts in `signals`; a rule naming another one could never match as its author meant.
SIGNALS = ("pii_kinds", "pii_count", "freshness", "quality", "cost", "confidence")

_CEL_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")
_STRING_LITERAL = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_SIGNAL_NAME = re.compile(r"\bsignals\s*(?:\.\s*([A-Za-z_]\w*)|\[)")
_QUOTED_KEY = re.compile(r"\s*[\"']([^\"']*)[\"']")
# CEL's built-in matches() compiles its pattern on every call (40–100 µs for a case-insensitive one, more than
# the rest of a ten-rule evaluation). Calls are renamed, same length so error positions stay right, to a
# function that searches with a compiled pattern kept in a cache.
_MATCHES_CALL = re.compile(r"\bmatches(?=\s*\()")
_CACHED_MATCHES = "rematch"
_MATCHES_LITERAL = re.compile(r"\.\s*matches\s*\(\s*('(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")\s*\)")


@functools.lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _matches(text, pattern) -> bool:
    """CEL matches(): true when the pattern matches anywhere in the string (RE2 syntax is a subset of Python's)."""
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise TypeError("matches() needs a string and a pattern string")
    return _pattern(pattern).search(text) is not None


class ConditionError(ValueError):
    """Why a condition does not compile; `line` and `column` (1-based) point at the fault when known."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        self.line, self.column = line, column
        super().__init__(f"line {line}, column {column}: {message}" if line else message)


def _position(source: str, offset: int) -> tuple[int, int]:
    before = source[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


@functools.lru_cache(maxsize=4096)
def compile_condition(condition: str):
    """The compiled program, cached (the hot path only ever hits the cache); raises ConditionError."""
    if not condition.strip():
        raise ConditionError("The condition is empty.")
    # String literals are blanked (same length) so a quoted "signals.x" or "matches(" is not taken for code.
    code = _STRING_LITERAL.sub(lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[0], condition)
    source, last = "", 0
    for call in _MATCHES_CALL.finditer(code):
        source += condition[last : call.start()] + _CACHED_MATCHES
        last = call.end()
    source += condition[last:]
    for call in _MATCHES_LITERAL.finditer(condition):
        try:
            re.compile(cel.evaluate(call.group(1)))
        except (re.error, ValueError) as exc:
            line, column = _position(condition, call.start(1))
            raise ConditionError(f"Invalid pattern for matches(): {exc}", line=line, column=column) from exc
    try:
        program = cel.compile(source)
    except ValueError as exc:
        match = _CEL_POSITION.search(str(exc))
        if match is None:
            raise ConditionError(str(exc)) from exc
        raise ConditionError(match.group(3), line=int(match.group(1)), column=int(match.group(2))) from exc
    unknown = set(program.variables()) - set(VARIABLES)
    if unknown:
        first = min(
            (m.start() for name in unknown for m in re.finditer(rf"\b{re.escape(name)}\b", condition)), default=None
        )
        line, column = _position(condition, first) if first is not None else (None, None)
        raise ConditionError(
            f"Unknown variable(s): {', '.join(sorted(unknown))}. Use {', '.join(VARIABLES)}.", line=line, column=column
        )
    for match in _SIGNAL_NAME.finditer(code):
        name = match.group(1)
        if name is None:
            quoted = _QUOTED_KEY.match(condition, match.end())
            name = quoted.group(1) if quoted else None
        if name is not None and name not in SIGNALS:
            line, column = _position(condition, match.start())
            raise ConditionError(f"Unknown signal {name!r}. Signals: {', '.join(SIGNALS)}.", line=line, column=column)
    return program


class RuleSpec(NamedTuple):
    """One rule as evaluation reads it, with the parameters of its effect."""

    id: int | None
    name: str
    effect: str
    condition: str
    reviewers: int = 1  # review: independent verdicts needed
    review_queue_id: int | None = None  # review: None means the use case's queue
    redact_fields: tuple[str, ...] = ()  # redact: output fields blanked
    redact_patterns: tuple[str, ...] = ()  # redact: patterns masked in the text


@dataclass
class Verdict:
    effect: str
    fired: list[dict] = field(default_factory=list)
    signals: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)
    redactions: int = 0
    duration_us: int = 0
    reviewers: int = 1  # the most any fired review rule asks for
    review_queue_id: int | None = None  # the queue of the first fired review rule that names one


@functools.lru_cache(maxsize=256)
def _version_rules(version_id: int) -> tuple[RuleSpec, ...]:
    """Rules of a version that left draft: immutable then, so cached by id."""
    return read_rules(version_id)


def read_rules(version_id: int) -> tuple[RuleSpec, ...]:
    return tuple(
        RuleSpec(
            rule.pk,
            rule.name,
            rule.effect,
            rule.condition,
            rule.reviewers,
            rule.review_queue_id,
            tuple(rule.redact_fields or ()),
            tuple(rule.redact_patterns or ()),
        )
        for rule in Rule.objects.filter(version_id=version_id).order_by("order", "pk")
    )


def rules_for(version: PolicyVersion) -> tuple[RuleSpec, ...]:
    """The version's rules in order; a draft's are read afresh (it may change)."""
    if version.state == PolicyVersion.State.DRAFT:
        return read_rules(version.pk)
    return _version_rules(version.pk)


def _redact(output: dict, text: str, findings: list, rules: list[RuleSpec]) -> tuple[dict, int]:
    """The output with the PII findings and the fired redact rules' patterns masked in the text and their
    fields blanked; and how many things were redacted."""
    spans = [(f.start, f.end, f"[{f.kind} redacted]") for f in findings]
    for rule in rules:
        for pattern in rule.redact_patterns:
            spans += [
                (m.start(), m.end(), "[redacted]") for m in _pattern(pattern).finditer(text) if m.end() > m.start()
            ]
    kept, last_end = [], -1
    for start, end, label in sorted(spans):
        if start >= last_end:  # overlapping spans: the first one wins
            kept.append((start, end, label))
            last_end = end
    for start, end, label in reversed(kept):
        text = text[:start] + label + text[end:]
    redacted = dict(output)
    if kept:
        redacted["text"] = text
    fields = {name for rule in rules for name in rule.redact_fields if name in output and name != "text"}
    for name in fields:
        redacted[name] = "[redacted]"
    return redacted, len(kept) + len(fields)


def evaluate(
    version: PolicyVersion | None,
    *,
    output: dict,
    context: dict,
    action: dict,
    use_case: dict,
    subject: str,
    confidence: float | None,
    freshness: str,
    cost: float,
    quality: str = "unchecked",
    data_gate: tuple[dict, ...] | list[dict] = (),
    rules: tuple | None = None,
) -> Verdict:
    """`data_gate`: findings of the data-context gate (apps.connectors.datasets.context_gate), each with a
    name and the least effect it imposes; they count as fired rules, so stale or failing data cannot be
    allowed by any rule set, and the decision names why."""
    started = time.perf_counter_ns()
    text = str(output.get("text", ""))
    findings = pii.scan(text)
    signals = {
        "pii_kinds": sorted({f.kind for f in findings}),
        "pii_count": len(findings),
        "freshness": freshness,
        "quality": quality,
        "cost": cost,
        "confidence": confidence if confidence is not None else 0.0,
    }
    # One Context per output: its variables are converted to CEL once, not once per rule.
    variables = cel.Context(
        {
            "output": output,
            "context": context,
            "action": action,
            "use_case": use_case,
            "subject": subject,
            "signals": signals,
        }
    )
    variables.add_function(_CACHED_MATCHES, _matches)
    fired: list[dict] = []
    effect = Rule.Effect.ALLOW
    reviewers, review_queue_id, redacting = 1, None, []
    if rules is None:  # a caller evaluating many outputs (a replay) passes the rules it read once
        rules = rules_for(version) if version is not None else ()
    for rule in rules:
        try:
            matched = compile_condition(rule.condition).execute(variables) is True
        except Exception as exc:  # noqa: BLE001 - CEL raises KeyError/TypeError/ValueError; all fail safe
            fired.append({"rule_id": rule.id, "name": rule.name, "effect": Rule.Effect.REVIEW, "error": str(exc)})
            effect = max(effect, Rule.Effect.REVIEW, key=Rule.STRENGTH.get)
            continue
        if matched:
            fired.append({"rule_id": rule.id, "name": rule.name, "effect": rule.effect})
            effect = max(effect, rule.effect, key=Rule.STRENGTH.get)
            if rule.effect == Rule.Effect.REVIEW:
                reviewers = max(reviewers, rule.reviewers)
                review_queue_id = review_queue_id or rule.review_queue_id
            elif rule.effect == Rule.Effect.REDACT:
                redacting.append(rule)
    for finding in data_gate:
        fired.append({"rule_id": None, "name": finding["name"], "effect": finding["effect"], "gate": finding["gate"]})
        effect = max(effect, finding["effect"], key=Rule.STRENGTH.get)
    final_output, redactions = dict(output), 0
    if redacting:
        final_output, redactions = _redact(output, text, findings, redacting)
    return Verdict(
        effect=str(effect),
        fired=fired,
        signals=signals,
        output=final_output,
        redactions=redactions,
        duration_us=(time.perf_counter_ns() - started) // 1000,
        reviewers=reviewers,
        review_queue_id=review_queue_id,
    )
