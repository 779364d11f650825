"""Outbound HTTP to addresses configured by users (webhooks, REST connectors): the SSRF guard."""

import ipaddress
import socket
from urllib.parse import urlparse

from django.conf import settings

from .errors import ConnectorError


def check_address(url: str) -> None:
    """SSRF guard at request time, on the resolved addresses (DNS rebinding), unless allow-listed."""
    host = urlparse(url).hostname or ""
    if host in settings.DOORSTEP_OUTBOUND_ALLOWLIST:
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise ConnectorError(f"Cannot resolve {host}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            raise ConnectorError(
                f"{host} resolves to a private address ({address}); an admin must allow-list it", permanent=True
            )
