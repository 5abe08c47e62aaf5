"""A web server on 127.0.0.1 that logs every request, and an httpx transport that lets a test
reach nothing else.

``GuardTransport`` is the last line of defence: a request for any address outside
127.0.0.0/8 fails the test loudly (AssertionError) before a socket is opened, so a broken
address check under test can never connect anywhere. Names of the "public internet" in tests
resolve (stub resolver) to documentation addresses (``PUBLIC_IP``, RFC 5737), which this
transport routes to the loopback server.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# stands for a public host (example.com's former address; TEST-NET ranges count as private);
# GuardTransport routes it to the loopback server, so it is never contacted
PUBLIC_IP = "93.184.216.34"


@dataclass
class Logged:
    path: str
    host: str
    headers: dict[str, str]
    status: int = 0


Handler = Callable[[dict[str, str]], tuple[int, dict[str, str], bytes | Iterator[bytes]]]


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    handler: Handler | None = None


class LoopbackServer:
    """Serves ``routes`` (exact paths) and ``prefixes`` (path prefix -> handler of the path)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if tls else "http"
        self.routes: dict[str, Route] = {}
        self.prefixes: dict[str, Callable[[str], tuple[int, dict[str, str], bytes]]] = {}
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                entry = Logged(self.path, self.headers.get("Host", ""), dict(self.headers))
                with server._lock:
                    server.log.append(entry)
                status, headers, body = server._answer(self.path, entry.headers)
                entry.status = status
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    if isinstance(body, bytes):
                        if "Content-Length" not in headers:
                            self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                    else:  # a stream: until the client hangs up or it ends
                        self.send_header("Connection", "close")
                        self.end_headers()
                        for chunk in body:
                            self.wfile.write(chunk)
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self.httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def add(self, path: str, body: bytes = b"", **kw: object) -> str:
        self.routes[path] = Route(body, **kw)  # type: ignore[arg-type]
        return self.url(path)

    def paths(self) -> list[str]:
        with self._lock:
            return [e.path for e in self.log]

    def _answer(
        self, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes | Iterator[bytes]]:
        route = self.routes.get(path)
        if route is None:
            for prefix, make in self.prefixes.items():
                if path.startswith(prefix):
                    return make(path)
            return 404, {"Content-Type": "text/plain"}, b"not found"
        if route.handler is not None:
            return route.handler(headers)
        out = dict(route.headers)
        if route.etag is not None:
            out["ETag"] = route.etag
            if headers.get("If-None-Match") == route.etag:
                return 304, {"ETag": route.etag}, b""
        return route.status, out, route.body


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-response (size caps) is what the tests do on purpose


class GuardTransport(httpx.BaseTransport):
    """Lets requests reach 127.0.0.0/8 (and PUBLIC_IP, routed to the loopback server) only;
    anything else fails the test before a connection is attempted."""

    def __init__(
        self, server: LoopbackServer | None = None, verify: ssl.SSLContext | bool = True
    ) -> None:
        self.inner = httpx.HTTPTransport(retries=0, verify=verify)
        self.server = server
        self.hosts: list[str] = []  # every address a request was sent to
        self.violations: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.hosts.append(host)
        if host == PUBLIC_IP and self.server is not None:
            request.url = request.url.copy_with(host="127.0.0.1", port=self.server.port)
        else:
            try:
                inside = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
            except ValueError:
                inside = False
            if not inside:
                self.violations.append(str(request.url))
                raise AssertionError(f"a test tried to connect outside 127.0.0.0/8: {request.url}")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def stub_resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """A resolver that knows only ``table`` (and IP literals); anything else fails the test."""

    def resolve(host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        if host not in table:
            raise AssertionError(f"the test resolver does not know {host!r}")
        return list(table[host])

    return resolve
