"""Yahoo Finance's chart API (``GET /v8/finance/chart/{symbol}``, the one yfinance uses), no key.

Equities, ETFs, indices (``^GSPC``), FX (``EURUSD=X``) and crypto (``BTC-USD``) at 1m, 1h
(Yahoo's ``60m``) and 1d. A response is
``{"chart": {"result": [{"meta": {...}, "timestamp": [...], "indicators": {"quote": [{"open",
"high", "low", "close", "volume"}]}}], "error": null}}``; a null price means "no trade" and the row
is dropped, a null volume (indices, FX) is 0. Prices are Yahoo's split-adjusted quote, not the
dividend-adjusted ``adjclose``.

Yahoo's limits, which this adapter respects rather than discovers:

* 1m bars exist only for the last 30 days and one request may span at most 7 days;
* 60m bars exist only for the last 730 days;
* daily history comes whole in one request.

Ranges outside what Yahoo keeps are refused with ``NotSupported`` naming the limit (so the
manager asks another source). Yahoo stamps a day bar with the session's opening time; the
canonical ``1d`` stamp is the session date (in the exchange's time zone, from ``meta``) at 00:00
UTC. Intraday stamps are bar open times in UTC as Yahoo gives them; the live "current price" row
Yahoo appends while a market is open is not a bar and is dropped, as is every bar not yet closed.

Splits come with the day chart (``events=splits``) as ``chart.result[0].events.splits``:
``{"<epoch>": {"date": <epoch s of the ex-date's session open>, "numerator": 2, "denominator": 1,
"splitRatio": "2:1"}}``; the ratio is ``numerator / denominator`` and the ex-date the session
date, read in the exchange's time zone like day bars.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import numpy as np
import pandas as pd

from market.bars import Timeframe, empty_bars
from providers.base import AuthError, BadResponse, NotSupported, ProviderError, RateLimited
from providers.corporate import in_range, split_action
from providers.online import OnlineProvider, bars_from_columns, clip, concat_pages, dedupe_sorted, utc
from storage.corporate_actions import CorporateAction

CHART_PATH = "/v8/finance/chart/{symbol}"
EARLIEST = pd.Timestamp("1900-01-01", tz="UTC")  # yfinance's "max" starts here too
# A browser-like User-Agent: Yahoo answers 429 to clients that announce themselves as scripts.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) fks"
_INTERVAL = {Timeframe.M1: "1m", Timeframe.H1: "60m", Timeframe.D1: "1d"}
_GRANULARITY = {Timeframe.M1: {"1m"}, Timeframe.H1: {"60m", "1h"}, Timeframe.D1: {"1d"}}
# Per request: 1m at most 7 days (Yahoo refuses more than 8); 60m in 60-day windows; 1d whole.
WINDOW: dict[Timeframe, pd.Timedelta | None] = {
    Timeframe.M1: pd.Timedelta(days=7),
    Timeframe.H1: pd.Timedelta(days=60),
    Timeframe.D1: None,
}
# (documented availability, what we ask for at most: a day inside it, clear of Yahoo's clock)
AVAILABLE: dict[Timeframe, tuple[int, pd.Timedelta]] = {
    Timeframe.M1: (30, pd.Timedelta(days=29)),
    Timeframe.H1: (730, pd.Timedelta(days=729)),
}


def prefixed(error: ProviderError) -> ProviderError:
    """``error`` again, its message starting with ``yahoo:`` (errors raised by ``check``)."""
    message = f"yahoo: {error}"
    if isinstance(error, RateLimited):
        return RateLimited(message, retry_after=error.retry_after)
    return type(error)(message)


def chart_error(symbol: str, error: Any) -> ProviderError:
    """The typed error of a chart ``error`` object ``{"code": ..., "description": ...}``.

    "Not Found" (unknown or delisted symbol) and "Unprocessable Entity" (no data at this interval
    for the range) are ``NotSupported``; "Too Many Requests" is ``RateLimited``; "Unauthorized"
    and "Forbidden" are ``AuthError``; anything else is ``BadResponse``.
    """
    fields = error if isinstance(error, dict) else {"description": str(error)}
    code, text = str(fields.get("code") or ""), str(fields.get("description") or "")
    if code == "Not Found" or "No data found" in text:
        return NotSupported(f"Yahoo has no chart for {symbol!r}: {text or code}")
    if code == "Unprocessable Entity":
        return NotSupported(f"Yahoo has no such data for {symbol!r}: {text or code}")
    if code == "Too Many Requests":
        return RateLimited(f"Yahoo rate limit: {text or code}", retry_after=60.0)
    if code in ("Unauthorized", "Forbidden"):
        return AuthError(f"Yahoo refused the request ({code}): {text}")
    return BadResponse(f"Yahoo chart error {code or '?'}: {text}")


def _body_error(body: Any) -> Any:
    chart = body.get("chart") if isinstance(body, dict) else None
    return chart.get("error") if isinstance(chart, dict) else None


def error_mapper(symbol: str) -> Callable[[int, Any], ProviderError | None]:
    """``on_error`` of a chart request: a chart error body as a typed error (429 and 5xx go to the
    client, which retries them)."""

    def on_error(status: int, body: Any) -> ProviderError | None:
        if status in (418, 429) or status >= 500:
            return None
        error = _body_error(body)
        return chart_error(symbol, error) if error else None

    return on_error


def checker(symbol: str) -> Callable[[Any], None]:
    """``check`` of a chart request: a 200 must hold ``chart.result[0]`` and no ``chart.error``.

    Raises:
        NotSupported, RateLimited, AuthError, BadResponse: see :func:`chart_error`; BadResponse
            also for a body that is not a chart.
    """

    def check(body: Any) -> None:
        error = _body_error(body)
        if error:
            raise prefixed(chart_error(symbol, error))
        result = body.get("chart", {}).get("result") if isinstance(body, dict) else None
        if not isinstance(result, list) or not result or not isinstance(result[0], dict):
            raise BadResponse(f"yahoo: the body of {symbol!r} is not a chart: {str(body)[:160]}")

    return check


def _session_dates(index: pd.DatetimeIndex, meta: dict[str, Any]) -> pd.DatetimeIndex:
    """Session dates (00:00 UTC) of Yahoo's day stamps, read in the exchange's time zone."""
    zone = meta.get("exchangeTimezoneName")
    if isinstance(zone, str) and zone:
        try:
            local = index.tz_convert(zone)
        except (KeyError, ValueError):
            local = None
        if local is not None:
            return pd.DatetimeIndex(local.tz_localize(None).normalize()).tz_localize("UTC")
    offset = meta.get("gmtoffset")
    if isinstance(offset, int | float) and not isinstance(offset, bool):
        return (index + pd.Timedelta(seconds=float(offset))).normalize()
    raise BadResponse("yahoo: day bars without exchangeTimezoneName or gmtoffset in meta; cannot date them")


def chart_to_bars(symbol: str, body: Any, timeframe: Timeframe, now: pd.Timestamp) -> pd.DataFrame:
    """Canonical, closed bars from one chart response (see the module docstring for the rules).

    Raises:
        BadResponse: for a body whose shape, numbers or time stamps are not a usable chart, or
            two different bars for one time.
    """
    result = body["chart"]["result"][0]
    meta = result.get("meta") or {}
    granularity = meta.get("dataGranularity")
    if granularity is not None and granularity not in _GRANULARITY[timeframe]:
        raise BadResponse(f"yahoo: asked {symbol!r} for {_INTERVAL[timeframe]} bars, got {granularity!r}")
    stamps = result.get("timestamp") or []
    if not stamps:
        return empty_bars()
    try:
        quote_ = result["indicators"]["quote"][0]
        seconds = np.asarray(stamps, dtype="int64")
    except (KeyError, IndexError, TypeError, ValueError):
        raise BadResponse(
            f"yahoo: the chart of {symbol!r} lacks indicators.quote or integer timestamps"
        ) from None
    columns: dict[str, Sequence[Any] | np.ndarray] = {
        name: quote_[name] for name in ("open", "high", "low", "close", "volume") if name in quote_
    }
    index = pd.to_datetime(seconds, unit="s", utc=True)
    frame = bars_from_columns("yahoo", index, columns, drop_empty=True)
    if timeframe.is_intraday:
        # Yahoo's live quote row is stamped with the last trade's second, off the bar grid
        frame = frame[np.asarray(pd.DatetimeIndex(frame.index).second == 0)]
    else:
        frame = frame.set_axis(_session_dates(pd.DatetimeIndex(frame.index), meta).rename("ts"))
    closes = pd.DatetimeIndex(frame.index) + timeframe.delta
    return dedupe_sorted("yahoo", frame[closes <= now])


def chart_splits(symbol: str, body: Any) -> list[CorporateAction]:
    """The splits in one chart response's ``events.splits`` (none when absent), dated by session.

    Raises:
        BadResponse: for events that are not a mapping of split records, a split without an
            integer ``date``, or one whose numerator or denominator is missing, zero or negative.
    """
    result = body["chart"]["result"][0]
    events = result.get("events") or {}
    splits = events.get("splits") if isinstance(events, dict) else None
    if not splits:
        return []
    records = list(splits.values()) if isinstance(splits, dict) else None
    if records is None or not all(isinstance(r, dict) for r in records):
        raise BadResponse(f"yahoo: events.splits of {symbol!r} is not a mapping of split records")
    dates = [r.get("date") for r in records]
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in dates):
        raise BadResponse(f"yahoo: a split of {symbol!r} lacks an integer 'date' (epoch seconds)")
    index = pd.to_datetime(np.asarray(dates, dtype="int64"), unit="s", utc=True)
    sessions = _session_dates(index, result.get("meta") or {})
    return [
        split_action("yahoo", symbol, day, record.get("numerator"), record.get("denominator"), record)
        for day, record in zip(sessions, records, strict=True)
    ]


class YahooProvider(OnlineProvider):
    """Bars of a Yahoo symbol (``AAPL``, ``^GSPC``, ``EURUSD=X``, ``BTC-USD``) from the chart API.

    ``start=None`` means as far back as Yahoo keeps the timeframe (29 days for 1m, 729 days for
    1h, 1900 for 1d); ``end=None`` means now.
    """

    name: ClassVar[str] = "yahoo"
    needs_key: ClassVar[bool] = False

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Canonical bars of the Yahoo symbol ``symbol`` with ``start <= ts < end``.

        Raises:
            NotSupported: for a symbol Yahoo does not know, a timeframe it does not serve, or a
                range older than Yahoo keeps for the timeframe (the message names the limit).
            RateLimited, Unavailable, BadResponse, AuthError: see :mod:`providers.http`.
        """
        tf = self.check_timeframe(timeframe)
        now = self.now()
        hi = min(now, utc(end)) if end is not None else now
        lo = self._earliest(tf, now) if start is None else utc(start)
        self._check_available(symbol, tf, lo, now)
        if lo >= hi:
            return empty_bars()
        span = WINDOW[tf]
        if span is None:  # day stamps are session opens: a day either side catches every session
            windows = [(lo - pd.Timedelta(days=1), hi + pd.Timedelta(days=1))]
        else:
            edges = [*pd.date_range(lo, hi, freq=span, inclusive="left"), hi]
            windows = list(itertools.pairwise(edges))
        pages = [self._chart(symbol, tf, a, b, now) for a, b in windows]
        return clip(concat_pages(self.name, pages), lo, hi)

    def fetch_splits(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> list[CorporateAction]:
        """Splits of the Yahoo symbol ``symbol`` with ``start <= ex_date < end``, from one day chart
        (a day wider on each side, as for day bars), sorted by ex-date.

        Raises:
            NotSupported: for a symbol Yahoo does not know.
            BadResponse: for a split without a date or a valid ratio, or a body that is no chart.
            RateLimited, Unavailable, AuthError: see :mod:`providers.http`.
        """
        lo, hi = utc(start), utc(end)
        if lo >= hi:
            return []
        day = pd.Timedelta(days=1)
        body = self._chart_body(symbol, Timeframe.D1, lo - day, hi + day)
        return in_range(chart_splits(symbol, body), lo, hi)

    def _earliest(self, tf: Timeframe, now: pd.Timestamp) -> pd.Timestamp:
        """The first time Yahoo is asked for when no start is given."""
        if tf in AVAILABLE:
            return (now - AVAILABLE[tf][1]).ceil("min")
        return EARLIEST

    def _check_available(self, symbol: str, tf: Timeframe, lo: pd.Timestamp, now: pd.Timestamp) -> None:
        """Refuse a start older than Yahoo keeps ``tf`` bars."""
        if tf not in AVAILABLE:
            return
        days, safe = AVAILABLE[tf]
        if lo < now - safe:
            raise NotSupported(
                f"yahoo: {tf.value} bars exist only for the last {days} days (FKS asks for at most the last "
                f"{safe.days}); {symbol} from {lo.isoformat()} is older: use another provider, a later "
                f"start or a coarser timeframe"
            )

    def _chart(
        self, symbol: str, tf: Timeframe, lo: pd.Timestamp, hi: pd.Timestamp, now: pd.Timestamp
    ) -> pd.DataFrame:
        """Bars of one chart request covering ``[lo, hi)``."""
        return chart_to_bars(symbol, self._chart_body(symbol, tf, lo, hi), tf, now)

    def _chart_body(self, symbol: str, tf: Timeframe, lo: pd.Timestamp, hi: pd.Timestamp) -> Any:
        """The checked body of one chart request covering ``[lo, hi)`` (with dividends and splits)."""
        params = {
            "period1": int(lo.floor("s").timestamp()),
            "period2": int(hi.ceil("s").timestamp()),
            "interval": _INTERVAL[tf],
            "includePrePost": "false",
            "events": "div,splits",
        }
        return self.client.get_json(
            CHART_PATH.format(symbol=quote(symbol, safe="")),
            params,
            headers={"User-Agent": USER_AGENT},
            check=checker(symbol),
            on_error=error_mapper(symbol),
        )
