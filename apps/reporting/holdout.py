"""The control group: a deterministic share of each use case's subjects that never gets a recommendation.

A subject's place is a point in [0, 1) hashed from the use case's slug and the subject key; it is held out
when the point falls below the use case's holdout_share. No state, no randomness: every process (web, worker,
widget, ROI) agrees, the same subject stays in its group while the share is unchanged, and raising the share
only moves treated subjects into the holdout (never the reverse).
"""

import hashlib
from decimal import Decimal

from apps.workflows.models import UseCase


def holdout_point(slug: str, subject_key: str) -> Decimal:
    digest = hashlib.sha256(f"holdout|{slug}|{subject_key}".encode()).digest()
    # Exact arithmetic: a subject right at the share's edge lands on the same side everywhere.
    return Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64)


def is_held_out(use_case: UseCase, subject_key: str) -> bool:
    """Whether `subject_key` is in `use_case`'s control group (never shown a recommendation)."""
    share = use_case.holdout_share or Decimal("0")
    if share <= 0:
        return False
    return holdout_point(use_case.slug, (subject_key or "").strip()) < share
