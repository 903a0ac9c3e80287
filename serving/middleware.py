"""The service's request gate as plain ASGI (no per-request task group as Starlette's
``BaseHTTPMiddleware`` adds): API key and rate check, then metrics of every answer.

A request to a route outside :data:`OPEN_ROUTES` (and not a CORS preflight) needs a valid key in
``X-API-Key`` when auth is on; the caller's key id is put in the request's state
(``request.state.key_id``, None with auth off). Every answer is counted by route and status and
timed (``fks_requests_total``, ``fks_request_seconds``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from serving.auth import HEADER
from serving.limits import ASGIApp, Message, Receive, Scope, Send
from serving.state import ServiceState

OPEN_ROUTES = frozenset(
    {
        "/health",
        "/ready",
        "/ping",
        "/version",
        "/metrics",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/",
    }
)
"""Routes that answer without an API key."""
OPEN_PREFIXES = ("/assets/", "/static/")
"""Path prefixes that answer without a key: the overview's page shells and static files, which
carry no data (the page fetches its figures from ``/v1/overview...`` with the key)."""

_HEADER = HEADER.lower().encode("latin-1")


class Gate:
    """ASGI middleware: key check (auth on), key id into the request state, metrics."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = str(scope["path"])
        started = time.perf_counter()
        scope.setdefault("state", {})["key_id"] = None
        status = 500
        try:
            if (
                self.state.settings.serve_auth
                and route not in OPEN_ROUTES
                and not route.startswith(OPEN_PREFIXES)
                and scope["method"] != "OPTIONS"
            ):
                plain = dict(scope.get("headers") or []).get(_HEADER)
                # the key lookup may read the store: off the event loop
                key, refusal = await asyncio.to_thread(
                    self.state.gate.check, None if plain is None else plain.decode("latin-1")
                )
                if refusal is not None:
                    status = refusal.status
                    body = {"error": refusal.message, "detail": None}
                    await _answer(send, refusal.status, body, refusal.headers)
                    return
                scope["state"]["key_id"] = None if key is None else key.id

            async def observed(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            await self.app(scope, receive, observed)
        finally:
            metrics = self.state.metrics
            metrics.requests.labels(route, str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - started)


async def _answer(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
