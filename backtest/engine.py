"""Vectorised backtests of target-weight strategies: :func:`run`, :class:`Costs`, :class:`BacktestResult`.

The model, precisely:

* **Signals.** ``positions[t]`` is the target exposure (fraction of equity, ``-1`` full short to
  ``+1`` full long, ``0`` flat) decided at the close of bar ``t`` with information up to that close.
  Several assets form one portfolio whose absolute weights per bar sum to at most 1; what is not
  invested is cash earning 0.
* **Execution.** ``execution="next_open"`` (default) fills the target of bar ``t`` at the open of
  bar ``t + 1``, so nothing uses a price the strategy could not have traded at (no look-ahead); the
  target of the last bar is never filled. ``execution="close"`` fills it at the close of bar ``t``
  itself (the classic vectorised convention, vectorbt's default).
* **Rebalancing.** An asset is traded only on the bars where its target *changes* (exact float
  comparison with its previous target). ``E = cash + sum(units * price)`` is the account marked
  at the execution prices just before the fills, and ``X`` what remains of it once the costs of
  those fills are paid. Each asset whose target changed is traded to ``units = w * X / price``:
  its position is ``w`` of the account *after* costs, so position values plus costs fit within
  the account and costs come out of the book, never from borrowed cash (a target of 1 from flat
  buys ``X = (E - min_fee) / (1 + rate)`` worth and leaves no cash, as vectorbt's
  ``from_signals`` sizes ``cash / (price * (1 + fees))`` when it buys with all its cash). ``X``
  solves ``X = E - sum(rate * |w * X - units * price| + min_fee)`` over those fills, exactly
  (Newton steps on a piecewise-linear equation). An asset whose target is unchanged keeps its
  units and its weight drifts with its price (no churn from drift; drift can make the gross
  exposure exceed 1 for a while).
* **Costs.** Every fill pays ``rate * |traded notional|`` with ``rate = (commission_bps +
  slippage_bps) / 1e4``, plus ``min_fee`` (account currency) whenever its traded notional is
  nonzero, entry and exit alike, deducted from cash. Fills are at the raw open/close: slippage is
  charged as a cost, not as a worse fill price (vectorbt's worse fill price gives the same
  round-trip result up to ``2 * commission * slippage * (commission + slippage)`` per trade). If
  the account value, or what would remain of it after the costs of the fills, is ``<= 0`` at an
  execution, everything is closed and nothing trades again.
* **Equity** is marked at every bar's close: ``equity[t] = cash + sum(units * close[t])``. With
  next-open execution ``equity[0] == initial_capital``; with close execution a fill at bar 0
  already pays its costs in ``equity[0]``. ``returns[t] = equity[t] / equity[t - 1] - 1`` with
  ``equity[-1] = initial_capital``.
* **Round trips** (:attr:`BacktestResult.trades`): a trade opens when an asset's units leave 0 and
  ends when they return to 0 or change sign (a flip closes one trade and opens the next at the
  same fill, its fee split in proportion to units). Re-sizing on the same side stays in the trade;
  ``entry_price`` / ``exit_price`` are then unit-weighted averages. ``return`` is the trade's net
  P&L (after its entry and exit costs) divided by its entry notional. A trade still open after
  the last bar is valued at the last close, with ``exit_time`` the last bar and ``open`` true.

The simulation itself is :func:`market.rebalance.advance_nb`, which :mod:`envs` steps its
episodes with too, so an environment episode and the backtest of its targets agree.

Annualisation (``periods_per_year`` of :func:`run`): the argument if given; else
``market.calendars.get_calendar(calendar).bars_per_year(timeframe)`` when both are given; else
inferred from the median bar spacing: 20 hours to 4 days -> 252 (daily), 5-8 days -> 52,
25-35 days -> 12, 85-95 days -> 4, anything else (intraday) -> the observed number of bars per
365.25 days of the sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import pandas as pd

from backtest import _kernels as _k
from backtest.metrics import performance_metrics
from market.rebalance import Costs, advance_nb

Execution = Literal["next_open", "close"]
_EXECUTIONS: tuple[str, ...] = ("next_open", "close")
_WEIGHT_TOL = 1e-9
TRADE_COLUMNS: tuple[str, ...] = (
    "asset",
    "side",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "return",
    "costs",
    "pnl",
    "open",
)


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """What :func:`run` returns.

    Attributes:
        equity: account value at each bar's close (account currency), starting from
            ``initial_capital``; one value per bar.
        returns: per-bar net returns ``equity[t] / equity[t - 1] - 1`` (first against the
            initial capital).
        positions: the target weight in force during each bar, after execution (a Series for a
            Series of targets, else a DataFrame with one column per asset). With next-open
            execution it is the target shifted by one bar.
        trades: one row per round trip, columns ``asset, side ('long'/'short'), entry_time,
            exit_time, entry_price, exit_price, return`` (net of the trade's costs, over its
            entry notional), ``costs`` and ``pnl`` (net, account currency) and ``open`` (still
            open after the last bar, valued at the last close).
        metrics: :func:`backtest.metrics.performance_metrics` of ``returns``.
        costs_paid: total costs paid (account currency).
        periods_per_year: bars per year used for the annualised metrics.
        initial_capital: the starting account value.
    """

    equity: pd.Series
    returns: pd.Series
    positions: pd.Series | pd.DataFrame
    trades: pd.DataFrame
    metrics: dict[str, float] = field(repr=False)
    costs_paid: float
    periods_per_year: float
    initial_capital: float


def _readonly(values: np.ndarray) -> np.ndarray:
    """``values`` as a read-only C-contiguous float64 array (a view when it already is one).

    The kernels always receive read-only arrays, so numba compiles (and caches) one version of
    each whether the data came straight from a frame (pandas hands out read-only views) or was
    assembled here.
    """
    out = np.ascontiguousarray(values, dtype=np.float64)
    if out.flags.writeable:
        out = out.view()
        out.flags.writeable = False
    return out


def _float_column(column: pd.Series) -> np.ndarray:
    """A numeric column as float64 values, without a copy when it already is float64."""
    if column.dtype == np.float64:
        return column.to_numpy()
    if column.dtype == bool:
        return column.to_numpy(dtype=np.float64)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _as_matrix(columns: list[np.ndarray]) -> np.ndarray:
    """One column per asset as a read-only ``(n_bars, n_assets)`` matrix (a view for one asset)."""
    if len(columns) == 1:
        return _readonly(columns[0]).reshape(-1, 1)
    return _readonly(np.column_stack(columns))


def _price_matrix(
    frames: Mapping[str, pd.DataFrame], assets: list[str], column: str
) -> tuple[np.ndarray, pd.Index]:
    index = frames[assets[0]].index
    columns = []
    for asset in assets:
        frame = frames[asset]
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(
                f"prices for {asset!r} are a {type(frame).__name__}, not a DataFrame: pass canonical "
                "bars (providers.csv.parse_bars_csv(path).bars or market.bars.canonical_bars(frame))"
            )
        if column not in frame.columns:
            raise ValueError(
                f"prices for {asset!r} lack column {column!r} (have {', '.join(map(str, frame.columns))}): "
                "pass canonical bars with lower-case open/high/low/close/volume "
                "(market.bars.canonical_bars(frame))"
            )
        if not frame.index.equals(index):
            raise ValueError(
                f"prices for {asset!r} have a different index from {assets[0]!r}: every asset of a "
                "panel needs the same bars; align them first, e.g. with an inner join on ts"
            )
        values = _readonly(_float_column(frame[column]))
        first = _k.first_bad_price_nb(values)
        if first >= 0:
            bad = int(np.count_nonzero(~(np.isfinite(values) & (values > 0))))
            raise ValueError(
                f"prices for {asset!r} have {bad} missing, infinite or non-positive "
                f"{column!r} value(s), first at {index[first]}: drop or fill those bars before the backtest"
            )
        columns.append(values)
    return _as_matrix(columns), index


def _check_index(index: pd.Index) -> None:
    if len(index) < 2:
        raise ValueError(f"a backtest needs at least 2 bars, got {len(index)}: pass a longer price history")
    if isinstance(index, pd.DatetimeIndex):  # int64 stamps, no conversion and no hash table
        ordered = _k.first_unsorted_nb(index.asi8) < 0
    else:
        ordered = index.is_unique and index.is_monotonic_increasing
    if not ordered:
        raise ValueError(
            "the prices index must be sorted and unique: use frame.sort_index() and drop duplicated "
            "timestamps (market.bars.canonical_bars does both)"
        )


def _weights(positions: pd.Series | pd.DataFrame, assets: list[str], index: pd.Index) -> np.ndarray:
    if not positions.index.equals(index):
        if len(positions.index) != len(index):
            detail = f"{len(positions.index)} position rows for {len(index)} price bars"
        else:
            diff = np.flatnonzero(np.asarray(positions.index != index))
            detail = f"first difference at row {int(diff[0]) if diff.size else 0}"
        raise ValueError(
            f"positions are not aligned with prices ({detail}): give one target per price bar, e.g. "
            "positions.reindex(prices.index).fillna(0.0)"
        )
    cols = (
        [positions.iloc[:, j] for j in range(positions.shape[1])]
        if isinstance(positions, pd.DataFrame)
        else [positions]
    )
    for j, col in enumerate(cols):
        if col.dtype != bool and not pd.api.types.is_numeric_dtype(col.dtype):
            raise ValueError(
                f"positions for {assets[j]!r} are not numeric ({col.dtype}): pass weights in [-1, 1]"
            )
    out = _as_matrix([_float_column(col) for col in cols])
    k = out.shape[1]
    nan_count, first_nan, first_big, first_over, needs_clip = _k.weight_problems_nb(out, _WEIGHT_TOL)
    if nan_count:
        row, colno = divmod(first_nan, k)
        raise ValueError(
            f"positions contain {nan_count} NaN value(s), first for {assets[colno]!r} at "
            f"{index[row]}: a target must be decided on every bar; use positions.fillna(0.0) for flat "
            "or .ffill() to keep the previous target"
        )
    if first_big >= 0:
        row, colno = divmod(first_big, k)
        raise ValueError(
            f"positions must lie in [-1, 1] (fractions of equity, no leverage); {assets[colno]!r} has "
            f"{out[row, colno]!r} at {index[row]}: rescale or use positions.clip(-1, 1)"
        )
    if first_over >= 0:
        raise ValueError(
            f"absolute portfolio weights must sum to at most 1 per bar; they sum to "
            f"{float(np.abs(out[first_over]).sum())!r} at {index[first_over]}: scale the rows, e.g. "
            "positions.div(positions.abs().sum(axis=1).clip(lower=1.0), axis=0)"
        )
    return _readonly(np.clip(out, -1.0, 1.0)) if needs_clip else out


def _resolve_assets(
    prices: pd.DataFrame | Mapping[str, pd.DataFrame], positions: pd.Series | pd.DataFrame
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    if isinstance(positions, pd.DataFrame):
        names = [str(c) for c in positions.columns]
        if len(set(names)) != len(names) or not names:
            raise ValueError("positions need one uniquely named column per asset")
    elif isinstance(positions, pd.Series):
        names = [str(positions.name) if positions.name is not None else "asset"]
    else:
        raise ValueError(
            f"positions must be a pandas Series (one asset) or DataFrame (one column per asset), "
            f"got {type(positions).__name__}"
        )
    if isinstance(prices, pd.DataFrame):
        if len(names) != 1:
            raise ValueError(
                f"one price frame but {len(names)} position columns: for a portfolio pass prices as "
                "a dict {asset: bars} whose keys are the position columns"
            )
        return {names[0]: prices}, names
    if not isinstance(prices, Mapping) or not prices:
        raise ValueError(
            "prices must be a canonical bar DataFrame (one asset) or a non-empty dict {asset: bars}"
        )
    frames = {str(k): v for k, v in prices.items()}
    if isinstance(positions, pd.Series):
        if len(frames) != 1:
            raise ValueError(
                f"a Series of positions for a panel of {len(frames)} assets: pass a DataFrame with one "
                f"column per asset ({', '.join(frames)})"
            )
        return frames, list(frames)
    if set(names) != set(frames):
        missing = sorted(set(frames) - set(names))
        extra = sorted(set(names) - set(frames))
        raise ValueError(
            f"position columns and price assets differ (no positions for {missing}, no prices for "
            f"{extra}): pass one position column per asset of the panel"
        )
    return frames, names


def _periods_per_year(
    index: pd.Index, periods_per_year: float | None, calendar: str | None, timeframe: str | None
) -> float:
    if periods_per_year is not None:
        if (
            isinstance(periods_per_year, bool)
            or not isinstance(periods_per_year, int | float)
            or not (math.isfinite(periods_per_year) and periods_per_year > 0)
        ):
            raise ValueError(f"periods_per_year must be a positive number, got {periods_per_year!r}")
        return float(periods_per_year)
    if (calendar is None) != (timeframe is None):
        raise ValueError(
            "pass calendar and timeframe together (e.g. calendar='XNYS', timeframe='1d'), or periods_per_year"
        )
    if calendar is not None and timeframe is not None:
        from market.calendars import get_calendar

        return float(get_calendar(calendar).bars_per_year(timeframe))
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(
            "cannot infer periods_per_year from a non-datetime index: pass periods_per_year, or "
            "calendar and timeframe"
        )
    steps = np.diff(index.as_unit("ns").asi8) / 1e9 / 86_400.0  # days
    spacing = float(np.median(steps))
    for lo, hi, ppy in ((20 / 24, 4.0, 252.0), (5.0, 8.0, 52.0), (25.0, 35.0, 12.0), (85.0, 95.0, 4.0)):
        if lo <= spacing <= hi:
            return ppy
    span = float(steps.sum())
    return (len(index) - 1) * 365.25 / span


def _simulate(
    open_: np.ndarray, close: np.ndarray, target: np.ndarray, at_close: bool, costs: Costs, capital: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Run the account over every bar (:func:`market.rebalance.advance_nb`).

    Returns ``(equity, returns, held, fills)``: equity at each bar's close and its simple
    returns (the first against ``capital``) ``(n,)``, the target weight in force during each
    bar ``(n, k)``, and the fills in execution order as ``(bar, asset, units after, price, fee)``
    arrays.
    """
    n, k = close.shape
    equity = np.empty(n)
    returns = np.empty(n)
    held = np.empty((n, k))
    cap = n * k  # at most one fill per asset and bar; pages never written are never touched
    where = np.empty((2, cap), dtype=np.int64)  # bar, asset
    what = np.empty((3, cap))  # units after, price, fee
    account = np.array([capital, capital, 0.0])  # cash, previous equity, dead
    state = np.zeros((3, k))  # units, target in force, last target executed
    fills = (where[0], where[1], what[0], what[1], what[2])
    m = advance_nb(
        open_, close, target, at_close, costs.rate, float(costs.min_fee), 0, n, 0,
        account, state[0], state[1], state[2], equity, returns, held, *fills, 0,
    )  # fmt: skip
    return equity, returns, held, tuple(f[:m] for f in fills)


def _trade_frame(ints: np.ndarray, floats: np.ndarray, assets: list[str], index: pd.Index) -> pd.DataFrame:
    count = ints.shape[0]
    if len(assets) > 1 and count:  # by entry time, then asset name
        rank = np.argsort(np.argsort(np.array(assets, dtype=object)))
        order = np.lexsort((rank[ints[:, 0]], ints[:, 2]))
        ints, floats = ints[order], floats[order]
    notional = floats[:, 4]
    frame = pd.DataFrame(
        {
            "asset": pd.Series(np.array(assets, dtype=object)[ints[:, 0]], dtype=object),
            "side": np.array(["short", "long"], dtype=object)[(ints[:, 1] > 0).astype(np.intp)],
            "entry_time": index[ints[:, 2]],
            "exit_time": index[ints[:, 3]],
            "entry_price": floats[:, 0],
            "exit_price": floats[:, 1],
            "return": np.divide(floats[:, 2], notional, out=np.zeros(count), where=notional > 0),
            "costs": floats[:, 3],
            "pnl": floats[:, 2],
            "open": ints[:, 4].astype(bool),
        },
        columns=list(TRADE_COLUMNS),
    )
    return frame


def run(
    prices: pd.DataFrame | Mapping[str, pd.DataFrame],
    positions: pd.Series | pd.DataFrame,
    costs: Costs = Costs(),  # frozen, so a shared default is safe
    execution: Execution = "next_open",
    initial_capital: float = 1.0,
    periods_per_year: float | None = None,
    calendar: str | None = None,
    timeframe: str | None = None,
) -> BacktestResult:
    """Backtest target weights on one asset or a portfolio; the module docstring is the manual.

    Args:
        prices: one asset's canonical bars (columns ``open`` and ``close`` are used), or a dict
            ``{asset: bars}`` whose frames share one index.
        positions: target exposure in ``[-1, 1]`` per bar, decided at the bar's close: a Series
            for one asset (its name becomes the asset name, ``"asset"`` if unnamed), or a
            DataFrame with one column per asset whose absolute weights sum to at most 1 per bar.
            Its index must equal the prices' index; booleans count as 1/0.
        costs: commission, slippage and minimum fee per fill (:class:`Costs`).
        execution: ``"next_open"`` (fill at the next bar's open) or ``"close"`` (fill at the
            signal bar's close).
        initial_capital: starting account value (account currency, > 0).
        periods_per_year: bars per year for annualised metrics; see the module docstring for
            what is used when it is ``None``.
        calendar: a :func:`market.calendars.get_calendar` name (``XNYS``, ``24/5``, ``24/7``),
            with ``timeframe`` (``1m``, ``1h``, ``1d``), to annualise by the calendar.
        timeframe: the bars' timeframe, with ``calendar``.

    Returns:
        A :class:`BacktestResult`.

    Raises:
        ValueError: for unknown ``execution``; prices that are not canonical bars (missing
            columns, NaN or non-positive prices, unsorted index, panel frames with different
            indexes, fewer than 2 bars); positions that are misaligned with the prices, NaN,
            outside ``[-1, 1]``, or whose absolute weights sum to more than 1; a bad
            ``initial_capital`` or ``periods_per_year``. Each message says how to fix it.
    """
    if execution not in _EXECUTIONS:
        raise ValueError(f"unknown execution {execution!r}: use 'next_open' (default) or 'close'")
    if not isinstance(costs, Costs):
        raise ValueError(f"costs must be a backtest.Costs, got {type(costs).__name__}")
    if (
        isinstance(initial_capital, bool)
        or not isinstance(initial_capital, int | float)
        or not (math.isfinite(initial_capital) and initial_capital > 0)
    ):
        raise ValueError(f"initial_capital must be a positive finite number, got {initial_capital!r}")
    frames, assets = _resolve_assets(prices, positions)
    close, index = _price_matrix(frames, assets, "close")
    _check_index(index)
    at_close = execution == "close"
    open_ = close if at_close else _price_matrix(frames, assets, "open")[0]
    target = _weights(positions, assets, index)
    ppy = _periods_per_year(index, periods_per_year, calendar, timeframe)
    capital = float(initial_capital)

    equity, rets, held, fills = _simulate(open_, close, target, at_close, costs, capital)
    fill_bar, fill_asset, fill_units, fill_price, fill_fee = fills
    ints, floats = _k.trades_nb(
        fill_bar, fill_asset, fill_units, fill_price, fill_fee, close[-1], len(index) - 1
    )
    trades = _trade_frame(ints, floats, assets, index)

    # copy=False: pandas 3 would otherwise copy every array it wraps
    if isinstance(positions, pd.Series):
        held_out: pd.Series | pd.DataFrame = pd.Series(
            held[:, 0], index=index, name=positions.name, copy=False
        )
    else:
        held_out = pd.DataFrame(held, index=index, columns=positions.columns, copy=False)
    metrics = performance_metrics(rets, positions=held, trades=trades, periods_per_year=ppy)
    return BacktestResult(
        equity=pd.Series(equity, index=index, name="equity", copy=False),
        returns=pd.Series(rets, index=index, name="returns", copy=False),
        positions=cast(pd.Series | pd.DataFrame, held_out),
        trades=trades,
        metrics=metrics,
        costs_paid=float(fill_fee.sum()),
        periods_per_year=ppy,
        initial_capital=capital,
    )
