"""Outbound HTTP (apps/connectors/clients/http.py): the request-time SSRF guard pinned to the checked address,
the allow-list, Retry-After, redirects and the failures every connector relies on."""

import datetime as dt
import socket
import time
from email.utils import format_datetime

import pytest
import requests

from apps.connectors.clients import http
from apps.connectors.clients.errors import ConnectorError
from standins.server import Response, StandIn

PUBLIC = "93.184.215.14"  # a public address; no test connects to it (see the rebinding tests)


def ok(standin, request):
    return Response(200, {"ok": True})


@pytest.fixture
def remote():
    routes = [
        ("GET", "/ok", ok),
        ("POST", "/ok", ok),
        ("GET", "/missing", lambda standin, request: Response(404, {"error": "not_found"})),
        (
            "GET",
            "/moved",
            lambda standin, request: Response(302, "", {"Location": "http://169.254.169.254/latest/meta-data/"}),
        ),
    ]
    with StandIn(routes) as standin:
        yield standin


@pytest.fixture
def allow_loopback(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.20",
        "169.254.169.254",  # link-local: cloud metadata
        "100.100.100.200",  # shared address space (100.64.0.0/10): one cloud's metadata
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::7",
        "::ffff:127.0.0.1",  # IPv4-mapped IPv6 carrying loopback
        "::ffff:10.0.0.1",
    ],
)
def test_private_addresses_are_refused(address, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    with pytest.raises(http.BlockedAddress, match="resolves to a private address") as caught:
        http.resolve_checked(address, 80)
    assert caught.value.permanent


def test_a_public_address_passes(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    assert http.resolve_checked(PUBLIC, 443)[0][4][0] == PUBLIC


def test_allow_list_by_host_and_by_network(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["localhost"]
    assert http.resolve_checked("localhost", 80)
    with pytest.raises(http.BlockedAddress):
        http.resolve_checked("127.0.0.1", 80)  # the host, not its address, was allowed

    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.0/8"]
    assert http.resolve_checked("127.0.0.1", 80)
    assert http.resolve_checked("::ffff:127.0.0.1", 80)  # judged as the IPv4 address it carries
    with pytest.raises(http.BlockedAddress):
        http.resolve_checked("10.0.0.1", 80)

    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["10.0.0.0/8"]
    with pytest.raises(http.BlockedAddress):
        http.resolve_checked("127.0.0.1", 80)


def test_a_request_to_a_private_address_never_leaves(remote, settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    with pytest.raises(http.BlockedAddress, match=r"127\.0\.0\.1 resolves to a private address"):
        http.request(http.session(), "GET", f"{remote.url}/ok", system="The portal")
    with pytest.raises(http.BlockedAddress):
        http.check_address(f"{remote.url}/ok")
    assert remote.requests == []
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    assert http.request(http.session(), "GET", f"{remote.url}/ok", system="The portal").json() == {"ok": True}


@pytest.fixture
def rebinding_dns(monkeypatch):
    """A resolver for rebind.example that answers a public address first and loopback afterwards (DNS
    rebinding); every other name and address resolves as usual. Returns the list of answers given."""
    real = socket.getaddrinfo
    answers = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "rebind.example":
            return real(host, port, *args, **kwargs)
        address = PUBLIC if not answers else "127.0.0.1"
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_the_address_is_checked_when_the_request_is_made(remote, settings, rebinding_dns):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    url = f"http://rebind.example:{remote.port}/ok"
    http.check_address(url)  # saving the URL: the name looked public
    with pytest.raises(http.BlockedAddress, match=r"rebind\.example resolves to a private address \(127\.0\.0\.1\)"):
        http.request(http.session(), "GET", url, system="The portal")
    assert rebinding_dns == [PUBLIC, "127.0.0.1"]
    assert remote.requests == []


def test_the_connection_goes_to_the_checked_address(remote, settings, rebinding_dns, monkeypatch):
    """Resolve once, connect to that answer: a second lookup (which would say loopback) never happens.
    The connect itself is intercepted so that no packet goes to the public address."""
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = []
    connects = []

    def create_connection(address, *args, **kwargs):
        connects.append(address)
        raise ConnectionRefusedError("no route to the public test address")

    monkeypatch.setattr("urllib3.util.connection.create_connection", create_connection)
    with pytest.raises(ConnectorError, match="Cannot reach The portal at rebind.example"):
        http.request(http.session(), "GET", f"http://rebind.example:{remote.port}/ok", system="The portal", attempts=1)
    assert connects == [(PUBLIC, remote.port)]
    assert rebinding_dns == [PUBLIC]
    assert remote.requests == []


def test_retry_after_in_seconds_or_as_an_http_date():
    def answer(value):
        response = requests.Response()
        response.headers["Retry-After"] = value
        return response

    now = dt.datetime.now(dt.UTC)
    assert http.retry_after_seconds(answer("7")) == 7
    assert 118 < http.retry_after_seconds(answer(format_datetime(now + dt.timedelta(minutes=2), usegmt=True))) <= 120
    assert (
        118
        < http.retry_after_seconds(answer((now + dt.timedelta(minutes=2)).strftime("%a, %d %b %Y %H:%M:%S -0000")))
        <= 120
    )
    assert http.retry_after_seconds(answer(format_datetime(now - dt.timedelta(minutes=2), usegmt=True))) == 0
    assert http.retry_after_seconds(answer("soon"), default=30) == 30
    assert http.retry_after_seconds(requests.Response(), default=12) == 12


def test_a_short_retry_after_date_is_waited_out(remote, allow_loopback):
    soon = format_datetime(dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=2), usegmt=True)
    remote.fail_next("ratelimit", retry_after=soon)
    started = time.monotonic()
    assert http.request(http.session(), "GET", f"{remote.url}/ok", system="The portal").status_code == 200
    assert 0.9 < time.monotonic() - started < 2.5
    assert len(remote.requests) == 2


def test_a_long_retry_after_date_is_raised_with_its_delay(remote, allow_loopback):
    later = format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), usegmt=True)
    remote.fail_next("ratelimit", retry_after=later)
    with pytest.raises(http.RateLimited) as caught:
        http.request(http.session(), "GET", f"{remote.url}/ok", system="The portal")
    assert 3590 < caught.value.retry_after <= 3600
    assert len(remote.requests) == 1


def test_a_redirect_is_refused_not_followed(remote, allow_loopback):
    with pytest.raises(ConnectorError, match=r"The portal answered a redirect \(302\) to http://169\.254") as caught:
        http.request(http.session(), "GET", f"{remote.url}/moved", system="The portal")
    assert caught.value.permanent
    assert [r.path for r in remote.requests] == ["/moved"]


def test_statuses_the_caller_handles_are_returned(remote, allow_loopback):
    response = http.request(http.session(), "GET", f"{remote.url}/missing", system="The portal", allow_statuses=(404,))
    assert response.status_code == 404
    with pytest.raises(ConnectorError, match="The portal answered 404") as caught:
        http.request(http.session(), "GET", f"{remote.url}/missing", system="The portal")
    assert caught.value.permanent


def test_a_timed_out_post_is_resent_only_when_declared_idempotent(remote, allow_loopback):
    remote.fail_next("slow", seconds=1.0)
    with pytest.raises(ConnectorError, match="The portal did not answer within 0.3s"):
        http.request(http.session(), "POST", f"{remote.url}/ok", system="The portal", timeout=0.3)
    assert len(remote.requests) == 1
    remote.fail_next("slow", seconds=1.0)
    response = http.request(
        http.session(), "POST", f"{remote.url}/ok", system="The portal", timeout=0.3, idempotent=True
    )
    assert response.status_code == 200 and len(remote.requests) == 3


def test_a_post_answered_503_is_not_resent_but_a_get_is(remote, allow_loopback):
    remote.fail_next("unavailable")
    with pytest.raises(ConnectorError, match="answered 503"):
        http.request(http.session(), "POST", f"{remote.url}/ok", system="The portal")
    assert len(remote.requests) == 1  # the remote may have applied it: resending could write twice
    remote.fail_next("unavailable")
    assert http.request(http.session(), "GET", f"{remote.url}/ok", system="The portal").status_code == 200
    assert len(remote.requests) == 3


def test_a_refused_connection_is_retried_even_for_a_post(allow_loopback):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(ConnectorError, match="Cannot reach The portal"):
        http.request(http.session(), "POST", f"http://127.0.0.1:{port}/ok", system="The portal", attempts=2)
    assert http._never_connected(requests.ConnectionError(http.NewConnectionError(None, "refused")))


def test_the_session_bounds_calls_that_name_no_timeout(remote, allow_loopback):
    """Libraries that call the session themselves (simple-salesforce) get the session's timeout."""
    remote.fail_next("slow", seconds=1.0)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        http.session(timeout=0.3).get(f"{remote.url}/ok")
    assert time.monotonic() - started < 0.9


def test_an_untrusted_certificate_is_a_clear_permanent_error(allow_loopback):
    with StandIn([("GET", "/ok", ok)], tls=True) as remote:
        with pytest.raises(ConnectorError, match="TLS certificate is not trusted") as caught:
            http.request(http.session(), "GET", f"{remote.url}/ok", system="The portal")
        assert caught.value.permanent
        trusting = http.session()
        trusting.verify = remote.ca_file
        assert http.request(trusting, "GET", f"{remote.url}/ok", system="The portal").json() == {"ok": True}
