"""A real HTTP server on loopback that plays a market-data provider in tests.

``FixtureServer(route)`` serves ``route(request) -> Reply`` on ``127.0.0.1`` at a free port, in a
thread. Faults can be queued to be served before the route answers (429 with Retry-After, 5xx,
HTML pages, malformed or truncated bodies, slow answers that trip a client timeout). Every
request is recorded with its arrival time, so tests can check paging and request rates.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    """One request as the server received it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float

    @property
    def raw_query(self) -> str:
        """The query as ``k=v&...`` (for checking that secrets stay out of URLs)."""
        return "&".join(f"{k}={v}" for k, v in self.query.items())


@dataclass
class Reply:
    """What to answer: ``body`` is JSON-encoded unless it is ``str``/``bytes``."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate: bool = False

    def encoded(self) -> tuple[bytes, str]:
        """The body bytes and their content type."""
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "application/octet-stream")
        if isinstance(self.body, str):
            kind = "text/html" if self.body.lstrip().startswith("<") else "text/plain"
            return self.body.encode(), self.headers.get("Content-Type", kind)
        return json.dumps(self.body).encode(), "application/json"


Route = Callable[[Request], Reply]


class FixtureServer:
    """Serve ``route`` on loopback; use as a context manager (``with FixtureServer(r) as s: s.url``)."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.requests: list[Request] = []
        self.faults: deque[Reply] = deque()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                request = Request(parts.path, query, dict(self.headers.items()), time.monotonic())
                with server._lock:
                    server.requests.append(request)
                    fault = server.faults.popleft() if server.faults else None
                reply = fault or server.route(request)
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                body, kind = reply.encoded()
                self.send_response(reply.status)
                self.send_header("Content-Type", kind)
                length = len(body) + 100 if reply.truncate else len(body)
                self.send_header("Content-Length", str(length))
                for key, value in reply.headers.items():
                    if key.lower() != "content-type":
                        self.send_header(key, value)
                if reply.truncate:
                    self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(body[: max(1, len(body) // 2)] if reply.truncate else body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if reply.truncate:
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL, ``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FixtureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def inject(self, *replies: Reply) -> None:
        """Serve ``replies`` (in order) to the next requests instead of the route."""
        with self._lock:
            self.faults.extend(replies)

    def reset(self, route: Route | None = None) -> FixtureServer:
        """Forget the requests and queued faults; play ``route`` from now on, if given."""
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            if route is not None:
                self.route = route
        return self

    def paths(self) -> list[str]:
        """Paths of every request so far."""
        with self._lock:
            return [r.path for r in self.requests]


def no_route(request: Request) -> Reply:
    """The route of a server that plays nothing yet: a 404 page."""
    return Reply(404, "<html><body>no route</body></html>")


def rate_limited(retry_after: float = 1.0) -> Reply:
    """A 429 with ``Retry-After``."""
    return Reply(429, {"error": "too many requests"}, headers={"Retry-After": f"{retry_after:g}"})


def server_error(status: int = 503) -> Reply:
    """A 5xx with an HTML body, as proxies send."""
    return Reply(status, "<html><body><h1>503 Service Unavailable</h1></body></html>")


def html_page() -> Reply:
    """A 200 carrying an HTML page (a captive portal or a consent page)."""
    return Reply(200, "<!DOCTYPE html><html><body>Please sign in</body></html>")


def malformed_json() -> Reply:
    """A 200 with JSON that is wrong before its end (a bare word where a value belongs): a bad
    response, not retried."""
    return Reply(200, '{"data": [[1, "2.0", nope]]}', headers={"Content-Type": "application/json"})


def cut_json(body: Any) -> Reply:
    """A 200 whose JSON document stops halfway, with a ``Content-Length`` that matches what is sent
    (a proxy or a dropped upstream connection that cut it): a transient fault, retried."""
    text = json.dumps(body)
    return Reply(200, text[: max(1, len(text) // 2)], headers={"Content-Type": "application/json"})


def truncated(body: Any) -> Reply:
    """A 200 whose Content-Length promises more than is sent, then the connection closes."""
    return Reply(200, body, truncate=True)


def slow(seconds: float, body: Any = None) -> Reply:
    """A reply sent only after ``seconds`` (longer than the client's timeout)."""
    return Reply(200, body if body is not None else {}, delay=seconds)
