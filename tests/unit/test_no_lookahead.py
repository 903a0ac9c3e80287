"""No look-ahead: features built on bars up to a cut equal the full build before the cut, and
the backtest fills a decision taken at a bar's close only at the next bar's open."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest import Costs, run
from features import build_features, get_feature_set
from providers.csv import parse_bars_csv

SAMPLES = ["sp500_daily", "googl_daily", "eurusd_hourly"]
CUTS_PER_SAMPLE = 8


@pytest.fixture(scope="module")
def full_builds() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    fs = get_feature_set("default")
    out = {}
    for name in SAMPLES:
        bars = parse_bars_csv(f"data/samples/{name}.csv").bars
        out[name] = (bars, build_features(bars, fs))
    return out


def _cuts(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return sorted({1, 2, 34, *rng.integers(3, n, size=CUTS_PER_SAMPLE).tolist()})


@pytest.mark.parametrize("sample", SAMPLES)
def test_prefix_build_equals_full_build(
    full_builds: dict[str, tuple[pd.DataFrame, pd.DataFrame]], sample: str
) -> None:
    fs = get_feature_set("default")
    bars, full = full_builds[sample]
    timeframe = "1h" if sample.endswith("hourly") else "1d"
    for cut in _cuts(len(bars), seed=SAMPLES.index(sample)):
        part = build_features(bars.iloc[:cut], fs, timeframe=timeframe)
        expected = full.iloc[:cut]
        assert list(part.columns) == list(expected.columns)
        assert part.index.equals(expected.index)
        np.testing.assert_allclose(
            part.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=0, equal_nan=True, err_msg=f"cut {cut}"
        )
        # NaN exactly where the full build has NaN
        np.testing.assert_array_equal(np.isnan(part.to_numpy()), np.isnan(expected.to_numpy()))


@pytest.mark.parametrize("sample", SAMPLES)
def test_prefix_build_infers_the_same_columns(
    full_builds: dict[str, tuple[pd.DataFrame, pd.DataFrame]], sample: str
) -> None:
    bars, full = full_builds[sample]
    part = build_features(bars.iloc[:500], get_feature_set("default"))
    assert list(part.columns) == list(full.columns)


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(min_value=1, max_value=400), seed=st.integers(0, 2**32 - 1))
def test_prefix_equals_full_on_random_walks(cut: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = np.concatenate([[50.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, n))
    index = pd.date_range("2020-01-01", periods=n, freq="h", tz="UTC", name="ts")
    bars = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": rng.uniform(0, 1e6, n)},
        index=index,
    )
    fs = get_feature_set("default")
    full = build_features(bars, fs, timeframe="1h").to_numpy()
    part = build_features(bars.iloc[:cut], fs, timeframe="1h").to_numpy()
    np.testing.assert_allclose(part, full[:cut], rtol=1e-12, atol=0, equal_nan=True)


def _walk(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.01, n))  # every open differs from the previous close
    index = pd.date_range("2021-01-01", periods=n, freq="D", tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close),
            "low": np.minimum(open_, close),
            "close": close,
            "volume": 1.0,
        },
        index=index,
    )


def _shock(bars: pd.DataFrame, bar: int, open_factor: float, close_factor: float) -> pd.DataFrame:
    """``bars`` with bar ``bar``'s open and close moved (high and low kept valid)."""
    out = bars.copy()
    o = out["open"].to_numpy(copy=True)
    c = out["close"].to_numpy(copy=True)
    o[bar] *= open_factor
    c[bar] *= close_factor
    out["open"], out["close"] = o, c
    out["high"], out["low"] = np.maximum(o, c), np.minimum(o, c)
    return out


@pytest.mark.parametrize("side", [1.0, -1.0])
@pytest.mark.parametrize(("enter", "leave"), [(0, 7), (20, 21), (33, 58)])
def test_backtest_fills_a_decision_at_the_next_open(side: float, enter: int, leave: int) -> None:
    # The target becomes `side` at the close of bar `enter` and 0 at the close of bar `leave`:
    # the trade must open at open[enter + 1] and close at open[leave + 1]. Filling a decision at
    # its own bar (its open, or its close) would use a price from before or at the decision, so
    # moving the decision bars' open and close must change nothing of the trade, nor the book
    # after the exit, and the account must be untouched until bar `enter + 1`.
    bars = _walk(60, seed=enter)
    pos = pd.Series(0.0, index=bars.index, name="A")
    pos.iloc[enter:leave] = side
    costs = Costs(commission_bps=3, slippage_bps=2)
    base = run(bars, pos, costs)
    (trade,) = base.trades.itertuples(index=False)
    opens = bars["open"].to_numpy()
    assert (trade.entry_time, trade.exit_time) == (bars.index[enter + 1], bars.index[leave + 1])
    assert (trade.entry_price, trade.exit_price) == (opens[enter + 1], opens[leave + 1])
    # P&L from those two opens alone: X = 1 / (1 + r) of notional goes in at the entry open, the
    # price ratio moves it, and the entry and exit notionals pay r each.
    r = costs.rate
    ratio = opens[leave + 1] / opens[enter + 1]
    pnl = (side * (ratio - 1.0) - r * (1.0 + ratio)) / (1.0 + r)
    assert trade.pnl == pytest.approx(pnl, rel=1e-12, abs=1e-15)
    np.testing.assert_array_equal(base.equity.iloc[: enter + 1].to_numpy(), 1.0)
    for bar in (enter, leave):
        for factors in ((1.3, 1.0), (1.0, 0.7), (0.8, 1.25)):
            if bar == enter + 1 and factors[0] != 1.0:
                continue  # that open is the entry's fill: only its close is a decision price
            shocked = run(_shock(bars, bar, *factors), pos, costs)
            pd.testing.assert_frame_equal(shocked.trades, base.trades)
            pd.testing.assert_series_equal(shocked.equity.iloc[leave + 1 :], base.equity.iloc[leave + 1 :])
            np.testing.assert_array_equal(shocked.equity.iloc[: enter + 1].to_numpy(), 1.0)
