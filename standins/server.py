"""The server every stand-in runs on: routes, recorded requests, and faults a test can switch on.

with StandIn(routes) as crm:            # listens on 127.0.0.1:<free port>
    crm.fail_next("ratelimit", retry_after=1)
    client_under_test(base_url=crm.url)
    assert crm.requests[-1].path == "/..."
"""

from __future__ import annotations

import datetime as dt
import json
import re
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    @property
    def json(self):
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: object = None  # dict/list → JSON, str/bytes → as is
    headers: dict[str, str] = field(default_factory=dict)


# A handler takes the stand-in and the request and returns a Response.
Route = tuple[str, str, object]  # (method, path regex with named groups, handler)


FAULTS = {"auth", "slow", "malformed", "ratelimit", "unavailable"}


class StandIn:
    def __init__(self, routes: list[Route], *, tls: bool = False, port: int = 0, slow_seconds: float = 3.0):
        self.routes = [(method, re.compile(pattern + r"\Z"), handler) for method, pattern, handler in routes]
        self.requests: list[Request] = []
        self.state: dict = {}  # what the fake system holds (records, created tasks), per stand-in
        self.slow_seconds = slow_seconds
        self._faults: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self.ca_file: str | None = None
        if tls:
            self.ca_file = _self_signed(self._server)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.ca_file else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_port}"

    def start(self) -> StandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next(self, fault: str, *, times: int = 1, **options) -> None:
        """The next `times` requests fail: auth (401), slow (no answer in time), malformed (not JSON),
        ratelimit (429 with Retry-After: options retry_after), unavailable (503)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            self._faults.extend([(fault, options)] * times)

    def _take_fault(self):
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _dispatch(self, request: Request) -> Response:
        fault = self._take_fault()
        if fault is not None:
            kind, options = fault
            if kind == "auth":
                return Response(401, {"error": "invalid_token", "message": "Authentication failed"})
            if kind == "slow":
                time.sleep(options.get("seconds", self.slow_seconds))
            elif kind == "malformed":
                return Response(
                    200, "<html><body>Service temporarily unavailable</body></html>", {"Content-Type": "text/html"}
                )
            elif kind == "ratelimit":
                return Response(429, {"error": "rate_limited"}, {"Retry-After": str(options.get("retry_after", 1))})
            elif kind == "unavailable":
                return Response(503, {"error": "unavailable"})
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                return handler(self, request)
        return Response(404, {"error": "not_found", "path": request.path})

    def _handler_class(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _serve(self):
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=parsed.path,
                    query={k: v[-1] for k, v in parse_qs(parsed.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                with standin._lock:
                    standin.requests.append(request)
                try:
                    response = standin._dispatch(request)
                except Exception as exc:  # noqa: BLE001 - a stand-in bug shows as a 500, like a real server
                    response = Response(500, {"error": type(exc).__name__, "message": str(exc)})
                body = response.body
                headers = dict(response.headers)
                if isinstance(body, dict | list) or body is None:
                    body = json.dumps(body if body is not None else {}).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(body, str):
                    body = body.encode()
                try:
                    self.send_response(response.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler


def _self_signed(server: ThreadingHTTPServer) -> str:
    """Serve TLS with a fresh self-signed certificate for 127.0.0.1 and localhost; return its PEM path
    (the CA bundle a client must trust)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="standin-tls-"))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return str(cert_file)
