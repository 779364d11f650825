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
