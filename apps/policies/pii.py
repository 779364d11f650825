"""Built-in PII detection used as a policy signal and for redaction."""

import re
from dataclasses import dataclass

_PATTERNS = {
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
    "phone": re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)"),
    "card": re.compile(r"\b(?:\d[ -]?){13,19}\b"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b"),
}


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


def _luhn_ok(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    checksum = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        checksum += digit
    return len(digits) >= 13 and checksum % 10 == 0


_DIGIT = re.compile(r"\d")


def scan(text: str) -> list[Finding]:
    findings: list[Finding] = []
    taken: list[range] = []
    text = text or ""
    # Each kind needs an "@" or a digit; most texts have no "@" and many no digit, so most scans are skipped.
    has_digit = _DIGIT.search(text) is not None
    for kind in ("email", "iban", "card", "phone"):
        if not ("@" in text if kind == "email" else has_digit):
            continue
        for match in _PATTERNS[kind].finditer(text):
            if kind == "card" and not _luhn_ok(match.group()):
                continue
            if any(match.start() in span for span in taken):
                continue
            findings.append(Finding(kind, match.start(), match.end()))
            taken.append(range(match.start(), match.end()))
    return sorted(findings, key=lambda f: f.start)


def redact(text: str, findings: list[Finding]) -> str:
    for finding in sorted(findings, key=lambda f: f.start, reverse=True):
        text = text[: finding.start] + f"[{finding.kind} redacted]" + text[finding.end :]
    return text
