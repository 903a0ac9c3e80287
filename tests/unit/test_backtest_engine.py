"""Golden-number tests of :func:`backtest.run`: every expected value is computed by hand below.

The toy market (five bars) used by most cases::

    bar     0     1     2     3     4
    open  100   102   104   108   100
    close 100   105   110    99   100

Cost rate ``r = (commission_bps + slippage_bps) / 1e4``; capital 1.0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backtest import BacktestResult, Costs, run
from providers.csv import parse_bars_csv

IDX = pd.date_range("2024-01-01", periods=5, freq="D", tz="UTC", name="ts")


def _bars(opens: list[float], closes: list[float]) -> pd.DataFrame:
    o, c = np.array(opens, float), np.array(closes, float)
    return pd.DataFrame(
        {"open": o, "high": np.maximum(o, c), "low": np.minimum(o, c), "close": c, "volume": 1.0},
        index=IDX,
    )


A = _bars([100, 102, 104, 108, 100], [100, 105, 110, 99, 100])
B = _bars([50, 50, 40, 45, 45], [50, 40, 45, 45, 45])


def _pos(values: list[float], name: str = "A") -> pd.Series:
    return pd.Series(values, index=IDX, name=name, dtype=float)


def _close(actual: object, expected: list[float] | float) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=0, atol=1e-12)


def test_long_round_trip_next_open_with_costs() -> None:
    # r = (10 + 10) / 1e4 = 0.002. Target 1 decided at close 0 -> buy at open 1 (102):
    #   units = 1 / 102, fee = 0.002 * 1.0 = 0.002, cash = 1 - 1 - 0.002 = -0.002.
    # bar 1: equity = -0.002 + 105/102 = 1.027411764705882
    # bar 2: equity = -0.002 + 110/102 = 1.076431372549020 (target 1 unchanged: no trade)
    # Target 0 decided at close 2 -> sell at open 3 (108): notional 108/102 = 1.058823529411765,
    #   fee 0.002 * 1.058823529411765 = 0.002117647058824, cash = -0.002 + 1.058823529411765
    #   - 0.002117647058824 = 1.054705882352941 = equity of bars 3 and 4.
    # Trade: costs 0.002 + 0.002117647058824 = 0.004117647058824; pnl = 108/102 - 1 - costs
    #   = 0.054705882352941 = return (entry notional 1.0).
    res = run(A, _pos([1, 1, 0, 0, 0]), Costs(commission_bps=10, slippage_bps=10))
    assert isinstance(res, BacktestResult)
    eq = [1.0, -0.002 + 105 / 102, -0.002 + 110 / 102, 1.054705882352941, 1.054705882352941]
    _close(res.equity, eq)
    _close(res.returns, [0.0, eq[1] - 1, eq[2] / eq[1] - 1, eq[3] / eq[2] - 1, 0.0])
    _close(res.positions, [0, 1, 1, 0, 0])
    assert res.costs_paid == pytest.approx(0.004117647058824, abs=1e-12)
    (trade,) = res.trades.itertuples(index=False)
    assert (trade.asset, trade.side, trade.open) == ("A", "long", False)
    assert (trade.entry_time, trade.exit_time) == (IDX[1], IDX[3])
    assert (trade.entry_price, trade.exit_price) == (102.0, 108.0)
    assert trade.costs == pytest.approx(0.004117647058824, abs=1e-12)
    assert res.trades["return"].iloc[0] == pytest.approx(0.054705882352941, abs=1e-12)
    assert res.metrics["trades"] == 1.0
    assert res.metrics["total_return"] == pytest.approx(0.054705882352941, abs=1e-12)
    assert res.metrics["exposure"] == pytest.approx(2 / 5)


def test_long_round_trip_close_execution() -> None:
    # Same targets, filled at the same bar's close. Buy at close 0 (100): units 0.01, fee 0.002,
    #   cash -0.002, equity 0 = -0.002 + 1.0 = 0.998. bar 1: -0.002 + 1.05 = 1.048.
    # Sell at close 2 (110): notional 1.1, fee 0.0022, cash = -0.002 + 1.1 - 0.0022 = 1.0958.
    # Trade: costs 0.0042, pnl = 0.1 - 0.0042 = 0.0958.
    res = run(A, _pos([1, 1, 0, 0, 0]), Costs(10, 10), execution="close")
    _close(res.equity, [0.998, 1.048, 1.0958, 1.0958, 1.0958])
    _close(res.returns.iloc[0], -0.002)
    _close(res.positions, [1, 1, 0, 0, 0])
    (trade,) = res.trades.itertuples(index=False)
    assert (trade.entry_time, trade.exit_time, trade.entry_price, trade.exit_price) == (
        IDX[0],
        IDX[2],
        100.0,
        110.0,
    )
    _close([trade.costs, trade.pnl, res.trades["return"].iloc[0]], [0.0042, 0.0958, 0.0958])


def test_short_round_trip() -> None:
    # Short 1 at open 1 (102): units -1/102, cash = 1 + 1 - 0.002 = 1.998.
    # bar 1: 1.998 - 105/102 = 0.968588235294118; bar 2: 1.998 - 110/102 = 0.919568627450980.
    # Cover at open 3 (108): pay 108/102 = 1.058823529411765 + fee 0.002117647058824:
    #   cash = 0.937058823529412. Trade pnl = -(108/102 - 1) - 0.004117647058824 = -0.062941176470588.
    res = run(A, _pos([-1, -1, 0, 0, 0]), Costs(10, 10))
    _close(res.equity, [1.0, 0.968588235294118, 0.919568627450980, 0.937058823529412, 0.937058823529412])
    (trade,) = res.trades.itertuples(index=False)
    assert trade.side == "short"
    _close([trade.pnl, res.trades["return"].iloc[0]], [-0.062941176470588, -0.062941176470588])
    _close(res.positions, [0, -1, -1, 0, 0])


def test_flat_periods_and_min_fee() -> None:
    # No proportional cost, min_fee 0.001 per fill. Flat on bars 0-1 (no fee while flat).
    # Target 1 at close 1 -> buy at open 2 (104): units 1/104, cash = -0.001.
    # bar 2: 110/104 - 0.001 = 1.056692307692308; bar 3: 99/104 - 0.001 = 0.950923076923077.
    # Target 0 at close 3 -> sell at open 4 (100): cash = -0.001 + 100/104 - 0.001 = 0.959538461538462.
    # Trade return = 100/104 - 1 - 0.002 = -0.040461538461538.
    res = run(A, _pos([0, 1, 1, 0, 0]), Costs(0, 0, min_fee=0.001))
    _close(res.equity, [1.0, 1.0, 1.056692307692308, 0.950923076923077, 0.959538461538462])
    assert res.costs_paid == pytest.approx(0.002, abs=1e-15)
    _close(res.trades["return"], [-0.040461538461538])
    _close(res.trades["costs"], [0.002])


def test_min_fee_scales_with_capital() -> None:
    # min_fee is in account currency: on 1000 of capital 0.001 is 1e-6 of it; equity scales by 1000
    # except for the two fees.
    res = run(A, _pos([0, 1, 1, 0, 0]), Costs(0, 0, min_fee=0.001), initial_capital=1000.0)
    _close(res.equity.iloc[-1], 1000 * 100 / 104 - 0.002)


def test_portfolio_of_two_assets() -> None:
    # r = 0.001. Targets A = 0.5 (bars 0-2), B = 0.5 (bars 0-1); A's opens/closes as above,
    # B: open 50 50 40 45 45, close 50 40 45 45 45.
    # bar 1 (open): E = 1, A units 0.5/102, B units 0.01, fees 0.0005 + 0.0005, cash = -0.001.
    #   equity = -0.001 + 0.5*105/102 + 0.01*40 = 0.913705882352941
    # bar 2: no change; equity = -0.001 + 0.5*110/102 + 0.45 = 0.988215686274510
    # bar 3 (open): only B changes, B sells 0.01 * 45 = 0.45, fee 0.00045: cash = 0.44855;
    #   A keeps its units: equity = 0.44855 + 0.5*99/102 = 0.933844117647059
    # bar 4 (open): A sells 0.5*100/102 = 0.490196078431373, fee 0.000490196078431:
    #   cash = equity = 0.938255882352941
    # A: pnl = 0.490196078431373 - 0.5 - 0.000990196078431 = -0.010794117647059, return / 0.5.
    # B: pnl = 0.45 - 0.5 - 0.00095 = -0.05095, return -0.1019.
    pos = pd.DataFrame({"A": [0.5, 0.5, 0.5, 0, 0], "B": [0.5, 0.5, 0, 0, 0]}, index=IDX)
    res = run({"A": A, "B": B}, pos, Costs(5, 5))
    _close(
        res.equity,
        [1.0, 0.913705882352941, 0.988215686274510, 0.933844117647059, 0.938255882352941],
    )
    assert list(res.positions.columns) == ["A", "B"]
    _close(res.positions["B"], [0, 0.5, 0.5, 0, 0])
    tr = res.trades
    assert list(tr["asset"]) == ["A", "B"]
    assert list(tr["exit_time"]) == [IDX[4], IDX[3]]
    _close(tr["pnl"], [-0.010794117647059, -0.05095])
    _close(tr["return"], [-0.021588235294118, -0.1019])
    _close(res.costs_paid, 0.0005 + 0.0005 + 0.00045 + 0.000490196078431)


def test_constant_target_trades_once_and_drifts() -> None:
    res = run(A, _pos([0.5] * 5), Costs(10, 10))
    assert res.costs_paid == pytest.approx(0.002 * 0.5)
    assert len(res.trades) == 1 and bool(res.trades["open"].iloc[0])
    # still open: valued at the last close (100) bought at 102
    _close(res.trades["exit_price"], [100.0])
    _close(res.equity.iloc[-1], 1 - 0.001 + 0.5 * (100 / 102 - 1))


def test_flip_splits_into_two_trades_that_add_up() -> None:
    res = run(A, _pos([1, -1, -1, 0, 0]), Costs(10, 10, min_fee=0.0003))
    tr = res.trades
    assert list(tr["side"]) == ["long", "short"]
    assert tr["exit_time"].iloc[0] == tr["entry_time"].iloc[1] == IDX[2]
    _close(tr["pnl"].sum(), res.equity.iloc[-1] - 1.0)
    _close(tr["costs"].sum(), res.costs_paid)


def test_spx_ma_crossover_regression() -> None:
    # Pinned after checking against vectorbt Portfolio.from_signals with the same signals shifted
    # one bar, price=open, fees=1e-4, slippage=1e-4: total return 0.350203 (ours 0.350260, the
    # difference is vectorbt sizing by cash / (1 + fee)), Sharpe 0.190590 at 252 bars a year
    # (ours 0.190593), max drawdown -0.367372 (ours -0.367432), the same 58 trades and dates.
    bars = parse_bars_csv("data/samples/sp500_daily.csv").bars
    close = bars["close"]
    pos = (close.rolling(20).mean() > close.rolling(50).mean()).astype(float).rename("SPX")
    res = run(bars, pos)  # defaults: Costs(1, 1), next-open execution, 252 bars a year inferred
    assert res.periods_per_year == 252.0
    m = res.metrics
    assert m["total_return"] == pytest.approx(0.35025982123275035, rel=1e-9)
    assert m["sharpe"] == pytest.approx(0.19059347137505128, rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(-0.36743170779823264, rel=1e-9)
    assert m["trades"] == 58
    assert res.costs_paid == pytest.approx(0.02136662677631626, rel=1e-9)


def test_no_look_ahead_with_next_open() -> None:
    bars = parse_bars_csv("data/samples/sp500_daily.csv").bars.iloc[:800]

    def equity(frame: pd.DataFrame) -> pd.Series:
        close = frame["close"]
        pos = (close.rolling(20).mean() > close.rolling(50).mean()).astype(float)
        return run(frame, pos, Costs(3, 2, min_fee=1e-4)).equity

    base = equity(bars)
    rng = np.random.default_rng(5)
    for t in (60, 300, 799 - 1):
        shocked = bars.copy()
        factor = np.exp(rng.normal(0, 0.05, len(bars) - t - 1))
        for col in ("open", "high", "low", "close"):
            shocked.iloc[t + 1 :, shocked.columns.get_loc(col)] *= factor
        pd.testing.assert_series_equal(equity(shocked).iloc[: t + 1], base.iloc[: t + 1])


def test_annualisation_sources() -> None:
    pos = _pos([1, 1, 0, 0, 0])
    assert run(A, pos).periods_per_year == 252.0
    assert run(A, pos, periods_per_year=365).periods_per_year == 365.0
    assert run(A, pos, calendar="24/7", timeframe="1d").periods_per_year == 365.0
    assert run(A, pos, calendar="XNYS", timeframe="1d").periods_per_year == 252.0
    hourly = A.set_axis(pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC", name="ts"))
    assert run(hourly, pos.set_axis(hourly.index)).periods_per_year == pytest.approx(24 * 365.25)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positions": _pos([1, 1, 0, 0, 0]).iloc[:4]}, "not aligned with prices"),
        ({"positions": _pos([1, math.nan, 0, 0, 0])}, "fillna"),
        ({"positions": _pos([1, 1.5, 0, 0, 0])}, r"\[-1, 1\]"),
        ({"execution": "open"}, "unknown execution"),
        ({"prices": A.drop(columns="open")}, "lack column 'open'"),
        ({"prices": A.iloc[:1], "positions": _pos([1, 1, 0, 0, 0]).iloc[:1]}, "at least 2 bars"),
        ({"initial_capital": 0.0}, "initial_capital"),
        ({"periods_per_year": -1.0}, "periods_per_year"),
        ({"calendar": "XNYS"}, "calendar and timeframe together"),
        ({"prices": A.assign(close=A["close"].where(A.index != IDX[2]))}, "missing, infinite or non-pos"),
    ],
)
def test_bad_input_says_how_to_fix(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"prices": A, "positions": _pos([1, 1, 0, 0, 0])} | kwargs
    with pytest.raises(ValueError, match=message):
        run(**args)  # type: ignore[arg-type]


def test_bad_portfolio_input() -> None:
    over = pd.DataFrame({"A": [0.6] * 5, "B": [-0.6] * 5}, index=IDX)
    with pytest.raises(ValueError, match="sum to at most 1"):
        run({"A": A, "B": B}, over)
    with pytest.raises(ValueError, match="no prices for"):
        run({"A": A, "B": B}, over.rename(columns={"B": "C"}) * 0)
    with pytest.raises(ValueError, match="different index"):
        run({"A": A, "B": B.shift(1, freq="D")}, over * 0)
    with pytest.raises(ValueError, match="dict"):
        run(A, over * 0)


@pytest.mark.parametrize("kwargs", [{"commission_bps": -1.0}, {"slippage_bps": math.nan}, {"min_fee": -0.1}])
def test_costs_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Costs"):
        Costs(**kwargs)
