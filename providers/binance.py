"""Binance spot klines (``GET /api/v3/klines``): 1m, 1h and 1d bars of crypto pairs, no key.

Binance answers at most 1,000 klines a request, each row
``[openTime ms, "open", "high", "low", "close", "volume", closeTime, quoteVolume, trades,
takerBuyBase, takerBuyQuote, "0"]``. :class:`BinanceProvider` pages forward by time (the next
``startTime`` is the last open time plus one interval) until the range is covered or a page comes
back short. Day klines open at 00:00 UTC, which is already the canonical ``1d`` convention.
Errors come as ``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 400.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from market.bars import Timeframe, empty_bars
from providers.base import BadResponse, NotSupported, ProviderError, RateLimited
from providers.online import OnlineProvider, bars_from_columns, clip, completed, concat_pages, to_ms, utc

KLINES_PATH = "/api/v3/klines"
MAX_ROWS = 1000
FIRST_DAY = pd.Timestamp("2017-08-17", tz="UTC")  # Binance's first trading day
_INTERVAL = {Timeframe.M1: "1m", Timeframe.H1: "1h", Timeframe.D1: "1d"}
_UNKNOWN_SYMBOL = -1121
_TOO_MANY_REQUESTS = -1003


def binance_error(symbol: str) -> Callable[[int, Any], ProviderError | None]:
    """The ``on_error`` of a klines request: Binance's ``{"code", "msg"}`` bodies as typed errors.

    -1121 (invalid symbol) is ``NotSupported``; other 4xx codes are ``BadResponse`` with Binance's
    message; 429/418 and 5xx are left to the client (``Retry-After``, retries).
    """

    def on_error(status: int, body: Any) -> ProviderError | None:
        if status in (418, 429) or status >= 500 or not isinstance(body, dict) or "code" not in body:
            return None
        code, msg = body.get("code"), str(body.get("msg", ""))
        if code == _UNKNOWN_SYMBOL:
            return NotSupported(
                f"Binance does not list symbol {symbol!r} ({msg}); use its spot pair, e.g. BTCUSDT"
            )
        if code == _TOO_MANY_REQUESTS:
            return RateLimited(f"Binance rate limit ({msg})", retry_after=60.0)
        if status in (401, 403):
            return None
        return BadResponse(f"HTTP {status}, Binance error {code}: {msg}")

    return on_error


def check_klines(body: Any, symbol: str = "?") -> None:
    """``check`` of a klines response for ``symbol``: a 200 must carry a list of rows.

    Raises:
        NotSupported: for an error body naming an invalid symbol.
        BadResponse: for any other error body or a body that is not a list of kline rows.
    """
    if isinstance(body, list):
        for row in body:
            if not isinstance(row, list) or len(row) < 6 or not isinstance(row[0], int):
                raise BadResponse(
                    f"binance: kline row is not [openTime, open, high, low, close, volume, ...]: {row!r:.80}"
                )
        return
    if isinstance(body, dict) and "code" in body:
        error = binance_error(symbol)(400, body)
        if isinstance(error, RateLimited):
            raise RateLimited(f"binance: {error}", retry_after=error.retry_after)
        if error is None:
            raise BadResponse(f"binance: error body {body!r:.160}")
        raise type(error)(f"binance: {error}")
    raise BadResponse(f"binance: klines body is not a list of rows: {body!r:.160}")


def klines_to_bars(rows: list[list[Any]]) -> pd.DataFrame:
    """Canonical bars from kline rows (open times in ms; prices and volume as strings).

    Raises:
        BadResponse: for unparseable numbers or two different rows with one open time.
    """
    ts = pd.to_datetime([int(r[0]) for r in rows], unit="ms", utc=True)
    columns: dict[str, Sequence[Any] | np.ndarray] = {
        name: [r[i] for r in rows] for i, name in enumerate(("open", "high", "low", "close", "volume"), 1)
    }
    return bars_from_columns(BinanceProvider.name, ts, columns)


class BinanceProvider(OnlineProvider):
    """Spot klines of a Binance pair (``BTCUSDT``), paged by time, 1,000 rows a request.

    ``start=None`` means Binance's first day (2017-08-17); ``end=None`` means now. Only bars that
    have closed are returned (the kline still forming is left out).
    """

    name: ClassVar[str] = "binance"
    needs_key: ClassVar[bool] = False

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Canonical bars of the Binance pair ``symbol`` with ``start <= ts < end``.

        Raises:
            NotSupported: for a symbol Binance does not list, or a timeframe it does not serve.
            RateLimited, Unavailable, BadResponse, AuthError: see :mod:`providers.http`.
        """
        tf = self.check_timeframe(timeframe)
        now = self.now()
        lo = FIRST_DAY if start is None else utc(start)
        hi = min(now, utc(end)) if end is not None else now
        if lo >= hi:
            return empty_bars()
        pages = self._pages(symbol, tf, to_ms(lo), to_ms(hi))
        return completed(clip(concat_pages(self.name, pages), lo, hi), tf, now)

    def _pages(self, symbol: str, tf: Timeframe, start_ms: int, end_ms: int) -> list[pd.DataFrame]:
        """Pages of klines with open times in ``[start_ms, end_ms)``, requested forward in time."""
        step = int(tf.delta.total_seconds() * 1000)
        on_error = binance_error(symbol)
        check = functools.partial(check_klines, symbol=symbol)
        pages: list[pd.DataFrame] = []
        cursor = start_ms
        while cursor < end_ms:
            params = {
                "symbol": symbol,
                "interval": _INTERVAL[tf],
                "startTime": cursor,
                "endTime": end_ms - 1,  # Binance's endTime is inclusive
                "limit": MAX_ROWS,
            }
            rows = self.client.get_json(KLINES_PATH, params, check=check, on_error=on_error)
            if not rows:
                break
            pages.append(klines_to_bars(rows))
            following = max(int(r[0]) for r in rows) + step
            if following <= cursor:
                raise BadResponse(
                    f"binance: klines from startTime={cursor} did not move forward (last open time "
                    f"{following - step}); refusing to loop"
                )
            if len(rows) < MAX_ROWS:
                break
            cursor = following
        return pages
