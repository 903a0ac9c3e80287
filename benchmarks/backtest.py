"""Backtest benchmark: :func:`backtest.run` against vectorbt and backtesting.py.

Run ``python -m benchmarks.backtest``; options: ``--rows N`` (default 1,000,000 bars),
``--repeats K`` (default 5) and ``--bt-rows M`` (default 0: all ``N``). Prints one JSON object.

Workload: a long/flat MA(20)/MA(50) crossover on ``N`` one-minute bars of a synthetic geometric
random walk with valid OHLC (``low <= open, close <= high``) on a tz-aware UTC index (FKS's bar
contract), 1 bp commission and 1 bp slippage, filled at the signal bar's close (the convention
the three engines share). The signals are computed once with pandas ``rolling`` and handed to
every engine, so only the backtests are timed.

* ``ours_s``: best of K full :func:`backtest.run` calls on the canonical bars (validation,
  simulation, round trips, equity/returns/positions Series, the 15 metrics), after one warm-up
  call whose time (numba compilation or loading the on-disk cache) is ``ours_first_call_s``.
  ``periods_per_year`` is passed, so no time goes into inferring it.
* ``vectorbt``: the main anchor, best of K of ``Portfolio.from_signals`` alone (its simulation
  and order records) on plain numpy arrays (float64 close, bool entries and exits), the form it
  simulates at full speed; its first call is reported apart as ``first_call_s`` (numba
  compilation). This is the strict comparison: our timed call also builds the equity, returns
  and positions Series, the round-trip frame and the metrics. ``outputs_s`` is, once, what
  vectorbt then needs for the same outputs (``value()``, ``returns()``,
  ``trades.records_readable``, ``sharpe_ratio()``, ``max_drawdown()``).
* ``vectorbt_tz_aware``: the same call on pandas Series indexed by the bars' tz-aware
  DatetimeIndex, as a user holding FKS bars would pass them; vectorbt then spends nearly all of
  its time converting the timestamps, so it is a second line, not the anchor.
* ``backtesting``: anchor, backtesting.py's ``Backtest.run`` (``trade_on_close=True``,
  ``commission=2e-4``, a trivial ``next()`` reading the same precomputed signal), run once. By
  default on all ``N`` bars; with ``--bt-rows M`` on the first ``M`` bars only, scaled to ``N``
  as ``seconds * N / M`` (its event loop is linear in bars).

Targets: ``ours_s / vectorbt.s <= 1`` with the same trades, and ``backtesting.s / ours_s >= 30``.
``same_trades_as_vectorbt`` checks the entry and exit bars of every round trip;
``final_return_rel_diff`` compares the final returns (both engines pay the costs out of the
cash; vectorbt moves the fill price by the slippage where FKS charges it, a difference of about
``4e-12`` per round trip at 1 bp each). ``peak_rss_mb`` is the process's peak resident memory
(``ru_maxrss``) after each stage. backtesting.py's progress bar goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import best_seconds as _best
from benchmarks._common import peak_rss_mb as _peak_rss_mb

VECTORBT_TARGET = 1.0
BACKTESTING_TARGET = 30.0
FAST, SLOW = 20, 50
MINUTES_PER_YEAR = 365.25 * 24 * 60


def make_bars(rows: int, seed: int = 7) -> pd.DataFrame:
    """``rows`` one-minute canonical bars of a geometric random walk with valid OHLC."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, rows)))
    open_ = np.empty(rows)
    open_[0] = 100.0
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 2e-4, rows - 1))
    wick = np.abs(rng.normal(0.0, 5e-4, (2, rows)))
    index = pd.date_range("2020-01-01", periods=rows, freq="min", tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1.0 + wick[0]),
            "low": np.minimum(open_, close) * (1.0 - wick[1]),
            "close": close,
            "volume": rng.uniform(1.0, 100.0, rows),
        },
        index=index,
    )


def signals(bars: pd.DataFrame) -> pd.Series:
    """Long (1.0) where SMA(20) of the close is above SMA(50), else flat (0.0)."""
    close = bars["close"]
    return (close.rolling(FAST).mean() > close.rolling(SLOW).mean()).astype(float).rename("BENCH")


def ours(bars: pd.DataFrame, pos: pd.Series) -> Any:
    """The full FKS backtest."""
    from backtest import Costs, run

    return run(bars, pos, Costs(1.0, 1.0), execution="close", periods_per_year=MINUTES_PER_YEAR)


def vectorbt_sim(close: Any, entries: Any, exits: Any) -> Any:
    """vectorbt's simulation alone, on whatever form of the inputs it is given."""
    import vectorbt as vbt

    return vbt.Portfolio.from_signals(
        close, entries, exits, fees=1e-4, slippage=1e-4, init_cash=1.0, freq="1min"
    )


def vectorbt_full(close: Any, entries: Any, exits: Any) -> Any:
    """vectorbt's simulation plus what it needs for the outputs :func:`backtest.run` returns."""
    pf = vectorbt_sim(close, entries, exits)
    return pf, pf.value(), pf.returns(), pf.trades.records_readable, pf.sharpe_ratio(), pf.max_drawdown()


def backtesting_seconds(bars: pd.DataFrame, pos: pd.Series) -> tuple[float, int]:
    """Wall time and trade count of backtesting.py on ``bars`` (run once)."""
    from backtesting import Backtest, Strategy

    target = pos.to_numpy()

    class Crossover(Strategy):
        def init(self) -> None:
            pass

        def next(self) -> None:
            want = target[len(self.data) - 1] > 0
            if want and not self.position:
                self.buy()
            elif not want and self.position:
                self.position.close()

    frame = bars.rename(columns=str.capitalize).tz_localize(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(frame, Crossover, cash=1_000_000.0, commission=2e-4, trade_on_close=True)
        start = time.perf_counter()
        stats = bt.run()
        seconds = time.perf_counter() - start
    return seconds, int(stats["# Trades"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print one JSON object (also returned)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bt-rows", type=int, default=0, help="0: all rows")
    args = parser.parse_args(argv)

    bars = make_bars(args.rows)
    pos = signals(bars)
    prev = pos.shift(1, fill_value=0.0)
    entries, exits = (pos > 0) & (prev == 0), (pos == 0) & (prev > 0)
    arrays = (bars["close"].to_numpy(), entries.to_numpy(), exits.to_numpy())
    out: dict[str, Any] = {"rows": args.rows, "repeats": args.repeats, "peak_rss_mb": {}}
    out["peak_rss_mb"]["data"] = _peak_rss_mb()

    start = time.perf_counter()
    result = ours(bars, pos)
    out["ours_first_call_s"] = round(time.perf_counter() - start, 4)
    out["ours_s"] = round(_best(lambda: ours(bars, pos), args.repeats), 4)
    out["peak_rss_mb"]["ours"] = _peak_rss_mb()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        vectorbt_full(*arrays)
        first = time.perf_counter() - start
        pf = vectorbt_sim(*arrays)
        out["vectorbt"] = {
            "input": "numpy arrays: float64 close, bool entries and exits",
            "first_call_s": round(first, 4),
            "s": round(_best(lambda: vectorbt_sim(*arrays), args.repeats), 4),
            "outputs_s": round(_best(lambda: vectorbt_full(*arrays), 1), 4),
        }
        out["vectorbt_tz_aware"] = {
            "input": "pandas Series on the tz-aware DatetimeIndex of the bars",
            "s": round(_best(lambda: vectorbt_sim(bars["close"], entries, exits), args.repeats), 4),
        }
        theirs = pf.trades.records
        vbt_total = float(pf.total_return())
        out["peak_rss_mb"]["vectorbt"] = _peak_rss_mb()

    trades = result.trades
    index = bars.index
    same = len(trades) == len(theirs) and bool(
        np.array_equal(index.get_indexer(trades["entry_time"]), theirs["entry_idx"])
        and np.array_equal(index.get_indexer(trades["exit_time"]), theirs["exit_idx"])
    )
    ours_total = result.metrics["total_return"]
    out["trades"] = len(trades)
    out["same_trades_as_vectorbt"] = same
    out["final_return_rel_diff"] = abs(ours_total - vbt_total) / max(abs(vbt_total), 1e-12)

    bt_rows = min(args.bt_rows, args.rows) if args.bt_rows > 0 else args.rows
    bt_seconds, bt_trades = backtesting_seconds(bars.iloc[:bt_rows], pos.iloc[:bt_rows])
    ours_slice = result if bt_rows == args.rows else ours(bars.iloc[:bt_rows], pos.iloc[:bt_rows])
    out["backtesting"] = {
        "rows": bt_rows,
        "measured_s": round(bt_seconds, 3),
        "s": round(bt_seconds * args.rows / bt_rows, 2),
        "trades": bt_trades,
        "ours_trades_on_its_rows": len(ours_slice.trades),
    }
    out["peak_rss_mb"]["backtesting"] = _peak_rss_mb()

    out["ratios"] = {
        "vectorbt": round(out["ours_s"] / out["vectorbt"]["s"], 3),
        "vectorbt_tz_aware": round(out["ours_s"] / out["vectorbt_tz_aware"]["s"], 4),
        "vectorbt_outputs": round(out["ours_s"] / out["vectorbt"]["outputs_s"], 4),
        "backtesting_speedup": round(out["backtesting"]["s"] / out["ours_s"], 1),
    }
    out["targets"] = {"vectorbt_max": VECTORBT_TARGET, "backtesting_speedup_min": BACKTESTING_TARGET}
    out["targets_met"] = bool(
        out["ratios"]["vectorbt"] <= VECTORBT_TARGET
        and out["ratios"]["backtesting_speedup"] >= BACKTESTING_TARGET
        and same
    )
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
