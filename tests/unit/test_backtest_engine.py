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
    # r = (10 + 10) / 1e4 = 0.002. Target 1 decided at close 0 -> buy at open 1 (102) with all the
    #   cash, costs included: X = 1 / 1.002 = 0.998003992015968 is bought (units X / 102) and
    #   its fee 0.002 * X = 0.001996007984032 takes the rest: cash 0, never negative.
    # bar 1: equity = 105/102 * X = 1.027357050604673
    # bar 2: equity = 110/102 * X = 1.076278814919181 (target 1 unchanged: no trade)
    # Target 0 decided at close 2 -> sell at open 3 (108): notional 108/102 * X =
    #   1.056710109193378, fee 0.002 * that, cash = 0.998 * 108/102 * X = 1.054596688974991
    #   = equity of bars 3 and 4.
    # Trade: costs 0.002 * X * (1 + 108/102) = 0.004109428202419; pnl = equity - 1 =
    #   0.054596688974991; return = pnl / X (entry notional) = 0.998 * 108/102 - 1.002 =
    #   0.054705882352941.
    res = run(A, _pos([1, 1, 0, 0, 0]), Costs(commission_bps=10, slippage_bps=10))
    assert isinstance(res, BacktestResult)
    x = 1 / 1.002
    eq = [1.0, 105 / 102 * x, 110 / 102 * x, 0.998 * 108 / 102 * x, 0.998 * 108 / 102 * x]
    _close(eq, [1.0, 1.027357050604673, 1.076278814919181, 1.054596688974991, 1.054596688974991])
    _close(res.equity, eq)
    _close(res.returns, [0.0, eq[1] - 1, eq[2] / eq[1] - 1, eq[3] / eq[2] - 1, 0.0])
    _close(res.positions, [0, 1, 1, 0, 0])
    assert res.costs_paid == pytest.approx(0.004109428202419, abs=1e-12)
    (trade,) = res.trades.itertuples(index=False)
    assert (trade.asset, trade.side, trade.open) == ("A", "long", False)
    assert (trade.entry_time, trade.exit_time) == (IDX[1], IDX[3])
    assert (trade.entry_price, trade.exit_price) == (102.0, 108.0)
    assert trade.costs == pytest.approx(0.004109428202419, abs=1e-12)
    assert trade.pnl == pytest.approx(0.054596688974991, abs=1e-12)
    assert res.trades["return"].iloc[0] == pytest.approx(0.054705882352941, abs=1e-12)
    assert res.metrics["trades"] == 1.0
    assert res.metrics["total_return"] == pytest.approx(0.054596688974991, abs=1e-12)
    assert res.metrics["exposure"] == pytest.approx(2 / 5)


def test_long_round_trip_close_execution() -> None:
    # Same targets, filled at the same bar's close. Buy at close 0 (100): X = 1 / 1.002 =
    #   0.998003992015968 bought, fee 0.002 * X, cash 0: equity 0 = X, return 0 = X - 1 =
    #   -0.001996007984032. bar 1: 1.05 * X = 1.047904191616766.
    # Sell at close 2 (110): notional 1.1 * X, cash = 0.998 * 1.1 * X = 1.095608782435130.
    # Trade: costs 0.002 * 2.1 * X = 0.004191616766467, pnl 0.095608782435130,
    #   return = pnl / X = 0.998 * 1.1 - 1.002 = 0.0958.
    res = run(A, _pos([1, 1, 0, 0, 0]), Costs(10, 10), execution="close")
    _close(
        res.equity,
        [0.998003992015968, 1.047904191616766, 1.095608782435130, 1.095608782435130, 1.095608782435130],
    )
    _close(res.returns.iloc[0], -0.001996007984032)
    _close(res.positions, [1, 1, 0, 0, 0])
    (trade,) = res.trades.itertuples(index=False)
    assert (trade.entry_time, trade.exit_time, trade.entry_price, trade.exit_price) == (
        IDX[0],
        IDX[2],
        100.0,
        110.0,
    )
    _close(
        [trade.costs, trade.pnl, res.trades["return"].iloc[0]], [0.004191616766467, 0.095608782435130, 0.0958]
    )


def test_short_round_trip() -> None:
    # Short 1 at open 1 (102): the short notional plus its fee fit within the account, X = 1 / 1.002
    #   sold short (units -X/102), cash = 1 + X - 0.002 * X = 1.996007984031936.
    # bar 1: cash - 105/102 * X = 0.968650933427263; bar 2: cash - 110/102 * X = 0.919729169112755.
    # Cover at open 3 (108): pay 1.002 * 108/102 * X = 108/102 = 1.058823529411765 (notional and fee):
    #   cash = 0.937184454620171. Trade pnl = -0.062815545379829, return = pnl / X =
    #   -(108/102 - 1) - 0.002 * (1 + 108/102) = -0.062941176470588.
    res = run(A, _pos([-1, -1, 0, 0, 0]), Costs(10, 10))
    _close(res.equity, [1.0, 0.968650933427263, 0.919729169112755, 0.937184454620171, 0.937184454620171])
    (trade,) = res.trades.itertuples(index=False)
    assert trade.side == "short"
    _close([trade.pnl, res.trades["return"].iloc[0]], [-0.062815545379829, -0.062941176470588])
    _close(res.positions, [0, -1, -1, 0, 0])


def test_flat_periods_and_min_fee() -> None:
    # No proportional cost, min_fee 0.001 per fill. Flat on bars 0-1 (no fee while flat).
    # Target 1 at close 1 -> buy at open 2 (104) for X = 1 - 0.001 = 0.999 (the fee comes out of
    #   the account): units 0.999/104, cash 0.
    # bar 2: 110/104 * 0.999 = 1.056634615384615; bar 3: 99/104 * 0.999 = 0.950971153846154.
    # Target 0 at close 3 -> sell at open 4 (100): cash = 100/104 * 0.999 - 0.001 = 0.959576923076923.
    # Trade return = (0.959576923076923 - 1) / 0.999 = -0.040463540463540.
    res = run(A, _pos([0, 1, 1, 0, 0]), Costs(0, 0, min_fee=0.001))
    _close(res.equity, [1.0, 1.0, 1.056634615384615, 0.950971153846154, 0.959576923076923])
    assert res.costs_paid == pytest.approx(0.002, abs=1e-15)
    _close(res.trades["return"], [-0.040463540463540])
    _close(res.trades["costs"], [0.002])


def test_min_fee_scales_with_capital() -> None:
    # min_fee is in account currency: on 1000 of capital 0.001 is 1e-6 of it. The buy spends
    # 1000 - 0.001 on the asset, the sale pays the second fee.
    res = run(A, _pos([0, 1, 1, 0, 0]), Costs(0, 0, min_fee=0.001), initial_capital=1000.0)
    _close(res.equity.iloc[-1], 999.999 * 100 / 104 - 0.001)


def test_portfolio_of_two_assets() -> None:
    # r = 0.001. Targets A = 0.5 (bars 0-2), B = 0.5 (bars 0-1); A's opens/closes as above,
    # B: open 50 50 40 45 45, close 50 40 45 45 45.
    # bar 1 (open): E = 1; both are bought to half of what remains after both fees:
    #   X = 1 / (1 + 0.001 * (0.5 + 0.5)) = 0.999000999000999, A units 0.5 X / 102, B units 0.01 X,
    #   fees 0.0005 X each, cash = 1 - 1.001 X = 0.
    #   equity = X * (0.5 * 105/102 + 0.01 * 40) = 0.913792090262679
    # bar 2: no change; equity = X * (0.5 * 110/102 + 0.45) = 0.988227458815694
    # bar 3 (open): only B changes, B sells 0.01 X * 45 = 0.45 X, fee 0.00045 X: cash = 0.44955 X;
    #   A keeps its units: equity = X * (0.44955 + 0.5 * 99/102) = 0.933910207439619
    # bar 4 (open): A sells 0.5 X * 100/102, fee 0.001 of it:
    #   cash = equity = X * (0.44955 + 0.999 * 0.5 * 100/102) = 0.938317564788153
    # A: pnl = X * (0.999 * 0.5 * 100/102 - 0.5005) = -0.010783334312746, return pnl / (0.5 X)
    #   = 0.999 * 100/102 - 1.001 = -0.021588235294118.
    # B: pnl = X * (0.999 * 0.45 - 1.001 * 0.5) = -0.050899100899101, return -0.1019.
    pos = pd.DataFrame({"A": [0.5, 0.5, 0.5, 0, 0], "B": [0.5, 0.5, 0, 0, 0]}, index=IDX)
    res = run({"A": A, "B": B}, pos, Costs(5, 5))
    _close(
        res.equity,
        [1.0, 0.913792090262679, 0.988227458815694, 0.933910207439619, 0.938317564788153],
    )
    assert list(res.positions.columns) == ["A", "B"]
    _close(res.positions["B"], [0, 0.5, 0.5, 0, 0])
    tr = res.trades
    assert list(tr["asset"]) == ["A", "B"]
    assert list(tr["exit_time"]) == [IDX[4], IDX[3]]
    _close(tr["pnl"], [-0.010783334312746, -0.050899100899101])
    _close(tr["return"], [-0.021588235294118, -0.1019])
    _close(res.costs_paid, (0.0005 + 0.0005 + 0.00045 + 0.0005 * 100 / 102) / 1.001)


def test_constant_target_trades_once_and_drifts() -> None:
    # Half the account after the fee: X = 1 / (1 + 0.002 * 0.5), fee 0.001 X, cash 1 - 0.501 X.
    res = run(A, _pos([0.5] * 5), Costs(10, 10))
    x = 1 / 1.001
    assert res.costs_paid == pytest.approx(0.001 * x)
    assert len(res.trades) == 1 and bool(res.trades["open"].iloc[0])
    # still open: valued at the last close (100) bought at 102
    _close(res.trades["exit_price"], [100.0])
    _close(res.equity.iloc[-1], 1 - 0.501 * x + 0.5 * x * 100 / 102)


def test_costs_that_would_eat_the_account_close_it() -> None:
    # A fee above the whole account leaves nothing to buy with: the account is closed at the
    # first execution (no fill, no debt) and never trades again.
    res = run(A, _pos([1, 1, 0, 1, 0]), Costs(0, 0, min_fee=2.0))
    _close(res.equity, [1.0] * 5)
    assert res.trades.empty and res.costs_paid == 0.0
    _close(res.positions, [0.0] * 5)


def test_value_after_costs_solves_its_equation() -> None:
    # Random portfolios rebalanced at once: X = E - sum(rate * |w X - V| + min_fee) over the
    # traded assets whose position changes, so targets are fractions of the account after costs.
    from market.rebalance import value_after_costs_nb

    rng = np.random.default_rng(3)
    for _ in range(500):
        k = int(rng.integers(1, 6))
        target = rng.uniform(-1, 1, k)
        target /= max(1.0, float(np.abs(target).sum()))
        held = rng.uniform(-0.5, 0.5, k) * rng.integers(0, 2, k)
        trading = rng.integers(0, 2, k).astype(bool)
        rate, min_fee = float(rng.choice([0.0, 2e-4, 0.01, 0.3])), float(rng.choice([0.0, 1e-3]))
        value = 1.0 + float(rng.uniform(0, 1))
        x = value_after_costs_nb(value, held, target, trading, rate, min_fee)
        gap = (target * x - held)[trading]
        costs = float((rate * np.abs(gap) + min_fee * (gap != 0)).sum())
        assert x == pytest.approx(value - costs, rel=1e-12, abs=1e-15)


def test_flip_splits_into_two_trades_that_add_up() -> None:
    res = run(A, _pos([1, -1, -1, 0, 0]), Costs(10, 10, min_fee=0.0003))
    tr = res.trades
    assert list(tr["side"]) == ["long", "short"]
    assert tr["exit_time"].iloc[0] == tr["entry_time"].iloc[1] == IDX[2]
    _close(tr["pnl"].sum(), res.equity.iloc[-1] - 1.0)
    _close(tr["costs"].sum(), res.costs_paid)


def test_spx_ma_crossover_regression() -> None:
    # Pinned after checking against vectorbt Portfolio.from_signals with the same signals shifted
    # one bar, price=open, fees=1e-4, slippage=1e-4: total return 0.3502028480 (ours 0.3502028477:
    # both size a buy as cash / (1 + costs); vectorbt moves the fill price by the slippage where
    # FKS charges it, a 1e-9 difference), Sharpe 0.19058988675 at 252 bars a year
    # (ours 0.19058988638), max drawdown -0.3673722239 (ours -0.3673722240), the same 58 trades
    # and dates (tests/unit/test_backtest_parity.py checks it at 1e-6).
    bars = parse_bars_csv("data/samples/sp500_daily.csv").bars
    close = bars["close"]
    pos = (close.rolling(20).mean() > close.rolling(50).mean()).astype(float).rename("SPX")
    res = run(bars, pos)  # defaults: Costs(1, 1), next-open execution, 252 bars a year inferred
    assert res.periods_per_year == 252.0
    m = res.metrics
    assert m["total_return"] == pytest.approx(0.3502028477129784, rel=1e-9)
    assert m["sharpe"] == pytest.approx(0.1905898863796426, rel=1e-9)
    assert m["max_drawdown"] == pytest.approx(-0.36737222397196523, rel=1e-9)
    assert m["trades"] == 58
    assert res.costs_paid == pytest.approx(0.021362882421682338, rel=1e-9)


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
        ({"prices": A.iloc[::-1]}, "sorted and unique"),
        ({"prices": A.iloc[[0, 1, 1, 2, 3]]}, "sorted and unique"),
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
