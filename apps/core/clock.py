"""The one clock services read, so the demo can replay 90 days of activity on a simulated clock."""

import contextlib
import contextvars
import datetime as dt

from django.utils import timezone

_simulated_now: contextvars.ContextVar[dt.datetime | None] = contextvars.ContextVar("simulated_now", default=None)


def now() -> dt.datetime:
    return _simulated_now.get() or timezone.now()


@contextlib.contextmanager
def simulated(at: dt.datetime):
    token = _simulated_now.set(at)
    try:
        yield
    finally:
        _simulated_now.reset(token)
