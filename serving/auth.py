"""API keys and per-key rate limits of the REST service.

Clients send ``X-API-Key``. Keys are created with ``fks keys create --name ...`` and stored as
hashes (:mod:`storage.api_keys`); a lookup is cached for ``ttl_s`` seconds, so a revoked key stops
working within that time. Each key has a token bucket of ``rate_per_minute`` requests (burst the
same size); an empty bucket answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from storage.api_keys import ApiKey, find_api_key, hash_key

HEADER = "X-API-Key"
_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: HTTP status, message, extra headers."""

    status: int
    message: str
    headers: dict[str, str]


class KeyGate:
    """Checks a request's key and its rate (thread-safe).

    Args:
        engine: returns the store engine (called on the first lookup).
        rate_per_minute: requests per minute per key (>= 1).
        ttl_s: how long a lookup is trusted.
    """

    def __init__(self, engine: Callable[[], Engine], *, rate_per_minute: int, ttl_s: float = 2.0) -> None:
        self._engine = engine
        self._rate = float(rate_per_minute) / 60.0
        self._capacity = float(rate_per_minute)
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}
        self._buckets: dict[int, tuple[float, float]] = {}

    def _lookup(self, plain: str) -> ApiKey | None:
        digest = hash_key(plain)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        with self._engine().connect() as conn:
            found = find_api_key(conn, plain)
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:  # random keys must not grow memory without bound
                self._cache.clear()
            self._cache[digest] = (found, now)
        return found

    def _take(self, key_id: int) -> float:
        """Take a token of ``key_id``'s bucket; 0 when taken, else seconds until one is there."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(key_id, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - at) * self._rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self._rate

    def check(self, plain: str | None) -> tuple[ApiKey | None, Refusal | None]:
        """The caller's key and ``None``, or ``None`` and why the request is refused (401 no or
        unknown key, 403 revoked key, 429 over the rate)."""
        if not plain:
            return None, Refusal(
                401,
                f"this route needs an API key in the {HEADER} header; create one with "
                "`fks keys create --name NAME`",
                {},
            )
        key = self._lookup(plain)
        if key is None:
            message = f"unknown API key in {HEADER}; check it or create one with `fks keys create`"
            return None, Refusal(401, message, {})
        if key.revoked:
            message = f"API key {key.name!r} was revoked; ask for a new one (`fks keys create`)"
            return None, Refusal(403, message, {})
        wait = self._take(key.id)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            return None, Refusal(
                429,
                f"API key {key.name!r} is over its rate of {round(self._capacity)} requests a minute; "
                f"retry in {retry} s",
                {"Retry-After": str(retry)},
            )
        return key, None
