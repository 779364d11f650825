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

RECORDINGS = Path(__file__).parent / "recordings"


def recording(name: str) -> dict:
    """A fresh copy of the response bodies recorded for one vendor (standins/recordings/<name>.json)."""
    return json.loads((RECORDINGS / f"{name}.json").read_text())


class StandIn:
    def __init__(
        self,
        routes: list[Route],
        *,
        tls: bool = False,
        port: int = 0,
        slow_seconds: float = 3.0,
        fault_bodies: dict[str, object] | None = None,
        tls_dir: str | None = None,
    ):
        """`fault_bodies` gives a fault the remote's own error body (e.g. {"auth": [{"errorCode": ...}]});
        `tls_dir` keeps the TLS certificate there and reuses it, so a CA bundle path stays valid across runs."""
        self.routes = [(method, re.compile(pattern + r"\Z"), handler) for method, pattern, handler in routes]
        self.requests: list[Request] = []
        self.state: dict = {}  # what the fake system holds (records, created tasks), per stand-in
        self.slow_seconds = slow_seconds
        self.fault_bodies = fault_bodies or {}
        self._faults: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self.ca_file: str | None = None
        if tls:
            self.ca_file = _self_signed(self._server, tls_dir)
        # A short poll interval: stop() returns at once rather than after up to half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:
        scheme = "https" if self.ca_file else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

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

    def fail_next(
        self, fault: str, *, times: int = 1, method: str | None = None, path: str | None = None, **options
    ) -> None:
        """The next `times` requests fail (only those with this `method` and `path` regex, when given):
        auth (401), slow (answers only after `seconds`), malformed (not JSON), ratelimit (429 with
        Retry-After: options retry_after), unavailable (503)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        # Faults stay (kind, options) pairs, the shape subclasses read; the request filter rides in options.
        options["match"] = (method, re.compile(path + r"\Z") if path else None)
        with self._lock:
            self._faults.extend([(fault, options)] * times)

    def _take_fault(self, request: Request):
        with self._lock:
            for index, (fault, options) in enumerate(self._faults):
                method, path = options.get("match", (None, None))
                if (method is None or method == request.method) and (path is None or path.match(request.path)):
                    del self._faults[index]
                    return fault, options
        return None

    def _dispatch(self, request: Request) -> Response:
        fault = self._take_fault(request)
        if fault is not None:
            kind, options = fault
            body = self.fault_bodies.get(kind)
            if kind == "auth":
                return Response(401, body or {"error": "invalid_token", "message": "Authentication failed"})
            if kind == "slow":
                time.sleep(options.get("seconds", self.slow_seconds))
            elif kind == "malformed":
                return Response(
                    200, "<html><body>Service temporarily unavailable</body></html>", {"Content-Type": "text/html"}
                )
            elif kind == "ratelimit":
                return Response(
                    429, body or {"error": "rate_limited"}, {"Retry-After": str(options.get("retry_after", 1))}
                )
            elif kind == "unavailable":
                return Response(503, body or {"error": "unavailable"})
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
            # Headers and body leave in two writes: with Nagle on, a keep-alive client waits out its
            # delayed ACK (~40 ms) for the body.
            disable_nagle_algorithm = True

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
                except OSError:  # broken pipe, reset, TLS EOF: the client gave up (a timeout test)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler


def _self_signed(server: ThreadingHTTPServer, tls_dir: str | None = None) -> str:
    """Serve TLS with a self-signed certificate for 127.0.0.1 and localhost (fresh, or the one kept in
    `tls_dir`); return its PEM path (the CA bundle a client must trust)."""
    folder = Path(tls_dir) if tls_dir else Path(tempfile.mkdtemp(prefix="standin-tls-"))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    if not (cert_file.exists() and key_file.exists()) or _expired(cert_file):
        folder.mkdir(parents=True, exist_ok=True)
        _write_certificate(cert_file, key_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return str(cert_file)


def _expired(cert_file: Path) -> bool:
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return certificate.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=1)


def _write_certificate(cert_file: Path, key_file: Path) -> None:
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
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
