"""HTTP for the online adapters: typed errors, retries, a TTL cache, rate gating, no leaked keys.

One :class:`HttpClient` per provider. :meth:`HttpClient.get_json` sends a GET, and turns every way
a free data source can fail into the typed errors of :mod:`providers.base`:

=====================================  ==========================================================
what happened                          raised (after the retries of :class:`RetryPolicy`)
=====================================  ==========================================================
timeout, refused connection, reset,    ``Unavailable`` (retried)
a body cut short (fewer bytes than
``Content-Length``, a broken chunked or
compressed stream, JSON that ends
before its document does)
429, 418 (with ``Retry-After``)        ``RateLimited(retry_after)`` (retried, waiting at least
                                       ``Retry-After``; beyond ``max_retry_after_s`` it fails over)
5xx                                    ``Unavailable`` (retried)
401, 403                               ``AuthError``
404                                    ``NotSupported``
other 4xx                              ``BadResponse``
2xx with an HTML page or JSON that is  ``BadResponse``
malformed before its end
2xx whose body says "error"            what the adapter's ``check`` raises
=====================================  ==========================================================

Secrets (API keys) given to the client are replaced by ``***`` in every message, and query
parameters that look like credentials are redacted from every URL the client reports; httpx's
own request log (which prints full URLs) is turned down to warnings.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urljoin

import httpx

from config.providers import RetryPolicy
from providers.base import AuthError, BadResponse, NotSupported, ProviderError, RateLimited, Unavailable

REDACTED = "***"
_SECRET_PARAM = ("key", "token", "secret", "password", "signature", "auth")

BodyCheck = Callable[[Any], None]
ErrorBody = Callable[[int, Any], ProviderError | None]


@dataclass(frozen=True)
class CallRecord:
    """One HTTP request as the gate sees it (after it finished). ``url`` is redacted."""

    provider: str
    url: str
    status: int | None
    elapsed_s: float
    credits: float
    error: ProviderError | None = None


class Gate(Protocol):
    """Admission and accounting of requests (the provider manager's rate limiter and meter)."""

    def acquire(self, provider: str) -> None:
        """Block until one more request may be sent; raise ``RateLimited`` when the budget is spent."""

    def record(self, call: CallRecord) -> None:
        """Account for one finished request."""


class OpenGate:
    """A gate that admits everything and records nothing (adapters used on their own)."""

    def acquire(self, provider: str) -> None:
        """Admit the request at once."""

    def record(self, call: CallRecord) -> None:
        """Forget the call."""


def secret_forms(secret: str) -> list[str]:
    """Every form ``secret`` can take in a URL, a header or a body, longest first: raw,
    percent-encoded (upper- and lower-case hex, with ``/`` kept or encoded), form-encoded (``+``
    for space), JSON-escaped, and base64 as HTTP basic auth carries it (``key``, ``key:``,
    ``:key``), padded and unpadded."""
    if not secret:
        return []
    forms = {secret, json.dumps(secret)[1:-1]}
    for encoded in (quote(secret, safe=""), quote(secret, safe="/"), quote_plus(secret)):
        forms.add(encoded)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
    for plain in (secret, f"{secret}:", f":{secret}"):
        b64 = base64.b64encode(plain.encode("utf-8")).decode("ascii")
        forms.update({b64, b64.rstrip("=")})
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret in ``secrets``, in any of its :func:`secret_forms`, as ``***``."""
    for secret in secrets:
        for form in secret_forms(secret):
            text = text.replace(form, REDACTED)
    return text


def redacted_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` with the values of credential-like names (``apikey``, ``token``, ...) as ``***``."""
    return {
        k: (REDACTED if any(s in k.lower() for s in _SECRET_PARAM) else v) for k, v in (params or {}).items()
    }


def parse_retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random, retry_after: float | None) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential with jitter, at least ``retry_after``."""
    delay = min(policy.max_s, policy.base_s * 2 ** (attempt - 1))
    delay *= 1.0 + policy.jitter * (2.0 * rng.random() - 1.0)
    return max(delay, retry_after or 0.0)


class HttpClient:
    """GET JSON from one provider with typed errors, retries, a TTL cache and a rate gate.

    ``base_url`` is where relative paths go (``FKS_<PROVIDER>_BASE_URL``). ``secrets`` are strings
    that must never appear in a message. ``sleep`` and ``rng`` are injectable so tests control
    time and jitter. ``transport`` lets a caller plug an httpx transport (tests use real servers).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        retry: RetryPolicy | None = None,
        cache_ttl_s: float = 0.0,
        gate: Gate | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.provider = provider
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.secrets = tuple(s for s in secrets if s)
        self.retry = retry or RetryPolicy()
        self.cache_ttl_s = cache_ttl_s
        self.gate: Gate = gate or OpenGate()
        self.sleep = sleep
        self.rng = rng or random.Random(0)
        self.clock = clock
        self._cache: dict[str, tuple[float, Any]] = {}
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout), headers=dict(headers or {}), transport=transport
        )
        self.requests_sent = 0

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def url(self, path: str) -> str:
        """The absolute URL of ``path``: kept when absolute, else joined to the base URL."""
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url, path.lstrip("/"))

    def describe(self, url: str, params: Mapping[str, Any] | None = None) -> str:
        """``url`` with ``params`` for messages: credential parameters and secrets redacted."""
        query = urlencode(redacted_params(params), safe="*:,")
        text = f"{url}?{query}" if query else url
        if "?" in url:  # an absolute URL that carries its own query (a next page)
            base, _, own = url.partition("?")
            pairs = dict(parse_qsl(own, keep_blank_values=True))
            text = f"{base}?{urlencode(redacted_params({**pairs, **(params or {})}), safe='*:,')}"
        return redact(text, self.secrets)

    def _error(self, cls: type[ProviderError], message: str, **extra: Any) -> ProviderError:
        return cls(redact(f"{self.provider}: {message}", self.secrets), **extra)

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        credits: float | Callable[[Any], float] = 1.0,
        check: BodyCheck | None = None,
        on_error: ErrorBody | None = None,
    ) -> Any:
        """GET ``path`` and return its parsed JSON body, retrying transient failures.

        ``check(body)`` may raise a typed error for a 200 whose body is an error or a throttling
        note; ``on_error(status, body)`` may return the typed error for a non-2xx body.
        ``credits`` is what one call costs (or a function of the body that says).

        Raises:
            RateLimited, Unavailable, BadResponse, NotSupported, AuthError: see the module table.
        """
        url = self.url(path)
        key = self.describe(url, params) + json.dumps(dict(headers or {}), sort_keys=True)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        attempt = 0
        while True:
            attempt += 1
            try:
                body = self._once(url, params, headers, credits, check, on_error)
            except (RateLimited, Unavailable) as exc:
                retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
                if attempt >= self.retry.attempts or (retry_after or 0.0) > self.retry.max_retry_after_s:
                    raise
                self.sleep(backoff_delay(self.retry, attempt, self.rng, retry_after))
                continue
            if self.cache_ttl_s > 0:
                self._cache[key] = (self.clock() + self.cache_ttl_s, body)
            return body

    def _once(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        credits: float | Callable[[Any], float],
        check: BodyCheck | None,
        on_error: ErrorBody | None,
    ) -> Any:
        self.gate.acquire(self.provider)
        shown = self.describe(url, params)
        started = time.perf_counter()
        status: int | None = None
        cost = 0.0
        try:
            self.requests_sent += 1
            try:
                response = self._http.get(url, params=dict(params or {}), headers=dict(headers or {}))
                status = response.status_code
                raw = response.content
            except httpx.TimeoutException:
                raise self._error(Unavailable, f"timed out after {self.timeout:g}s on {shown}") from None
            except (httpx.TransportError, httpx.StreamError, httpx.DecodingError) as exc:
                # a reset, a refused connection, or a body cut short (RemoteProtocolError on fewer
                # bytes than Content-Length or a broken chunked stream, DecodingError on a cut
                # compressed one): transient, retried, then failed over
                raise self._error(Unavailable, f"{type(exc).__name__} on {shown}") from None
            cost = float(credits) if not callable(credits) else 1.0
            body = self._parse(response, raw, shown, on_error)
            if callable(credits):
                cost = float(credits(body))
            if check is not None:
                self._checked(check, body)
        except ProviderError as exc:
            elapsed = time.perf_counter() - started
            self.gate.record(CallRecord(self.provider, shown, status, elapsed, cost, exc))
            raise
        self.gate.record(CallRecord(self.provider, shown, status, time.perf_counter() - started, cost))
        return body

    def _checked(self, check: BodyCheck, body: Any) -> None:
        """Run the adapter's body check; its error gets the provider's name and loses any secret."""
        try:
            check(body)
        except ProviderError as exc:
            message = redact(str(exc), self.secrets)
            if not message.startswith(f"{self.provider}:"):
                message = f"{self.provider}: {message}"
            exc.args = (message,)
            raise

    def _parse(self, response: httpx.Response, raw: bytes, shown: str, on_error: ErrorBody | None) -> Any:
        status = response.status_code
        text = raw.decode("utf-8", errors="replace")
        cut_short = False
        try:
            body: Any = json.loads(text) if text.strip() else None
        except ValueError as exc:
            body = None
            parse_failed = True
            cut_short = _ends_early(text, exc)
        else:
            parse_failed = False
        if status >= 400 and on_error is not None:
            custom = on_error(status, body)
            if custom is not None:
                raise self._error(type(custom), str(custom), **_extra(custom))
        if status in (429, 418):
            wait = parse_retry_after(response.headers.get("Retry-After"), default=1.0)
            raise self._error(RateLimited, f"HTTP {status}: rate limited on {shown}", retry_after=wait)
        if status >= 500:
            raise self._error(Unavailable, f"HTTP {status} on {shown}: {_snippet(text)}")
        if status in (401, 403):
            raise self._error(AuthError, f"HTTP {status}: credentials refused on {shown}; check the API key")
        if status == 404:
            raise self._error(NotSupported, f"HTTP 404 on {shown}: {_snippet(text)}")
        if status >= 400:
            raise self._error(BadResponse, f"HTTP {status} on {shown}: {_snippet(text)}")
        if text.lstrip().startswith("<"):
            raise self._error(BadResponse, f"an HTML page, not JSON, from {shown}: {_snippet(text)}")
        if parse_failed and cut_short:
            raise self._error(
                Unavailable, f"truncated JSON from {shown} (the body ends mid-document): {_snippet(text)}"
            )
        if parse_failed:
            raise self._error(BadResponse, f"malformed JSON from {shown}: {_snippet(text)}")
        return body


def _ends_early(text: str, error: ValueError) -> bool:
    """Whether ``error`` (from ``json.loads(text)``) says the document was cut short rather than
    malformed: the parser ran out of input (an unfinished value, array, object or string) instead
    of meeting a wrong character. A body half-read by a proxy or a dropped connection whose
    ``Content-Length`` matched what arrived looks like this; asking again usually gets it whole."""
    if not isinstance(error, json.JSONDecodeError):
        return False
    if error.msg.startswith("Unterminated string"):
        return True
    return error.pos >= len(text.rstrip())


def _extra(error: ProviderError) -> dict[str, Any]:
    return {"retry_after": error.retry_after} if isinstance(error, RateLimited) else {}


def _snippet(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
