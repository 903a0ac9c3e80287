"""Parity of :func:`backtest.run` with vectorbt ``Portfolio.from_signals`` (the dev anchor).

A long-only MA(20)/MA(50) crossover on the shipped S&P 500 and GOOGL daily bars, on 30 years of
synthetic daily bars and on 1,000,000 synthetic minute bars, with the same costs: commission
as vectorbt ``fees`` and slippage as vectorbt ``slippage``. Both execution conventions:

* ``execution="close"``: vectorbt's default, the signal bar's close;
* ``execution="next_open"``: vectorbt gets the entries and exits shifted one bar and
  ``price=open``, so it fills a decision of bar ``t`` at the open of bar ``t + 1`` as FKS does.

Both engines spend the cash costs included when they buy (``cash / (price * (1 + fees))``), so
the books agree. vectorbt applies slippage to the fill price where FKS charges it as a cost
beside the commission; over a round trip the two differ by about
``2 * commission * slippage * (commission + slippage)`` of the book (4e-12 at 1 bp each), so
the final equities agree to 1e-6 relative even over 11,000 trades. With the slippage folded
into vectorbt's ``fees`` the cost models are the same and the books agree to rounding.
vectorbt compiles for ~15 s on its first call: every case runs in one module-scoped fixture.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from backtest import BacktestResult, Costs, run
from providers.csv import parse_bars_csv

SAMPLES = {"spx": "data/samples/sp500_daily.csv", "googl": "data/samples/googl_daily.csv"}
COSTS = Costs(commission_bps=1.0, slippage_bps=1.0)
EXECUTIONS = ("close", "next_open")
PARITY_RTOL = 1e-6


def _random_bars(rows: int, freq: str, seed: int) -> pd.DataFrame:
    """A geometric random walk with valid OHLC and a gap between each close and the next open."""
    rng = np.random.default_rng(seed)
    drift, vol = (3e-4, 1e-2) if freq == "B" else (0.0, 1e-3)  # ~8% a year on daily bars
    close = 100.0 * np.exp(np.cumsum(rng.normal(drift, vol, rows)))
    open_ = np.concatenate([[100.0], close[:-1] * np.exp(rng.normal(0.0, 2e-3, rows - 1))])
    index = pd.date_range("1995-01-02", periods=rows, freq=freq, tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": 1.0,
        },
        index=index,
    )


def _series() -> dict[str, pd.DataFrame]:
    out = {name: parse_bars_csv(path).bars for name, path in SAMPLES.items()}
    out["daily_30y"] = _random_bars(30 * 252, "B", seed=11)
    out["minute_1m"] = _random_bars(1_000_000, "min", seed=12)
    return out


def _crossover(bars: pd.DataFrame, name: str) -> pd.Series:
    close = bars["close"]
    return (close.rolling(20).mean() > close.rolling(50).mean()).astype(float).rename(name)


def _vectorbt(
    vbt: Any, bars: pd.DataFrame, pos: pd.Series, execution: str, fees: float, slippage: float
) -> Any:
    """vectorbt on plain numpy arrays, filling where FKS fills."""
    prev = pos.shift(1, fill_value=0.0)
    entries = ((pos > 0) & (prev == 0)).to_numpy()
    exits = ((pos == 0) & (prev > 0)).to_numpy()
    price = None
    if execution == "next_open":
        entries = np.concatenate([[False], entries[:-1]])
        exits = np.concatenate([[False], exits[:-1]])
        price = bars["open"].to_numpy()
    return vbt.Portfolio.from_signals(
        bars["close"].to_numpy(),
        entries=entries,
        exits=exits,
        price=price,
        fees=fees,
        slippage=slippage,
        init_cash=1.0,
    )


@pytest.fixture(scope="module")
def cases() -> dict[tuple[str, str], tuple[BacktestResult, Any, Any]]:
    """``(series, execution) -> (ours, vectorbt with its slippage, vectorbt with FKS's cost model)``."""
    vbt = pytest.importorskip("vectorbt")
    out = {}
    for name, bars in _series().items():
        pos = _crossover(bars, name)
        for execution in EXECUTIONS:
            ours = run(bars, pos, COSTS, execution=execution, periods_per_year=252.0)  # type: ignore[arg-type]
            commission, slippage = COSTS.commission_bps / 1e4, COSTS.slippage_bps / 1e4
            theirs = _vectorbt(vbt, bars, pos, execution, commission, slippage)
            same_model = _vectorbt(vbt, bars, pos, execution, COSTS.rate, 0.0)
            out[(name, execution)] = (ours, theirs, same_model)
    return out


CASES = [(name, execution) for name in [*SAMPLES, "daily_30y", "minute_1m"] for execution in EXECUTIONS]


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_same_trades_as_vectorbt(
    cases: dict[tuple[str, str], tuple[Any, Any, Any]], case: tuple[str, str]
) -> None:
    ours, pf, _ = cases[case]
    theirs = pf.trades.records
    assert len(ours.trades) == len(theirs) > 10
    index = ours.equity.index
    np.testing.assert_array_equal(index.get_indexer(ours.trades["entry_time"]), theirs["entry_idx"])
    np.testing.assert_array_equal(index.get_indexer(ours.trades["exit_time"]), theirs["exit_idx"])
    np.testing.assert_array_equal(ours.trades["open"].to_numpy(), theirs["status"] == 0)


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_same_final_equity_as_vectorbt(
    cases: dict[tuple[str, str], tuple[Any, Any, Any]], case: tuple[str, str]
) -> None:
    ours, pf, _ = cases[case]
    value = np.asarray(pf.value())
    assert ours.equity.iloc[-1] == pytest.approx(float(value[-1]), rel=PARITY_RTOL)
    assert ours.metrics["total_return"] == pytest.approx(float(pf.total_return()), rel=PARITY_RTOL)
    assert ours.metrics["max_drawdown"] == pytest.approx(float(pf.max_drawdown()), rel=PARITY_RTOL)
    np.testing.assert_allclose(ours.equity.to_numpy(), value, rtol=PARITY_RTOL)


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_same_cost_model_same_book(
    cases: dict[tuple[str, str], tuple[Any, Any, Any]], case: tuple[str, str]
) -> None:
    # Slippage folded into vectorbt's fees: the same sizing and the same costs, so the equity
    # curves agree to rounding and no cash is ever borrowed to pay a fee.
    ours, _, pf = cases[case]
    np.testing.assert_allclose(ours.equity.to_numpy(), np.asarray(pf.value()), rtol=1e-9)
    assert float(np.asarray(pf.cash()).min()) > -1e-12
