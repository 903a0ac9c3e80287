"""What every online adapter shares: the base class and turning response rows into canonical bars.

An adapter speaks one provider's documented HTTP API through an :class:`providers.http.HttpClient`
and takes the provider's own symbol (``BTCUSDT``, ``X:BTCUSD``, ``bitcoin``); mapping FKS symbols
to provider symbols is the manager's job (``AssetSpec.provider_symbols``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import SecretStr

from market.bars import BAR_COLUMNS, Timeframe, as_utc_index, empty_bars
from market.bars import as_utc as utc
from providers.base import BadResponse, NotSupported
from providers.http import HttpClient


class OnlineProvider(ABC):
    """Base of the HTTP adapters. Subclasses set ``name`` and ``timeframes`` and implement
    :meth:`fetch_bars`; ``start`` is inclusive, ``end`` exclusive, both UTC."""

    name: ClassVar[str]
    timeframes: ClassVar[tuple[Timeframe, ...]] = (Timeframe.M1, Timeframe.H1, Timeframe.D1)
    needs_key: ClassVar[bool] = False

    def __init__(
        self,
        client: HttpClient,
        api_key: SecretStr | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``wall_clock`` gives epoch seconds: what "now" is (which bars have closed, how far back a
        provider keeps history, when a daily allowance resets)."""
        self.client = client
        self.api_key = api_key
        self.wall_clock = wall_clock

    def now(self) -> pd.Timestamp:
        """The current UTC time according to ``wall_clock``."""
        return pd.Timestamp(self.wall_clock(), unit="s", tz="UTC")

    def key(self) -> str:
        """The API key's value.

        Raises:
            AuthError: when the provider needs a key and none is set; the message names the setting.
        """
        from providers.base import AuthError

        if self.api_key is None or not self.api_key.get_secret_value():
            raise AuthError(
                f"{self.name}: no API key; set FKS_{self.name.upper()}_API_KEY (or name a Prefect Secret "
                f"block for it in FKS_API_KEY_BLOCKS)"
            )
        return self.api_key.get_secret_value()

    def check_timeframe(self, timeframe: Timeframe | str) -> Timeframe:
        """``timeframe`` parsed.

        Raises:
            NotSupported: when this provider does not serve it; the message lists what it serves.
        """
        tf = Timeframe.parse(timeframe)
        if tf not in self.timeframes:
            served = ", ".join(t.value for t in self.timeframes) or "no bars"
            raise NotSupported(f"{self.name} does not serve {tf.value} bars (it serves {served})")
        return tf

    @abstractmethod
    def fetch_bars(
        self,
        symbol: str,
        timeframe: Timeframe | str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Canonical bars of the provider symbol ``symbol`` with ``start <= ts < end``."""

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self.client.close()


def to_ms(value: pd.Timestamp) -> int:
    """Epoch milliseconds of a timestamp."""
    return int(utc(value).value // 1_000_000)


def bars_from_columns(
    provider: str,
    ts: pd.DatetimeIndex | pd.Series | np.ndarray | list[Any],
    columns: dict[str, Sequence[Any] | np.ndarray],
    *,
    drop_empty: bool = False,
) -> pd.DataFrame:
    """Canonical bars from a response's timestamps and OHLCV columns (strings or numbers).

    Rows are sorted by time. A timestamp repeated with identical values is kept once; repeated
    with different values it is an error. With ``drop_empty``, rows whose OHLC are all missing
    (the provider's "no trade in this interval") are dropped; a row with only some of them
    missing is an error. ``volume`` may be absent (NaN becomes 0 only when the provider has no
    volume at all, which the caller says by omitting the column).

    Raises:
        BadResponse: for unparseable numbers, partly empty rows, conflicting duplicates or
            columns of different lengths; the message names the provider and the timestamp.
    """
    index = as_utc_index(ts)
    data: dict[str, np.ndarray] = {}
    for name in BAR_COLUMNS:
        raw = columns.get(name)
        if raw is None:
            if name != "volume":
                raise BadResponse(f"{provider}: response lacks {name!r}")
            data[name] = np.zeros(len(index))
            continue
        if len(raw) != len(index):
            raise BadResponse(f"{provider}: {name!r} has {len(raw)} values for {len(index)} timestamps")
        try:
            data[name] = pd.to_numeric(pd.Series(list(raw), dtype="object"), errors="raise").to_numpy(
                dtype="float64"
            )
        except (ValueError, TypeError) as exc:
            raise BadResponse(f"{provider}: {name!r} holds a value that is not a number ({exc})") from None
    frame = pd.DataFrame(data, index=index.as_unit("ns").rename("ts"))
    ohlc = frame[["open", "high", "low", "close"]].isna()
    if drop_empty:
        frame = frame[~ohlc.all(axis=1)]
        ohlc = frame[["open", "high", "low", "close"]].isna()
    partial = ohlc.any(axis=1)
    if partial.any():
        first = frame.index[int(partial.to_numpy().argmax())]
        raise BadResponse(f"{provider}: bar {first.isoformat()} lacks prices")
    frame["volume"] = frame["volume"].fillna(0.0)
    return dedupe_sorted(provider, frame)


def dedupe_sorted(provider: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` sorted by time with exact duplicate rows dropped.

    Raises:
        BadResponse: when one timestamp carries two different bars.
    """
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index(kind="stable")
    if frame.index.has_duplicates:
        exact = frame.reset_index().duplicated(keep="first").to_numpy()
        frame = frame[~exact]
        if frame.index.has_duplicates:
            dup = frame.index[frame.index.duplicated()][0]
            raise BadResponse(f"{provider}: two different bars for {dup.isoformat()} in one response")
    return frame


def completed(frame: pd.DataFrame, timeframe: Timeframe, now: pd.Timestamp) -> pd.DataFrame:
    """Rows of ``frame`` whose bar had closed by ``now`` (the forming bar is not a bar yet)."""
    if frame.empty:
        return frame
    closes = pd.DatetimeIndex(frame.index) + timeframe.delta
    return frame[closes <= now]


def clip(frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    """Rows with ``start <= ts < end``."""
    if frame.empty:
        return empty_bars() if not len(frame.columns) else frame
    mask = np.ones(len(frame), dtype=bool)
    if start is not None:
        mask &= frame.index >= utc(start)
    if end is not None:
        mask &= frame.index < utc(end)
    return frame[mask]


def concat_pages(provider: str, pages: list[pd.DataFrame]) -> pd.DataFrame:
    """One canonical frame from pages (overlaps at page edges collapse; conflicts are errors)."""
    pages = [p for p in pages if len(p)]
    if not pages:
        return empty_bars()
    return dedupe_sorted(provider, pd.concat(pages))
