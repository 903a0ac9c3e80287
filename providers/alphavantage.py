"""Alpha Vantage: intraday and daily bars of US stocks and ETFs, daily bars of crypto.

Endpoints (``GET {FKS_ALPHAVANTAGE_BASE_URL}/query``, key in ``apikey``, redacted everywhere):

- ``function=TIME_SERIES_INTRADAY&interval=1min|60min&outputsize=full&month=YYYY-MM``: one request
  per calendar month (US/Eastern) overlapping ``[start, end)``; with no ``start``, one request
  without ``month`` (the last 30 days). Timestamps are in the time zone of ``Meta Data``'s
  ``6. Time Zone`` (``US/Eastern``) and label the bar's open; they are converted to UTC. Extended
  hours (04:00-20:00 ET) are included, prices are split/dividend adjusted (the API's default).
- ``function=TIME_SERIES_DAILY``: days (dates -> 00:00 UTC), unadjusted. ``outputsize=compact``
  (the last 100 sessions) when ``start`` lies within the last 135 days, ``full`` otherwise.
- ``function=DIGITAL_CURRENCY_DAILY&symbol=BTC&market=USD``: crypto days (UTC dates).

**Symbols.** Stocks and ETFs are their ticker (``IBM``, ``SPY``). Crypto is ``CRYPTO:<coin>``,
priced in US dollars (``CRYPTO:BTC``), or ``CRYPTO:<coin>:<market>`` for another market
(``CRYPTO:BTC:EUR``); crypto has day bars only (``NotSupported`` otherwise).

**Errors that come with HTTP 200.** Alpha Vantage answers throttling with a 200 whose body is a
``Note`` or ``Information`` text. These are never data: a per-minute (or per-second) note is
``RateLimited(retry_after=60)`` (1 s for the per-second note), the daily allowance is
``RateLimited`` with ``retry_after`` = seconds until the next UTC midnight (longer than any retry
wait, so the manager fails over). An ``Information`` about a premium-only feature is
``NotSupported``; ``Error Message`` is ``NotSupported`` (an invalid call, usually an unknown
symbol) or ``AuthError`` when it is about the API key.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from market.bars import Timeframe, empty_bars
from providers.base import AuthError, BadResponse, NotSupported, ProviderError, RateLimited
from providers.http import redact
from providers.online import OnlineProvider, bars_from_columns, clip, concat_pages, utc

CRYPTO_PREFIX = "CRYPTO:"
_INTERVALS = {Timeframe.M1: "1min", Timeframe.H1: "60min"}
_COMPACT_DAYS = 135  # 100 sessions of "compact" cover at least this many calendar days
_FIELDS = ("open", "high", "low", "close", "volume")


def seconds_to_utc_midnight(now: float) -> float:
    """Seconds from epoch time ``now`` to the next 00:00 UTC (when daily allowances reset)."""
    return float(86_400 - (now % 86_400))


class AlphaVantageProvider(OnlineProvider):
    """Bars from Alpha Vantage (needs ``FKS_ALPHAVANTAGE_API_KEY``); see the module docstring."""

    name: ClassVar[str] = "alphavantage"
    needs_key: ClassVar[bool] = True

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Bars of ``symbol`` (a ticker, or ``CRYPTO:BTC[:USD]``) with ``start <= ts < end`` (UTC).

        Raises:
            NotSupported: crypto below 1d, an unknown symbol, a premium-only request.
            RateLimited: a throttling note (see the module docstring for ``retry_after``).
            AuthError: no key, or a key the API refuses.
            BadResponse, Unavailable: see :mod:`providers.http`.
        """
        tf = self.check_timeframe(timeframe)
        start = utc(start) if start is not None else None
        end = utc(end) if end is not None else None
        crypto = _crypto(symbol)
        if crypto is not None:
            if tf is not Timeframe.D1:
                raise NotSupported(f"alphavantage serves crypto ({symbol}) as day bars only, not {tf.value}")
            frame = self._crypto_daily(*crypto)
        elif tf is Timeframe.D1:
            frame = self._daily(symbol, start)
        else:
            frame = self._intraday(symbol, tf, start, end)
        return clip(frame, start, end)

    # -- requests ---------------------------------------------------------------------------

    def _query(self, params: dict[str, Any]) -> dict[str, Any]:
        body = self.client.get_json(
            "/query", {**params, "apikey": self.key()}, check=self._check, on_error=self._on_error
        )
        if not isinstance(body, dict):
            raise BadResponse(f"alphavantage: expected a JSON object, got {type(body).__name__}")
        return body

    def _intraday(
        self, symbol: str, tf: Timeframe, start: pd.Timestamp | None, end: pd.Timestamp | None
    ) -> pd.DataFrame:
        base = {
            "function": "TIME_SERIES_INTRADAY",
            "symbol": symbol,
            "interval": _INTERVALS[tf],
            "outputsize": "full",
        }
        if start is None:
            return self._series(self._query(base), intraday=True)
        pages = [
            self._series(self._query({**base, "month": month}), intraday=True)
            for month in months_between(start, min(end, self.now()) if end is not None else self.now())
        ]
        return concat_pages(self.name, pages)

    def _daily(self, symbol: str, start: pd.Timestamp | None) -> pd.DataFrame:
        recent = start is not None and start >= self.now() - pd.Timedelta(days=_COMPACT_DAYS)
        body = self._query(
            {"function": "TIME_SERIES_DAILY", "symbol": symbol, "outputsize": "compact" if recent else "full"}
        )
        return self._series(body, intraday=False)

    def _crypto_daily(self, coin: str, market: str) -> pd.DataFrame:
        body = self._query({"function": "DIGITAL_CURRENCY_DAILY", "symbol": coin, "market": market})
        return self._series(body, intraday=False)

    # -- parsing ----------------------------------------------------------------------------

    def _series(self, body: dict[str, Any], *, intraday: bool) -> pd.DataFrame:
        """Canonical bars from a ``Time Series (...)`` object keyed by time or date."""
        key = next((k for k in body if k.startswith("Time Series")), None)
        if key is None:
            raise BadResponse(f"alphavantage: no 'Time Series' in the answer (keys: {sorted(body)[:5]})")
        series = body[key]
        if not isinstance(series, dict):
            raise BadResponse(f"alphavantage: {key!r} is not an object")
        if not series:
            return empty_bars()
        stamps = list(series)
        columns: dict[str, list[Any]] = {name: [] for name in _FIELDS}
        for stamp in stamps:
            row = series[stamp]
            if not isinstance(row, dict):
                raise BadResponse(f"alphavantage: bar {stamp!r} is not an object")
            for number, name in enumerate(_FIELDS, start=1):
                columns[name].append(_field(row, number, stamp))
        try:
            naive = pd.DatetimeIndex(pd.to_datetime(stamps, format="ISO8601"))
        except (ValueError, TypeError) as exc:
            raise BadResponse(f"alphavantage: a timestamp is not a date/time ({exc})") from None
        if intraday:
            zone = _time_zone(body.get("Meta Data"))
            try:
                local = naive.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
            except Exception as exc:  # an unknown zone name
                raise BadResponse(f"alphavantage: cannot place timestamps in {zone!r} ({exc})") from None
            if local.hasnans:
                bad = naive[np.asarray(local.isna())][0]
                raise BadResponse(f"alphavantage: {bad} does not exist or is ambiguous in {zone}")
            index = local.tz_convert("UTC")
        else:
            if (naive != naive.normalize()).any():
                raise BadResponse("alphavantage: a daily series carries times of day")
            index = naive.tz_localize("UTC")
        return bars_from_columns(self.name, index, columns)  # type: ignore[arg-type]

    # -- errors -----------------------------------------------------------------------------

    def _check(self, body: Any) -> None:
        """Raise the typed error of a 200 that carries a note or an error instead of data."""
        if not isinstance(body, dict):
            return
        error = classify_message(body, self.wall_clock())
        if error is not None:
            raise type(error)(redact(str(error), self.client.secrets), **_retry(error))

    def _on_error(self, status: int, body: Any) -> ProviderError | None:
        if isinstance(body, dict):
            return classify_message(body, self.wall_clock())
        return None


def classify_message(body: dict[str, Any], now: float) -> ProviderError | None:
    """The typed error that an Alpha Vantage ``Note``/``Information``/``Error Message`` body means,
    or None when the body is data. ``now`` is epoch seconds (for the daily reset)."""
    if "Error Message" in body:
        text = str(body["Error Message"])
        if "apikey" in text.lower() or "api key" in text.lower():
            return AuthError(f"alphavantage: the API key was refused: {_short(text)}")
        return NotSupported(f"alphavantage: {_short(text)}")
    note = body.get("Note", body.get("Information"))
    if note is None:
        return None
    text = str(note)
    lower = text.lower()
    throttled = any(
        w in lower for w in ("call frequency", "rate limit", "requests per", "calls per", "per second")
    )
    if throttled:
        if "per second" in lower:
            return RateLimited(f"alphavantage: throttled (per second): {_short(text)}", retry_after=1.0)
        minute = "per minute" in lower or "call frequency" in lower
        if not minute and ("per day" in lower or "daily" in lower):
            wait = seconds_to_utc_midnight(now)
            return RateLimited(f"alphavantage: daily allowance used up: {_short(text)}", retry_after=wait)
        return RateLimited(f"alphavantage: throttled (per minute): {_short(text)}", retry_after=60.0)
    if "premium" in lower:
        return NotSupported(f"alphavantage: needs a premium plan: {_short(text)}")
    if "api key" in lower or "apikey" in lower:
        return AuthError(f"alphavantage: {_short(text)}")
    return BadResponse(f"alphavantage: a note instead of data: {_short(text)}")


def months_between(start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    """``YYYY-MM`` of each US/Eastern calendar month that overlaps ``[start, end)`` (UTC times)."""
    first = utc(start).tz_convert("America/New_York")
    last = (utc(end) - pd.Timedelta(1, "ns")).tz_convert("America/New_York")
    if last < first:
        return []
    periods = pd.period_range(first.tz_localize(None).to_period("M"), last.tz_localize(None).to_period("M"))
    return [str(p) for p in periods]


def _crypto(symbol: str) -> tuple[str, str] | None:
    """``(coin, market)`` of ``CRYPTO:BTC`` / ``CRYPTO:BTC:EUR``, or None for a stock ticker."""
    if not symbol.upper().startswith(CRYPTO_PREFIX):
        return None
    coin, _, market = symbol[len(CRYPTO_PREFIX) :].partition(":")
    if not coin:
        raise NotSupported(f"alphavantage: {symbol!r} names no coin; write CRYPTO:BTC or CRYPTO:BTC:EUR")
    return coin.upper(), (market or "USD").upper()


def _field(row: dict[str, Any], number: int, stamp: str) -> Any:
    """Value ``n. name`` of a bar; digital currency bodies may write ``1a. open (USD)``."""
    for prefix in (f"{number}. ", f"{number}a. "):
        for key, value in row.items():
            if key.startswith(prefix):
                return value
    if number == 5:
        return np.nan
    raise BadResponse(f"alphavantage: bar {stamp!r} lacks field {number} ({_FIELDS[number - 1]})")


def _time_zone(meta: Any) -> str:
    if isinstance(meta, dict):
        for key, value in meta.items():
            if key.endswith("Time Zone") and isinstance(value, str) and value:
                return value
    return "US/Eastern"


def _retry(error: ProviderError) -> dict[str, Any]:
    return {"retry_after": error.retry_after} if isinstance(error, RateLimited) else {}


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
