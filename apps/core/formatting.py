"""Values as people read them, shared by pages of every app."""

import datetime as dt


def duration_label(duration: dt.timedelta | None) -> str:
    """ "24 hours", "2 days", "90 minutes": an SLA as people say it."""
    if duration is None:
        return "none"
    seconds = int(duration.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def csv_safe(value) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ (or a tab or carriage return) would be run
    as a formula (CSV injection), so it gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
