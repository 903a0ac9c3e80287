"""Parity of :func:`backtest.run` with vectorbt ``Portfolio.from_signals`` (the dev anchor).

Long-only MA(20)/MA(50) crossover on the shipped S&P 500 and GOOGL daily bars, filled at the
signal bar's close on both sides, with the same costs: commission 1 bp as vectorbt ``fees`` and
slippage 1 bp as vectorbt ``slippage``. vectorbt applies slippage to the fill price and sizes a
buy as ``cash / (price * (1 + fees))``; FKS fills at the raw close, charges both as a cost and
sizes at the full equity, so the final returns agree to a few 1e-4 relative, not exactly.
vectorbt compiles for ~15 s on its first call: both assets run in one module-scoped fixture.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from backtest import Costs, run
from providers.csv import parse_bars_csv

SAMPLES = {"spx": "data/samples/sp500_daily.csv", "googl": "data/samples/googl_daily.csv"}
COSTS = Costs(commission_bps=1.0, slippage_bps=1.0)


@pytest.fixture(scope="module")
def both() -> dict[str, tuple[Any, Any]]:
    vbt = pytest.importorskip("vectorbt")
    out: dict[str, tuple[Any, Any]] = {}
    for name, path in SAMPLES.items():
        bars = parse_bars_csv(path).bars
        close = bars["close"]
        pos = (close.rolling(20).mean() > close.rolling(50).mean()).astype(float).rename(name)
        prev = pos.shift(1, fill_value=0.0)
        pf = vbt.Portfolio.from_signals(
            close,
            entries=(pos > 0) & (prev == 0),
            exits=(pos == 0) & (prev > 0),
            fees=COSTS.commission_bps / 1e4,
            slippage=COSTS.slippage_bps / 1e4,
            init_cash=1.0,
            freq="1D",
        )
        out[name] = (run(bars, pos, COSTS, execution="close"), pf)
    return out


@pytest.mark.parametrize("name", list(SAMPLES))
def test_same_trades_as_vectorbt(both: dict[str, tuple[Any, Any]], name: str) -> None:
    ours, pf = both[name]
    theirs = pf.trades.records_readable
    assert len(ours.trades) == len(theirs) > 10
    pd.testing.assert_index_equal(
        pd.DatetimeIndex(ours.trades["entry_time"]),
        pd.DatetimeIndex(theirs["Entry Timestamp"]),
        check_names=False,
    )
    pd.testing.assert_index_equal(
        pd.DatetimeIndex(ours.trades["exit_time"]),
        pd.DatetimeIndex(theirs["Exit Timestamp"]),
        check_names=False,
    )
    assert list(ours.trades["open"]) == list(theirs["Status"] == "Open")


@pytest.mark.parametrize("name", list(SAMPLES))
def test_same_final_return_as_vectorbt(both: dict[str, tuple[Any, Any]], name: str) -> None:
    ours, pf = both[name]
    assert ours.metrics["total_return"] == pytest.approx(float(pf.total_return()), rel=1e-3)
    assert ours.equity.iloc[-1] == pytest.approx(float(pf.value().iloc[-1]), rel=1e-3)
    assert ours.metrics["max_drawdown"] == pytest.approx(float(pf.max_drawdown()), rel=1e-3)
