"""The request body limit, for declared (``Content-Length``) and chunked bodies alike.

A body announced larger than the limit is refused before it is read; a chunked body is read up
to the limit and refused as soon as it passes it (413, with a message), so no route ever parses
more than ``limit`` bytes. Accepted chunked bodies are replayed to the app unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _refusal(size: int, limit: int, exact: bool) -> bytes:
    what = f"has {size:,} bytes" if exact else f"passed {limit:,} bytes after {size:,}"
    return json.dumps(
        {"error": f"the request body {what}, the limit is {limit:,}; send fewer bars", "detail": None}
    ).encode()


class BodyLimit:
    """ASGI middleware answering 413 for bodies over ``limit`` bytes; ``on_refuse(path)`` is
    called for each refusal (metrics hook)."""

    def __init__(self, app: ASGIApp, limit: int, on_refuse: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.limit = int(limit)
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                await self._refuse(scope, send, _refusal(int(length), self.limit, exact=True))
                return
            await self.app(scope, receive, send)
            return
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, send, _refusal(size, self.limit, exact=False))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, body: bytes) -> None:
        if self.on_refuse is not None:
            self.on_refuse(str(scope.get("path", "")))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
