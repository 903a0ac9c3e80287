"""What a portfolio environment steps through: N assets' bars on one calendar, their scaled
features and the train / validation / test spans (:class:`PortfolioData`, built by
:func:`portfolio_data`).

The environment never reads a database or a frame while it steps: everything is here as
float64 numpy arrays, aligned row by row.

* **Calendar.** The rows are the union of the assets' bar times, from the first time every
  asset has :attr:`features.FeatureSet.min_history` bars of its own (so every feature is its
  full-history value, as a served model would see it) to the last time every asset still has
  bars. An asset without a bar at a row (its market is closed: a weekend for a stock beside a
  coin, a holiday) carries its last close as that row's open and close, its last feature row,
  and ``tradable`` false: the environment never trades it on that row.
* **Features** are built per asset on its own bars with :func:`features.build_features` (no
  indicator code here), then standardised with one :class:`models.preprocessing.FeatureScaler`
  fitted on the training span only, on the rows where each asset has a bar of its own (all
  assets pooled, one mean and scale per feature), clipped to ``[-clip, clip]``.
* **Spans** are consecutive row ranges: ``train`` (bars before ``train_end``), ``validation``
  (from ``train_end`` to ``validation_end``) and ``test`` (the rest). An episode on a span
  observes feature rows before the span's first bar (its window), never after its last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from features import FeatureSet, build_features, infer_timeframe
from market.bars import Timeframe, as_utc
from models.preprocessing import FeatureScaler

__all__ = ["SPANS", "AlignedAssets", "PortfolioData", "SpanName", "align_assets", "portfolio_data"]

SpanName = Literal["train", "validation", "test"]
SPANS: tuple[SpanName, ...] = ("train", "validation", "test")


def _readonly(values: np.ndarray, dtype: type) -> np.ndarray:
    out: np.ndarray = np.ascontiguousarray(values, dtype=dtype)
    if out.flags.writeable:
        out = out.copy() if out is values else out
        out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class PortfolioData:
    """N assets on a common calendar, ready for :class:`envs.portfolio.PortfolioEnv`.

    Attributes:
        assets: asset names, in column order.
        index: the rows' bar open times (UTC), ``T`` of them.
        open, close: ``(T, N)`` float64 prices; on a row where an asset has no bar both hold its
            last close.
        tradable: ``(T, N)`` bool: the asset has a bar of its own on that row (its market is
            open); the environment trades an asset at a row's open only where this is true.
        features: ``(T, N, F)`` float64 scaled features; row ``t`` uses bars ``<= t`` only.
        feature_names: the ``F`` feature columns.
        train, validation, test: the spans as ``slice(start, stop)`` over rows, consecutive and
            covering all rows (validation and test may be empty).
        scaler: the scaler fitted on the training span (None when the features were given
            already scaled).
        feature_set: name and version of the feature set (``"name@version"``), or ``""``.
        timeframe: ``1m``, ``1h`` or ``1d``.

    Raises:
        ValueError: inconsistent shapes, non-finite or non-positive prices, non-finite
            features, or spans that are not consecutive ranges covering the rows.
    """

    assets: tuple[str, ...]
    index: pd.DatetimeIndex
    open: np.ndarray
    close: np.ndarray
    tradable: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    train: slice
    validation: slice
    test: slice
    scaler: FeatureScaler | None = field(default=None, repr=False)
    feature_set: str = ""
    timeframe: str = "1d"

    def __post_init__(self) -> None:
        n_rows, n_assets = len(self.index), len(self.assets)
        if n_assets == 0 or len(set(self.assets)) != n_assets:
            raise ValueError(f"assets must be distinct names, at least one; got {self.assets!r}")
        for name, dtype in (("open", np.float64), ("close", np.float64), ("tradable", np.bool_)):
            values = _readonly(getattr(self, name), dtype)
            if values.shape != (n_rows, n_assets):
                raise ValueError(
                    f"{name} has shape {values.shape}; expected (rows, assets) = {(n_rows, n_assets)}"
                )
            object.__setattr__(self, name, values)
        for name in ("open", "close"):
            values = getattr(self, name)
            if not (np.isfinite(values).all() and (values > 0).all()):
                raise ValueError(
                    f"{name} prices must be finite and positive; fill or drop the bad bars first"
                )
        features = _readonly(self.features, np.float64)
        if features.shape != (n_rows, n_assets, len(self.feature_names)) or not self.feature_names:
            raise ValueError(
                f"features have shape {features.shape}; expected (rows, assets, features) = "
                f"{(n_rows, n_assets, len(self.feature_names))} with at least one feature"
            )
        if not np.isfinite(features).all():
            raise ValueError("features hold NaN or infinite values; drop the warm-up rows first")
        object.__setattr__(self, "features", features)
        stop = 0
        for name in SPANS:
            span = getattr(self, name)
            if not (isinstance(span, slice) and span.step in (None, 1) and span.start == stop):
                raise ValueError(
                    f"span {name} must be slice({stop}, stop): the spans are consecutive row ranges"
                )
            if not (isinstance(span.stop, int) and span.start <= span.stop <= n_rows):
                raise ValueError(f"span {name} {span!r} lies outside the {n_rows} rows")
            stop = span.stop
        if stop != n_rows:
            raise ValueError(
                f"the spans cover {stop} of {n_rows} rows; the test span must end at the last row"
            )

    @property
    def n_assets(self) -> int:
        """Number of assets ``N``."""
        return len(self.assets)

    @property
    def n_features(self) -> int:
        """Features per asset ``F``."""
        return len(self.feature_names)

    def span(self, name: SpanName) -> slice:
        """The rows of span ``name`` (``train``, ``validation`` or ``test``).

        Raises:
            ValueError: an unknown span name.
        """
        if name not in SPANS:
            raise ValueError(f"unknown span {name!r}: use one of {', '.join(SPANS)}")
        span: slice = getattr(self, name)
        return span

    def prices(self, rows: slice = slice(None)) -> dict[str, pd.DataFrame]:
        """``{asset: DataFrame(open, close)}`` on ``rows``: what :func:`backtest.run` takes."""
        index = self.index[rows]
        return {
            asset: pd.DataFrame({"open": self.open[rows, j], "close": self.close[rows, j]}, index=index)
            for j, asset in enumerate(self.assets)
        }


def _span_end(index: pd.DatetimeIndex, when: object, what: str) -> int:
    return int(index.searchsorted(as_utc(when, what), side="left"))


def _check_bars(asset: str, frame: object, min_history: int) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame) or not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError(
            f"bars for {asset!r} must be a canonical bar frame (DatetimeIndex ts, open/high/low/close/"
            "volume); use market.bars.canonical_bars(frame)"
        )
    if frame.index.tz is None or not (frame.index.is_monotonic_increasing and frame.index.is_unique):
        raise ValueError(
            f"bars for {asset!r} need a sorted, unique, tz-aware UTC index; use "
            "market.bars.canonical_bars(frame)"
        )
    if len(frame) < min_history:
        raise ValueError(
            f"{asset!r} has {len(frame)} bars; the feature set needs {min_history} before its first "
            "complete row (min_history): load a longer history"
        )
    return frame


@dataclass(frozen=True, eq=False)
class AlignedAssets:
    """N assets' bars and raw (unscaled) features on one calendar: what :func:`align_assets` returns.

    Attributes:
        assets: asset names, in column order.
        index: the rows' bar open times (UTC), ``T`` of them.
        open, close: ``(T, N)`` float64 prices (a closed market's row holds its last close).
        tradable: ``(T, N)`` bool: the asset has a bar of its own on that row.
        features: ``(T, N, F)`` float64 raw features (carried forward on closed rows).
        feature_names: the ``F`` feature columns.
    """

    assets: tuple[str, ...]
    index: pd.DatetimeIndex
    open: np.ndarray
    close: np.ndarray
    tradable: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]


def align_assets(
    bars: Mapping[str, pd.DataFrame], feature_set: FeatureSet, *, timeframe: str | Timeframe | None = None
) -> AlignedAssets:
    """Put N assets' bars and raw features on one calendar (the module docstring's **Calendar**).

    What :func:`portfolio_data` scales and cuts, and what a served allocator computes from the
    bars a client sends: the same code on both sides.

    Raises:
        ValueError: no assets; bars that are not canonical or shorter than the feature set's
            ``min_history``; assets that never overlap.
    """
    if not isinstance(bars, Mapping) or not bars:
        raise ValueError("bars must be a non-empty dict {asset: canonical bars}")
    min_history = feature_set.min_history
    frames = {str(asset): _check_bars(str(asset), frame, min_history) for asset, frame in bars.items()}
    first = max(frame.index[min_history - 1] for frame in frames.values())
    last = min(frame.index[-1] for frame in frames.values())
    if first > last:
        raise ValueError(
            f"the assets share no complete rows: the last one to reach min_history ({min_history} bars) "
            f"does so at {first}, after another ends at {last}; choose assets with overlapping histories"
        )
    index = frames[next(iter(frames))].index
    for frame in frames.values():
        index = index.union(frame.index)
    index = index[(index >= first) & (index <= last)].rename("ts")

    names: list[str] = []
    open_, close, tradable, raw = [], [], [], []
    for frame in frames.values():
        feats = build_features(frame, feature_set, timeframe=timeframe)
        names = list(feats.columns)
        own = frame.loc[(frame.index <= last)]
        has_bar = index.isin(own.index)
        aligned_close = own["close"].reindex(index, method="ffill").to_numpy(dtype=np.float64)
        aligned_open = own["open"].reindex(index).to_numpy(dtype=np.float64)
        open_.append(np.where(has_bar, aligned_open, aligned_close))
        close.append(aligned_close)
        tradable.append(has_bar)
        raw.append(feats.reindex(index, method="ffill").to_numpy(dtype=np.float64))

    return AlignedAssets(
        assets=tuple(frames),
        index=index,
        open=np.stack(open_, axis=1),
        close=np.stack(close, axis=1),
        tradable=np.stack(tradable, axis=1),
        features=np.stack(raw, axis=1),
        feature_names=tuple(names),
    )


def portfolio_data(
    bars: Mapping[str, pd.DataFrame],
    feature_set: FeatureSet,
    *,
    train_end: object,
    validation_end: object = None,
    timeframe: str | Timeframe | None = None,
    clip: float | None = 10.0,
) -> PortfolioData:
    """Align N assets' bars on one calendar, build and scale their features, and cut the spans.

    See the module docstring for the calendar, the closed-market rows and the scaling.

    Args:
        bars: ``{asset: canonical bars}`` (``market.bars``), each on its own calendar.
        feature_set: the features to build (:func:`features.get_feature_set`); a research-only
            set (no ``min_history``) is refused.
        train_end: the first bar time after the training span (UTC; naive is UTC).
        validation_end: the first bar time of the test span; ``None`` leaves no validation span
            (the test span starts at ``train_end``).
        timeframe: the bars' timeframe (calendar features use it); default: inferred.
        clip: the scaler's bound in standard deviations (``None``: no clipping).

    Returns:
        A :class:`PortfolioData`.

    Raises:
        ValueError: no assets; bars that are not canonical or shorter than the set's
            ``min_history``; assets that never overlap; NaN features after the warm-up;
            ``validation_end`` before ``train_end``; a training span with no rows.
    """
    aligned = align_assets(bars, feature_set, timeframe=timeframe)
    index, assets, names = aligned.index, aligned.assets, list(aligned.feature_names)
    n = len(index)
    train_stop = _span_end(index, train_end, "train_end")
    val_stop = train_stop if validation_end is None else _span_end(index, validation_end, "validation_end")
    if val_stop < train_stop:
        raise ValueError(f"validation_end {validation_end!r} lies before train_end {train_end!r}")
    if train_stop == 0:
        raise ValueError(
            f"no training rows before train_end {train_end!r}: the first complete row is {index[0]}"
        )
    X = aligned.features  # (T, N, F)
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        row, asset, col = bad[0]
        raise ValueError(
            f"feature {names[col]!r} of {assets[asset]!r} is NaN or infinite at {index[row]} after the "
            "warm-up; validate the bars (a zero or missing price or volume) before building the portfolio"
        )
    can_trade = aligned.tradable
    scaler = FeatureScaler(clip=clip).fit(X[:train_stop][can_trade[:train_stop]])
    scaler.feature_names = names
    return PortfolioData(
        assets=assets,
        index=index,
        open=aligned.open,
        close=aligned.close,
        tradable=can_trade,
        features=scaler.transform(X),
        feature_names=tuple(names),
        train=slice(0, train_stop),
        validation=slice(train_stop, val_stop),
        test=slice(val_stop, n),
        scaler=scaler,
        feature_set=f"{feature_set.name}@{feature_set.version}",
        timeframe=(infer_timeframe(index) if timeframe is None else Timeframe.parse(timeframe)).value,
    )
