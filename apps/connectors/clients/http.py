"""Outbound HTTP for every connector that speaks HTTP (SaaS, REST, model endpoints, webhooks, chat).

Two guarantees the callers rely on:
- SSRF guard at request time: the address is resolved and checked *inside* the connection, and the
  socket connects to the address that was checked, so a DNS answer that changes between check and
  connect (rebinding) cannot reach a private, loopback or link-local address. Proxies from the
  environment are ignored for the same reason. An admin allow-lists hosts or networks in
  DOORSTEP_OUTBOUND_ALLOWLIST (e.g. the demo's local stand-ins).
- Failures become ConnectorError with a message the integrator can act on: timeouts, refused
  connections, authentication failures, malformed JSON, and rate limits (429 with Retry-After is
  waited out when short, and otherwise raised as RateLimited so a task retries after that delay).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .errors import ConnectorError

DEFAULT_TIMEOUT = (3.05, 10.0)  # connect, read (seconds)
MAX_INLINE_WAIT = 5.0  # a Retry-After up to this is waited out in the request; longer ones go back to the task
RETRYABLE_STATUSES = {502, 503, 504}


class RateLimited(ConnectorError):
    """The remote said 429; `retry_after` is how many seconds it asked us to wait."""

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class BlockedAddress(ConnectorError):
    def __init__(self, message: str):
        super().__init__(message, permanent=True)


def _allowlist() -> tuple[set[str], list[ipaddress._BaseNetwork]]:
    hosts, networks = set(), []
    for entry in settings.DOORSTEP_OUTBOUND_ALLOWLIST:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.lower())
    return hosts, networks


def _unmapped(address: ipaddress._BaseAddress) -> ipaddress._BaseAddress:
    """::ffff:10.0.0.1 is 10.0.0.1: judge (and allow-list) the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _forbidden(address: ipaddress._BaseAddress) -> bool:
    # Not global: private, loopback, link-local, reserved and unspecified addresses, and also shared address
    # space (100.64.0.0/10, where one cloud keeps its metadata service), which is_private leaves out.
    return not address.is_global or address.is_multicast


def resolve_checked(host: str, port: int) -> list[tuple]:
    """getaddrinfo for `host`, refusing any answer in a private range unless the host or address is
    allow-listed. Returns the addrinfo entries to connect to."""
    allowed_hosts, allowed_networks = _allowlist()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectorError(f"Cannot resolve {host}: {exc.strerror or exc}") from exc
    if host.lower() in allowed_hosts:
        return infos
    for info in infos:
        address = _unmapped(ipaddress.ip_address(info[4][0].split("%")[0]))
        if _forbidden(address) and not any(address in network for network in allowed_networks):
            raise BlockedAddress(
                f"{host} resolves to a private address ({address}); an admin must allow-list it "
                "(DOORSTEP_OUTBOUND_ALLOWLIST)"
            )
    return infos


def check_address(url: str) -> None:
    """The same check, ahead of time, for a form or a connection test to report a bad URL early."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConnectorError(f"Not an http(s) URL: {url!r}", permanent=True)
    resolve_checked(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))


def _guarded_new_conn(self) -> socket.socket:
    """Connect to an address that passed the check, not to whatever the name resolves to next. The
    IP literal replaces the name for the connect only; TLS still checks the certificate of the name."""
    name = self._dns_host
    failure: Exception | None = None
    for info in resolve_checked(name, self.port):
        self._dns_host = info[4][0]
        try:
            return HTTPConnection._new_conn(self)
        except (NewConnectionError, ConnectTimeoutError) as exc:
            failure = exc
        finally:
            self._dns_host = name
    raise failure


class _GuardedHTTPConnection(HTTPConnection):
    _new_conn = _guarded_new_conn


class _GuardedHTTPSConnection(HTTPSConnection):
    _new_conn = _guarded_new_conn


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    def __init__(self, *args, timeout: float | tuple[float, float] = DEFAULT_TIMEOUT, **kwargs):
        self.default_timeout = timeout
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}

    def send(self, request, timeout=None, **kwargs):
        # A library that calls the session without a timeout (simple-salesforce) must not wait forever.
        return super().send(request, timeout=self.default_timeout if timeout is None else timeout, **kwargs)


def session(*, timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> requests.Session:
    """A requests session whose every connection goes through the SSRF guard. `timeout` applies to calls
    that name none (a library calling the session itself)."""
    s = requests.Session()
    s.trust_env = False  # an environment proxy would resolve the name itself, past the guard
    adapter = GuardedAdapter(pool_connections=4, pool_maxsize=8, timeout=timeout)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def retry_after_seconds(response: requests.Response, default: float = 30.0) -> float:
    """Retry-After as seconds (it may be a number of seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if moment.tzinfo is None:  # "-0000": HTTP dates are always GMT
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0.0, moment.timestamp() - time.time())


def _reason(exc: Exception) -> str:
    """The cause of a requests error without the pool and URL wrappers (urllib3's MaxRetryError.reason)."""
    cause = exc.args[0] if exc.args else exc
    return str(getattr(cause, "reason", cause))[:200]


def _excerpt(response: requests.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:200] + ("…" if len(text) > 200 else "")


def _never_connected(exc: requests.ConnectionError) -> bool:
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the connection error
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


def request(
    http: requests.Session,
    method: str,
    url: str,
    *,
    system: str,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    attempts: int = 2,
    max_inline_wait: float = MAX_INLINE_WAIT,
    idempotent: bool | None = None,
    allow_statuses: tuple[int, ...] = (),
    **kwargs,
) -> requests.Response:
    """One HTTP call with the failures every connector handles alike. `system` names the remote in
    messages ("Salesforce", "the model endpoint"). Retries transient failures (connection reset, 502-504,
    short 429s) up to `attempts` times; a non-idempotent call is resent only when it never reached the
    remote (connection refused, short 429) (by default the
    method decides; a read sent as POST, like a search, passes idempotent=True). Statuses in
    `allow_statuses` are returned for the caller to handle (404: no such record)."""
    kwargs.setdefault("allow_redirects", False)  # a redirect could lead past the address check of the first URL
    if idempotent is None:
        idempotent = method.upper() in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
    for attempt in range(1, attempts + 1):
        last = attempt == attempts
        try:
            response = http.request(method, url, timeout=timeout, **kwargs)
        except requests.Timeout as exc:
            if idempotent and not last:
                continue
            limit = timeout if isinstance(timeout, int | float) else timeout[1]
            raise ConnectorError(f"{system} did not answer within {limit:g}s") from exc
        except requests.exceptions.SSLError as exc:
            raise ConnectorError(
                f"{system} at {urlparse(url).netloc}: the TLS certificate is not trusted or does not match "
                f"({_reason(exc)}); if it is signed by a private CA, set the connector's CA bundle",
                permanent=True,
            ) from exc
        except requests.ConnectionError as exc:
            # A write is resent only when no connection was made: a reset after sending may have been applied.
            if not last and (idempotent or _never_connected(exc)):
                time.sleep(0.2 * attempt)
                continue
            raise ConnectorError(f"Cannot reach {system} at {urlparse(url).netloc}: connection failed") from exc
        except requests.RequestException as exc:
            raise ConnectorError(f"{system}: {exc}", permanent=True) from exc
        if response.status_code in allow_statuses:
            return response
        if response.status_code == 429:
            wait = retry_after_seconds(response)
            if wait <= max_inline_wait and not last:
                time.sleep(wait)
                continue
            raise RateLimited(f"{system} is rate limiting us (429); retry after {wait:g}s", retry_after=wait)
        if response.status_code in RETRYABLE_STATUSES and idempotent and not last:
            time.sleep(0.2 * attempt)
            continue
        if response.status_code in (401, 403):
            raise ConnectorError(
                f"{system} refused the credentials ({response.status_code}): {_excerpt(response)}", permanent=True
            )
        if 300 <= response.status_code < 400:
            raise ConnectorError(
                f"{system} answered a redirect ({response.status_code}) to {response.headers.get('Location', '?')}; "
                "configure the final URL",
                permanent=True,
            )
        if response.status_code >= 400:
            raise ConnectorError(
                f"{system} answered {response.status_code}: {_excerpt(response)}",
                permanent=400 <= response.status_code < 500,
            )
        return response
    raise AssertionError("unreachable")  # the loop returns or raises on its last attempt


def json_body(response: requests.Response, *, system: str) -> dict | list:
    """The response's JSON, or a clear error when the remote sent something else."""
    try:
        return response.json()
    except ValueError as exc:
        raise malformed(response, system=system) from exc


def malformed(response: requests.Response, *, system: str) -> ConnectorError:
    """The error for an answer that is not the JSON we expected (for callers whose library parsed it)."""
    content_type = response.headers.get("Content-Type", "no content type")
    return ConnectorError(
        f"{system} sent a malformed response (expected JSON, got {content_type}): {_excerpt(response)}"
    )
