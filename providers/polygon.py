"""Polygon.io aggregates v2 (``GET /v2/aggs/ticker/{ticker}/range/1/{minute|hour|day}/{from}/{to}``).

Stocks (``AAPL``), crypto (``X:BTCUSD``), FX (``C:EURUSD``) and indices (``I:SPX``) at 1m, 1h and
1d; an API key is required (``FKS_POLYGON_API_KEY``). A response is ``{"ticker", "queryCount",
"resultsCount", "adjusted", "results": [{"t", "o", "h", "l", "c", "v", "vw", "n"}], "status":
"OK" | "DELAYED", "request_id", "next_url"?}``: up to 50,000 aggregates, then ``next_url`` (an
absolute URL with a cursor) for the rest. :class:`PolygonProvider` follows ``next_url`` on the
configured base URL (so mirrors and test servers work), re-attaching the key as the ``apiKey``
query parameter (never in the path, so the HTTP client redacts it from every message).

Day aggregates are stamped at midnight New York time of the session (crypto and FX days at
midnight UTC); either way the stamp's UTC date is the session date, the canonical ``1d`` stamp at
00:00 UTC. Minute and hour aggregates are stamped with their open time and include pre- and
post-market trading. Prices are adjusted for splits (``adjusted=true``), not dividends.

Splits come from reference v3 (``GET /v3/reference/splits?ticker=AAPL&execution_date.gte=...
&execution_date.lte=...&limit=1000``): ``{"results": [{"execution_date": "2020-08-31",
"split_from": 1, "split_to": 4, "ticker": "AAPL", "id": ...}], "status": "OK", "next_url"?}``,
paged by ``next_url`` like aggregates. ``execution_date`` is the ex-date; the ratio is
``split_to / split_from``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlsplit

import numpy as np
import pandas as pd

from market.bars import Timeframe, empty_bars
from providers.base import AuthError, BadResponse, NotSupported, ProviderError, RateLimited
from providers.corporate import in_range, split_action
from providers.http import redact
from providers.online import OnlineProvider, bars_from_columns, clip, concat_pages, to_ms, utc
from storage.corporate_actions import CorporateAction

AGGS_PATH = "/v2/aggs/ticker/{ticker}/range/1/{span}/{start}/{end}"
SPLITS_PATH = "/v3/reference/splits"
MAX_ROWS = 50_000
MAX_SPLITS = 1_000  # the reference endpoints' largest page
FREE_PLAN_HISTORY = pd.Timedelta(days=730)  # the Basic (free) plan reaches two years back
RATE_LIMIT_WAIT_S = 12.0  # Basic plan: 5 requests a minute
_SPAN = {Timeframe.M1: "minute", Timeframe.H1: "hour", Timeframe.D1: "day"}
_GOOD = ("OK", "DELAYED")
_PLAN_WORDS = ("plan", "entitled", "upgrade")


def polygon_error(ticker: str, body: Any, status: int | None = None) -> ProviderError | None:
    """The typed error of a Polygon error body (``{"status": "ERROR" | "NOT_AUTHORIZED", "error" |
    "message": ...}``), or None when ``body`` is not one.

    "exceeded the maximum requests" is ``RateLimited``; ``NOT_AUTHORIZED`` for data outside the
    plan ("upgrade your plan", "not entitled") is ``NotSupported`` naming the plan; other
    ``NOT_AUTHORIZED`` bodies, unknown keys and HTTP 401/403 are ``AuthError``; other ``ERROR``
    bodies are ``BadResponse``.
    """
    if not isinstance(body, dict):
        return None
    state = str(body.get("status") or "")
    text = str(body.get("error") or body.get("message") or "")
    if state in _GOOD or (not text and state not in ("ERROR", "NOT_AUTHORIZED")):
        return None
    if "exceeded the maximum requests" in text:
        return RateLimited(f"Polygon rate limit: {text}", retry_after=RATE_LIMIT_WAIT_S)
    if state == "NOT_AUTHORIZED" and any(w in text.lower() for w in _PLAN_WORDS):
        return NotSupported(f"Polygon's plan of this API key does not include {ticker!r} here: {text}")
    if state == "NOT_AUTHORIZED" or status in (401, 403) or "api key" in text.lower():
        return AuthError(
            f"Polygon refused the API key ({state or status}): {text}; check FKS_POLYGON_API_KEY"
        )
    return BadResponse(f"Polygon error ({state or status}): {text}")


def session_dates(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Canonical 1d stamps of Polygon's day aggregates: the session date at 00:00 UTC.

    Stock days are stamped at midnight New York time (04:00 or 05:00 UTC of the session date),
    crypto and FX days at midnight UTC; in both cases the UTC date of the stamp is the session date.
    """
    return index.normalize().rename("ts")


def aggregates_to_bars(ticker: str, rows: Any, timeframe: Timeframe) -> pd.DataFrame:
    """Canonical bars from a ``results`` array.

    Raises:
        BadResponse: for rows that are not aggregates, unparseable numbers, or two different bars
            for one time.
    """
    if rows is None:
        return empty_bars()
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadResponse(f"polygon: results of {ticker!r} are not a list of aggregates")
    stamps = [r.get("t") for r in rows]
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in stamps):
        raise BadResponse(f"polygon: an aggregate of {ticker!r} lacks an integer time stamp 't'")
    columns: dict[str, Sequence[Any] | np.ndarray] = {
        name: [r.get(key) for r in rows]
        for name, key in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"), ("volume", "v"))
    }
    index = pd.to_datetime(np.asarray(stamps, dtype="int64"), unit="ms", utc=True)
    if timeframe is Timeframe.D1:
        index = session_dates(index)
    return bars_from_columns("polygon", index, columns)


def splits_to_actions(ticker: str, rows: Any) -> list[CorporateAction]:
    """The splits of a reference ``results`` array (``None``: no split).

    Raises:
        BadResponse: for rows that are not split records, another ticker's split, an
            ``execution_date`` that is not ``YYYY-MM-DD``, or a ``split_from``/``split_to`` that is
            missing, zero or negative.
    """
    if rows is None:
        return []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadResponse(f"polygon: splits of {ticker!r} are not a list of split records")
    actions = []
    for row in rows:
        if row.get("ticker", ticker) != ticker:
            other = row.get("ticker")
            raise BadResponse(f"polygon: asked for the splits of {ticker!r}, got one of {other!r}")
        date = row.get("execution_date")
        try:
            ex_date = pd.Timestamp(dt.datetime.strptime(str(date), "%Y-%m-%d"), tz="UTC")
        except ValueError:
            raise BadResponse(
                f"polygon: a split of {ticker!r} has execution_date {date!r}, not YYYY-MM-DD"
            ) from None
        new, old = row.get("split_to"), row.get("split_from")
        actions.append(split_action("polygon", ticker, ex_date, new, old, row))
    return actions


class PolygonProvider(OnlineProvider):
    """Aggregates of a Polygon ticker (``AAPL``, ``X:BTCUSD``), 50,000 a request, paged by ``next_url``.

    ``start=None`` means two years back (the reach of the free plan; pass a start for more on a
    paid plan); ``end=None`` means now. Only bars that have closed are returned.
    """

    name: ClassVar[str] = "polygon"
    needs_key: ClassVar[bool] = True

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Canonical bars of the Polygon ticker ``symbol`` with ``start <= ts < end``.

        Raises:
            AuthError: without an API key (the message names ``FKS_POLYGON_API_KEY``) or when
                Polygon refuses it.
            NotSupported: for an unknown ticker, an unserved timeframe, or data outside the plan.
            RateLimited, Unavailable, BadResponse: see :mod:`providers.http`.
        """
        tf = self.check_timeframe(timeframe)
        key = self.key()
        now = self.now()
        hi = min(now, utc(end)) if end is not None else now
        lo = (now - FREE_PLAN_HISTORY).floor("D") if start is None else utc(start)
        if lo >= hi:
            return empty_bars()
        if tf is Timeframe.D1:  # by date: the day of lo and the day of the last instant before hi
            first, last = lo.strftime("%Y-%m-%d"), (hi - pd.Timedelta(1, "ns")).strftime("%Y-%m-%d")
        else:  # by milliseconds, both ends inclusive
            first, last = str(to_ms(lo)), str(to_ms(hi) - 1)
        path = AGGS_PATH.format(ticker=quote(symbol, safe=":"), span=_SPAN[tf], start=first, end=last)
        params: dict[str, Any] = {"adjusted": "true", "sort": "asc", "limit": MAX_ROWS}
        pages: list[pd.DataFrame] = []
        for body in self._pages(symbol, "aggregates", path, params, key):
            pages.append(aggregates_to_bars(symbol, body.get("results"), tf))
            if len(pages[-1]) and pages[-1].index[-1] >= hi:
                break
        frame = concat_pages(self.name, pages)
        closes = pd.DatetimeIndex(frame.index) + tf.delta
        return clip(frame[closes <= now], lo, hi)

    def fetch_splits(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> list[CorporateAction]:
        """Splits of the Polygon ticker ``symbol`` with ``start <= ex_date < end``, every page of
        the reference query (following ``next_url``), sorted by ex-date.

        Raises:
            AuthError: without an API key (the message names ``FKS_POLYGON_API_KEY``) or when
                Polygon refuses it.
            BadResponse: for a split without a valid ``execution_date`` or ratio (``split_from``,
                ``split_to`` missing, zero or negative), or a ``next_url`` that repeats.
            NotSupported, RateLimited, Unavailable: see :mod:`providers.http`.
        """
        key = self.key()
        lo, hi = utc(start), utc(end)
        if lo >= hi:
            return []
        params: dict[str, Any] = {
            "ticker": symbol,
            "execution_date.gte": lo.strftime("%Y-%m-%d"),
            "execution_date.lte": (hi - pd.Timedelta(1, "ns")).strftime("%Y-%m-%d"),
            "limit": MAX_SPLITS,
        }
        actions: list[CorporateAction] = []
        for body in self._pages(symbol, "splits", SPLITS_PATH, params, key):
            actions.extend(splits_to_actions(symbol, body.get("results")))
        return in_range(actions, lo, hi)

    def _pages(
        self, ticker: str, what: str, path: str, params: dict[str, Any], key: str
    ) -> Iterator[dict[str, Any]]:
        """The checked body of every page of one query for ``what`` (``aggregates``, ``splits``),
        following ``next_url`` until it is absent or the caller stops asking.

        Raises:
            BadResponse: when a ``next_url`` repeats or is not a URL (a server that would loop).
        """
        seen: set[str] = set()
        while True:
            body = self.client.get_json(
                path,
                {**params, "apiKey": key},
                check=self._checker(ticker, what),
                on_error=self._on_error(ticker, what),
            )
            yield body
            following = body.get("next_url")
            if not following:
                return
            if not isinstance(following, str) or following in seen:
                raise BadResponse(
                    redact(f"polygon: next_url of {ticker!r} repeats or is not a URL; stopped paging", [key])
                )
            seen.add(following)
            path, params = self._next(following)

    def _next(self, next_url: str) -> tuple[str, dict[str, Any]]:
        """``next_url`` as a path on the configured base URL and its query (without any key)."""
        parts = urlsplit(next_url)
        path = parts.path
        prefix = urlsplit(self.client.base_url).path.rstrip("/")
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix) :]
        query = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "apikey"}
        return path, query

    @staticmethod
    def _on_error(ticker: str, what: str = "aggregates") -> Callable[[int, Any], ProviderError | None]:
        """``on_error`` of a request for ``what``: 429 and 5xx are left to the client (retries,
        ``Retry-After``), 404 is an unknown route or ticker, other error bodies as
        :func:`polygon_error` says."""

        def on_error(status: int, body: Any) -> ProviderError | None:
            if status in (418, 429) or status >= 500:
                return None
            if status == 404:
                detail = str(body.get("message") or body.get("error") or "") if isinstance(body, dict) else ""
                return NotSupported(f"Polygon has no {what} for {ticker!r} (HTTP 404) {detail}".strip())
            return polygon_error(ticker, body, status)

        return on_error

    def _checker(self, ticker: str, what: str = "aggregates") -> Callable[[Any], None]:
        """``check`` of a response for ``what``: status OK/DELAYED, else the typed error it names."""
        secrets = self.client.secrets

        def check(body: Any) -> None:
            if not isinstance(body, dict):
                raise BadResponse(f"polygon: the {what} body for {ticker!r} is not a JSON object")
            error = polygon_error(ticker, body)
            if error is None and body.get("status") not in _GOOD:
                error = BadResponse(f"Polygon answered status {body.get('status')!r} for {ticker!r}")
            if error is None:
                return
            message = redact(f"polygon: {error}", secrets)
            if isinstance(error, RateLimited):
                raise RateLimited(message, retry_after=error.retry_after)
            raise type(error)(message)

        return check
