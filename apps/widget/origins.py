"""Origins that may frame the widget: exactly scheme://host[:port], since each goes verbatim into the
CSP frame-ancestors directive (anything else could inject a directive or widen the list)."""

import re
from urllib.parse import urlsplit

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def origin_normalize(value: str) -> str | None:
    """`value` as a lower-case origin ("https://crm.example.com:8443"), or None when it is not one."""
    value = (value or "").strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if (
        parts.scheme.lower() not in ("http", "https")
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "?" in value
        or "#" in value
        or not _HOST.fullmatch(host)
    ):
        return None
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def origins_valid(values) -> list[str]:
    """The well-formed origins among `values`, as stored: what reaches the CSP header."""
    if not isinstance(values, list):
        return []
    return [value for value in values if isinstance(value, str) and origin_normalize(value) == value]
