"""Recording what auditors need beyond history: exports of audit data are access events themselves."""

import json

from apps.accounts.models import AccessEvent
from apps.accounts.services import access_event_record


def audit_export_record(*, request, what: str, format: str, filters: dict) -> AccessEvent:
    """Who exported which audit data, when, from where, with which filters."""
    shown = {key: str(value) for key, value in filters.items() if value not in (None, "")}
    detail = f"{what} as {format}" + (f" {json.dumps(shown, sort_keys=True)}" if shown else "")
    return access_event_record(kind=AccessEvent.Kind.EXPORT, request=request, user=request.user, detail=detail)
