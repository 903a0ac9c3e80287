"""Back-adjusting bars for stock splits.

A split of ratio ``r`` (new shares per old share: 2.0 for 2-for-1, 0.1 for 1-for-10) divides the
price by ``r`` and multiplies the volume by ``r`` from its ex-date on. Back-adjusting puts the bars
before the ex-date on the new basis, so that the series has no jump there: every bar before an
ex-date has its open, high, low and close divided by the product of the ratios of all later splits
and its volume multiplied by it. Bars on or after the last ex-date are unchanged.

This module knows nothing of the store: a split is anything with an ``ex_date`` (00:00 UTC of the
first session on the new basis) and a ``ratio`` (:class:`SplitLike`), such as
:class:`storage.corporate_actions.CorporateAction`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from market.bars import BAR_COLUMNS, as_utc, as_utc_index

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")


class SplitLike(Protocol):
    """A split as :func:`apply_splits` reads it: the first session on the new basis and the ratio."""

    @property
    def ex_date(self) -> Any:
        """00:00 UTC of the first session trading on the new basis (a timestamp; naive is UTC)."""
        ...

    @property
    def ratio(self) -> float:
        """New shares per old share (> 0)."""
        ...


def split_factors(index: pd.DatetimeIndex, actions: Sequence[SplitLike]) -> np.ndarray:
    """Per bar of ``index``, the product of the ratios of the splits whose ex-date is after it.

    An action with a ``kind`` other than ``"split"`` is ignored.

    Raises:
        ValueError: for a ratio that is not a positive finite number or an ex-date that is not a
            timestamp; the message names the split.
    """
    splits: list[tuple[pd.Timestamp, float]] = []
    for action in actions:
        if getattr(action, "kind", "split") != "split":
            continue
        ex_date = as_utc(action.ex_date, "ex_date of a split")
        ratio = float(action.ratio)
        if not math.isfinite(ratio) or ratio <= 0:
            raise ValueError(
                f"the split of {ex_date:%Y-%m-%d} has ratio {action.ratio!r}: it must be a positive number "
                "of new shares per old share (2.0 for 2-for-1, 0.1 for 1-for-10)"
            )
        splits.append((ex_date, ratio))
    if not splits:
        return np.ones(len(index))
    splits.sort(key=lambda s: s[0])
    ex_ns = np.array([s[0].value for s in splits], dtype="int64")
    # later[k]: the product of the ratios of splits k, k+1, ...; later[n] = 1 (no split after)
    later = np.append(np.cumprod([s[1] for s in splits][::-1])[::-1], 1.0)
    stamps = as_utc_index(index)
    # splits with ex_date <= ts have already happened for the bar; the rest lie ahead of it
    happened = np.searchsorted(ex_ns, stamps.as_unit("ns").asi8, side="right")
    factors: np.ndarray = later[happened]
    return factors


def apply_splits(bars: pd.DataFrame, actions: Sequence[SplitLike]) -> pd.DataFrame:
    """``bars`` back-adjusted for ``actions`` (see the module docstring); a new frame, the input is
    left alone. ``bars`` is a canonical bar frame (UTC ``ts`` index; naive is UTC); columns other
    than OHLCV pass through. The actions must be the splits of the bars' symbol.

    Raises:
        ValueError: when ``bars`` lacks a time index or an OHLCV column, or a split is invalid
            (see :func:`split_factors`).
    """
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError(
            f"bars need a DatetimeIndex of bar open times (UTC), got {type(bars.index).__name__}; "
            "use market.bars.canonical_bars(frame) first"
        )
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {', '.join(missing)}; pass canonical OHLCV bars")
    factors = split_factors(bars.index, actions)
    adjusted = bars.copy()
    if (factors == 1.0).all():
        return adjusted
    for column in PRICE_COLUMNS:
        adjusted[column] = bars[column].to_numpy(dtype="float64") / factors
    adjusted["volume"] = bars["volume"].to_numpy(dtype="float64") * factors
    return adjusted
