"""CoinGecko: hour and day bars of crypto built from ``market_chart/range`` price points.

``GET {FKS_COINGECKO_BASE_URL}/coins/{id}/market_chart/range?vs_currency=usd&from=<unix s>&to=<unix s>``
answers ``{"prices": [[ms, price]], "market_caps": [...], "total_volumes": [[ms, volume]]}``.
The spacing of the points is chosen by CoinGecko from the range (its "automatic granularity"):
a range of one day ending now gives ~5-minute points, any other range up to 90 days hourly
points, longer ranges daily points at 00:00 UTC. CoinGecko does not sell candles at these
granularities on the free (demo) plan, so bars are built from points, honestly:

- **1h bars** come from ~5-minute points, which CoinGecko serves only for the **last 24 hours**:
  a 1h request that starts earlier is ``NotSupported`` (without a request) so the manager asks
  another source. One request covers the whole window.
- **1d bars** come from hourly points, requested in windows of less than 90 days aligned to UTC
  midnights (the free plan reaches back 365 days; older ranges are ``NotSupported``).
- A bar's open is the first point in it, high/low the largest/smallest, close the last point in
  it; a bar needs at least half of its expected points (6 of 12 for 1h, 12 of 24 for 1d),
  otherwise it is left out (a gap, not a made-up bar). The bar still in progress is left out.
- The spacing actually returned is checked: coarser points than expected (hourly points for 1h
  bars, daily points for 1d bars) raise ``BadResponse`` instead of becoming flat bars.
- **Volume**: CoinGecko has no interval volume. For 1d, ``total_volumes`` is a rolling 24-hour
  volume; the bar takes the last such point inside its day (the 24 hours ending at most one
  step before midnight). For 1h the volume is 0.

1m bars are ``NotSupported``. The ``/coins/{id}/ohlc`` endpoint is not used: on the free plan it
returns 30-minute candles for 1 day and 4-hour or 4-day candles beyond, which build neither
1h nor 1d bars. The provider symbol is the CoinGecko coin id (``bitcoin``, ``ethereum``); prices
are in US dollars. An optional demo key goes in the ``x-cg-demo-api-key`` header.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from market.bars import Timeframe, empty_bars
from providers.base import AuthError, BadResponse, NotSupported, ProviderError, RateLimited
from providers.http import redact
from providers.online import OnlineProvider, bars_from_columns, clip, concat_pages, utc

_DAY = pd.Timedelta(days=1)
_DAILY_WINDOW = pd.Timedelta(days=89)  # < 90 days: hourly points
_HISTORY = pd.Timedelta(days=365)  # what the free plan reaches back to
# timeframe -> (expected spacing of the points it is built from, the coarsest spacing accepted)
_SPACING = {
    Timeframe.H1: (pd.Timedelta(minutes=5), pd.Timedelta(minutes=10)),
    Timeframe.D1: (pd.Timedelta(hours=1), pd.Timedelta(minutes=90)),
}
_PLAN_CODES = (10005, 10006, 10011, 10012)  # endpoint / range beyond the plan
_KEY_CODES = (10002, 10010)  # missing or invalid key


class CoinGeckoProvider(OnlineProvider):
    """Bars from CoinGecko price points (optional ``FKS_COINGECKO_API_KEY``, a demo key)."""

    name: ClassVar[str] = "coingecko"
    timeframes: ClassVar[tuple[Timeframe, ...]] = (Timeframe.H1, Timeframe.D1)

    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Bars of coin id ``symbol`` in USD with ``start <= ts < end`` (UTC).

        ``start`` defaults to 24 hours ago (1h) or 365 days ago (1d); ``end`` to now.

        Raises:
            NotSupported: 1m bars, 1h bars older than 24 hours, an unknown coin id, a range
                beyond the plan.
            BadResponse: points coarser than the bars need, or malformed points.
            RateLimited, Unavailable, AuthError: see :mod:`providers.http`.
        """
        tf = self.check_timeframe(timeframe)
        now = self.now()
        limit = now.floor(tf.delta)  # bars that start before it are complete
        stop = min(utc(end).ceil(tf.delta), limit) if end is not None else limit
        if tf is Timeframe.H1:
            earliest = (now - _DAY).ceil("h")
            first = utc(start).floor("h") if start is not None else earliest
            if first < earliest:
                raise NotSupported(
                    "coingecko serves 5-minute points only for the last 24 hours (older ranges come "
                    f"hourly, too coarse for 1h bars); 1h bars from {first.isoformat()} need another source"
                )
            # "1 day from current time" is what gets 5-minute points: the request ends now
            windows = [(first, stop, now)] if first < stop else []
        else:
            first = utc(start).floor("D") if start is not None else stop - _HISTORY
            windows = [(lo, hi, hi) for lo, hi in _windows(first, stop, _DAILY_WINDOW)]
        pages = [self._window(symbol, tf, lo, hi, until) for lo, hi, until in windows]
        return clip(concat_pages(self.name, pages), start, end)

    def _window(
        self, coin: str, tf: Timeframe, lo: pd.Timestamp, hi: pd.Timestamp, until: pd.Timestamp
    ) -> pd.DataFrame:
        """Bars in ``[lo, hi)`` (bar boundaries) from one request for the points of ``[lo, until)``."""
        headers = {"x-cg-demo-api-key": self.api_key.get_secret_value()} if self.api_key else None
        body = self.client.get_json(
            f"/coins/{coin}/market_chart/range",
            {"vs_currency": "usd", "from": int(lo.timestamp()), "to": int(until.timestamp()) - 1},
            headers=headers,
            check=self._check,
            on_error=self._on_error,
        )
        if not isinstance(body, dict):
            raise BadResponse(f"coingecko: expected a JSON object, got {type(body).__name__}")
        prices = _points(body, "prices")
        prices = prices[(prices.index >= lo) & (prices.index < hi)]
        if prices.empty:
            return empty_bars()
        _check_spacing(coin, tf, pd.DatetimeIndex(prices.index))
        volumes = _points(body, "total_volumes", missing_ok=True) if tf is Timeframe.D1 else None
        return aggregate_points(self.name, prices, tf, volumes)

    def _check(self, body: Any) -> None:
        error = classify_error(body)
        if error is not None:
            raise type(error)(redact(str(error), self.client.secrets), **_retry(error))

    def _on_error(self, status: int, body: Any) -> ProviderError | None:
        return classify_error(body, status)


def aggregate_points(
    provider: str, prices: pd.Series, tf: Timeframe, volumes: pd.Series | None = None
) -> pd.DataFrame:
    """OHLC bars of ``tf`` from price points (a UTC-indexed, sorted Series).

    Open is the first point of a bar, high/low the extremes, close the last point; bars with fewer
    than half their expected points are dropped. ``volumes`` (rolling 24 h volume points) gives
    each bar the last volume point inside it; without it volume is 0.
    """
    step = _SPACING[tf][0]
    need = max(2, int(tf.delta / step) // 2)
    buckets = pd.DatetimeIndex(prices.index).floor(tf.delta)
    grouped = prices.groupby(buckets)
    table = pd.DataFrame(
        {
            "open": grouped.first(),
            "high": grouped.max(),
            "low": grouped.min(),
            "close": grouped.last(),
            "count": grouped.size(),
        }
    )
    table = table[table["count"] >= need]
    columns: dict[str, Any] = {c: table[c].to_numpy() for c in ("open", "high", "low", "close")}
    if volumes is not None:
        last = volumes.groupby(pd.DatetimeIndex(volumes.index).floor(tf.delta)).last()
        columns["volume"] = last.reindex(table.index).fillna(0.0).to_numpy()
    return bars_from_columns(provider, pd.DatetimeIndex(table.index), columns)


def classify_error(body: Any, status: int | None = None) -> ProviderError | None:
    """The typed error a CoinGecko error body means (``{"status": {"error_code", "error_message"}}``,
    possibly under ``"error"``, or ``{"error": "coin not found"}``), or None for data."""
    if not isinstance(body, dict):
        return None
    inner = body.get("error")
    if isinstance(inner, str):
        if "not found" in inner.lower():
            return NotSupported(f"coingecko: {inner} (check the coin id: see /coins/list)")
        return BadResponse(f"coingecko: {inner}")
    holder = inner if isinstance(inner, dict) else body
    state = holder.get("status")
    if not isinstance(state, dict) or "error_code" not in state:
        return None
    code = state.get("error_code")
    message = str(state.get("error_message") or "")
    if code == 429:
        return RateLimited(f"coingecko: rate limited: {message}", retry_after=60.0)
    if code in _PLAN_CODES:
        return NotSupported(f"coingecko: beyond the plan ({code}): {message}")
    if code in _KEY_CODES or status in (401, 403):
        return AuthError(f"coingecko: key refused ({code}): {message}; check FKS_COINGECKO_API_KEY")
    return BadResponse(f"coingecko: error {code}: {message}")


def _windows(
    first: pd.Timestamp, stop: pd.Timestamp, size: pd.Timedelta
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    out = []
    lo = first
    while lo < stop:
        hi = min(lo + size, stop)
        out.append((lo, hi))
        lo = hi
    return out


def _points(body: dict[str, Any], key: str, *, missing_ok: bool = False) -> pd.Series:
    """``body[key]`` (``[[ms, value], ...]``) as a float Series on a sorted UTC index.

    With ``missing_ok`` points whose value is null are dropped instead of refused.

    Raises:
        BadResponse: when the list is missing or malformed, or one time has two values.
    """
    raw = body.get(key)
    if not isinstance(raw, list):
        raise BadResponse(f"coingecko: the answer lacks {key!r}")
    if not raw:
        return pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype="float64")
    try:
        array = np.asarray(raw, dtype="float64")
    except (TypeError, ValueError):
        raise BadResponse(f"coingecko: {key!r} holds something that is not a [time, number] pair") from None
    if array.ndim != 2 or array.shape[1] != 2:
        raise BadResponse(f"coingecko: {key!r} holds something that is not a [time, number] pair")
    finite = np.isfinite(array).all(axis=1)
    if missing_ok:
        array = array[finite]
    elif not finite.all():
        when = (
            pd.Timestamp(array[~finite][0, 0], unit="ms", tz="UTC")
            if np.isfinite(array[~finite][0, 0])
            else "?"
        )
        raise BadResponse(f"coingecko: {key!r} holds a point without a number (at {when})")
    index = pd.DatetimeIndex(pd.to_datetime(array[:, 0].astype("int64"), unit="ms", utc=True)).as_unit("ns")
    series = pd.Series(array[:, 1], index=index).sort_index(kind="stable")
    dup = series.index.duplicated(keep="first")
    if dup.any():
        frame = series.reset_index()
        exact = frame.duplicated(keep="first").to_numpy()
        series = series[~exact]
        if series.index.has_duplicates:
            when = series.index[series.index.duplicated()][0]
            raise BadResponse(f"coingecko: two different {key} for {when.isoformat()}")
    return series


def _check_spacing(coin: str, tf: Timeframe, index: pd.DatetimeIndex) -> None:
    """Raise ``BadResponse`` when the points are coarser than the bars of ``tf`` need."""
    if len(index) < 2:
        return
    expected, coarsest = _SPACING[tf]
    spacing = pd.Timedelta(float(np.median(np.diff(index.as_unit("ns").asi8))), "ns")
    if spacing > coarsest:
        raise BadResponse(
            f"coingecko: {coin} points came {spacing} apart, too coarse for {tf.value} bars "
            f"(expected about {expected}); CoinGecko chose another granularity for this range"
        )


def _retry(error: ProviderError) -> dict[str, Any]:
    return {"retry_after": error.retry_after} if isinstance(error, RateLimited) else {}
