"""The synthetic market simulator and provider: reproducibility, prefix stability, grid, statistics.

Statistical tolerances are set from the sampling error of each estimate at the sample size used
(noted beside each assertion), at four or more standard errors, so a seeded run that passes is
not luck and a wrong model (wrong scale, missing factor) fails.
"""

from __future__ import annotations

import math

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from market.bars import BAR_COLUMNS
from market.calendars import get_calendar
from providers.base import NotSupported, Provider
from providers.synthetic import (
    EndRequiredError,
    SyntheticMarket,
    SyntheticProvider,
    name_key,
    simulate,
    simulate_regimes,
)

ORIGIN = pd.Timestamp("2024-01-01", tz="UTC")
SPANS = {"1m": pd.Timedelta(days=10), "1h": pd.Timedelta(days=120), "1d": pd.Timedelta(days=3 * 365)}


def _market(**overrides: object) -> SyntheticMarket:
    params: dict[str, object] = {"seed": 11, "symbols": ("AAA", "BBB", "CCC"), "origin": ORIGIN}
    params.update(overrides)
    return SyntheticMarket.model_validate(params)


def _log_returns(frame: pd.DataFrame) -> np.ndarray:
    return np.log(frame["close"].to_numpy() / frame["open"].to_numpy())


def _excess_kurtosis(x: np.ndarray) -> float:
    d = x - x.mean()
    return float(np.mean(d**4) / np.mean(d**2) ** 2 - 3.0)


def _assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert list(a) == list(b)
    for symbol in a:
        pd.testing.assert_frame_equal(a[symbol], b[symbol], check_exact=True)


# --- reproducibility ---------------------------------------------------------------------------


def test_same_seed_gives_identical_frames() -> None:
    end = ORIGIN + pd.Timedelta(days=3)
    _assert_same(simulate(_market(), "1m", end), simulate(_market(), "1m", end))


def test_different_seed_gives_different_frames() -> None:
    end = ORIGIN + pd.Timedelta(days=3)
    prices = (100.0, 50.0, 20.0)
    a = simulate(_market(seed=1, start_prices=prices), "1m", end)
    b = simulate(_market(seed=2, start_prices=prices), "1m", end)
    for symbol in a:
        assert a[symbol]["open"].iloc[0] == b[symbol]["open"].iloc[0]
        assert not np.allclose(_log_returns(a[symbol]), _log_returns(b[symbol]))
        assert not np.allclose(a[symbol]["volume"], b[symbol]["volume"])
    assert not np.array_equal(_market(seed=1).initial_prices(), _market(seed=2).initial_prices())


@pytest.mark.parametrize(
    ("timeframe", "short", "long"),
    [
        # 1m chunks hold 65 536 bars: the short end falls mid-chunk, the long one three chunks later.
        ("1m", pd.Timedelta(minutes=70_001), pd.Timedelta(minutes=260_013)),
        ("1h", pd.Timedelta(hours=977), pd.Timedelta(hours=20_000)),
        ("1d", pd.Timedelta(days=333), pd.Timedelta(days=4_000)),
    ],
)
def test_prefix_stability_bit_for_bit(timeframe: str, short: pd.Timedelta, long: pd.Timedelta) -> None:
    # Short spells (about 2 and 1 bars at 1d) so the regime path spans many 64-spell chunks too.
    market = _market(calm_days=2.0, stressed_days=1.0, jump_intensity=40.0)
    a = simulate(market, timeframe, ORIGIN + short)
    b = simulate(market, timeframe, ORIGIN + long)
    assert len(b["AAA"]) > len(a["AAA"]) > 0
    for symbol in a:
        head = b[symbol].iloc[: len(a[symbol])]
        pd.testing.assert_frame_equal(a[symbol], head, check_exact=True)
        assert np.array_equal(a[symbol].to_numpy().view(np.int64), head.to_numpy().view(np.int64))
    ra = simulate_regimes(market, timeframe, ORIGIN + short)
    rb = simulate_regimes(market, timeframe, ORIGIN + long)
    pd.testing.assert_series_equal(ra, rb.iloc[: len(ra)])
    assert 0 < rb.mean() < 1


def test_paths_are_keyed_by_name_not_position() -> None:
    # Issue 19: C,D gave the bars of A,B, and B,A swapped the paths (a splice on resume).
    end = ORIGIN + pd.Timedelta(days=3)
    ab = simulate(_market(symbols=("A", "B")), "1m", end)
    ba = simulate(_market(symbols=("B", "A")), "1m", end)
    cd = simulate(_market(symbols=("C", "D")), "1m", end)
    alone = simulate(_market(symbols=("A",)), "1m", end)
    for symbol in ("A", "B"):
        pd.testing.assert_frame_equal(ab[symbol], ba[symbol], check_exact=True)
    pd.testing.assert_frame_equal(ab["A"], alone["A"], check_exact=True)  # constant rho >= 0: one factor
    for mine, other in (("A", "C"), ("B", "D"), ("A", "D"), ("B", "C")):
        assert ab[mine]["open"].iloc[0] != cd[other]["open"].iloc[0]
        assert not np.allclose(_log_returns(ab[mine]), _log_returns(cd[other]))
        assert not np.allclose(ab[mine]["volume"], cd[other]["volume"])
    assert list(ba) == ["B", "A"]  # results keep the order asked for


def test_a_correlation_matrix_follows_the_names_too() -> None:
    end = ORIGIN + pd.Timedelta(days=2)
    corr = ((1.0, 0.5, -0.3), (0.5, 1.0, 0.2), (-0.3, 0.2, 1.0))
    abc = _market(symbols=("A", "B", "C"), correlation=corr, vol_calm=(0.1, 0.2, 0.3))
    order = [2, 0, 1]  # C, A, B: the same market given in another order
    cab = _market(
        symbols=("C", "A", "B"),
        correlation=np.asarray(corr)[np.ix_(order, order)],
        vol_calm=(0.3, 0.1, 0.2),
    )
    one, two = simulate(abc, "1m", end), simulate(cab, "1m", end)
    for symbol in "ABC":
        pd.testing.assert_frame_equal(one[symbol], two[symbol], check_exact=True)
    # Sorted by name, A is first in the Cholesky factor: its shocks are its own, as alone
    # (same parameters, correlation 0 so no market factor).
    alone = simulate(_market(symbols=("A",), correlation=0.0, vol_calm=0.1), "1m", end)
    pd.testing.assert_frame_equal(one["A"], alone["A"], check_exact=True)
    # A negative constant correlation takes the same route: order still does not matter.
    neg = simulate(_market(symbols=("A", "B", "C"), correlation=-0.2), "1m", end)
    neg_swapped = simulate(_market(symbols=("C", "B", "A"), correlation=-0.2), "1m", end)
    for symbol in "ABC":
        pd.testing.assert_frame_equal(neg[symbol], neg_swapped[symbol], check_exact=True)


def test_name_keys_are_stable_across_processes() -> None:
    # BLAKE2b of the UTF-8 name, not Python's salted hash(): these literals must never change.
    assert name_key("BTC") == 2733005103683788195
    assert name_key("SYNA") == 14801589379806583268
    assert name_key("A") != name_key("B")


def test_appending_a_symbol_keeps_the_earlier_paths() -> None:
    end = ORIGIN + pd.Timedelta(days=20)
    two = simulate(_market(symbols=("AAA", "BBB")), "1h", end)
    three = simulate(_market(symbols=("AAA", "BBB", "CCC")), "1h", end)
    for symbol in two:
        pd.testing.assert_frame_equal(two[symbol], three[symbol], check_exact=True)


# --- provider ---------------------------------------------------------------------------------


def test_provider_resumes_from_watermark_with_the_same_bars() -> None:
    market = _market()
    e1, e2 = ORIGIN + pd.Timedelta(hours=30, minutes=7), ORIGIN + pd.Timedelta(days=4, minutes=3)
    full = SyntheticProvider(market).fetch_bars("BBB", "1m", end=e2)
    assert isinstance(SyntheticProvider(market), Provider)
    pd.testing.assert_frame_equal(full, simulate(market, "1m", e2)["BBB"], check_exact=True)

    ingest = SyntheticProvider(market)
    first = ingest.fetch_bars("BBB", "1m", end=e1)
    watermark = first.index[-1]
    assert first.index[0] == ORIGIN and watermark < e1
    pd.testing.assert_frame_equal(first, full.iloc[: len(first)], check_exact=True)
    # A fresh provider, as after a restart, and the same provider with its history cached.
    for provider in (SyntheticProvider(market), ingest):
        tail = provider.fetch_bars("BBB", "1m", start=watermark, end=e2)
        assert tail.index[0] == watermark
        pd.testing.assert_frame_equal(tail, full.loc[watermark:], check_exact=True)
    # After the cache grew, an earlier end is still the same slice; naive times read as UTC.
    again = ingest.fetch_bars("BBB", "1m", start=None, end=e1.tz_localize(None))
    pd.testing.assert_frame_equal(again, first, check_exact=True)


def test_any_window_equals_the_slice_of_one_long_run_whatever_the_symbol_order() -> None:
    long_end = ORIGIN + pd.Timedelta(minutes=200_000)  # past three 65 536-bar chunks
    full = SyntheticProvider(_market(symbols=("AAA", "BBB"))).fetch_bars("AAA", "1m", end=long_end)
    cut = ORIGIN + pd.Timedelta(minutes=70_001)
    head = SyntheticProvider(_market(symbols=("AAA", "BBB"))).fetch_bars("AAA", "1m", end=cut)
    # resumed from the watermark by a market that lists the symbols the other way round
    tail = SyntheticProvider(_market(symbols=("BBB", "AAA"))).fetch_bars(
        "AAA", "1m", start=head.index[-1], end=long_end
    )
    pd.testing.assert_frame_equal(head, full.loc[: head.index[-1]], check_exact=True)
    pd.testing.assert_frame_equal(tail, full.loc[head.index[-1] :], check_exact=True)
    assert tail["open"].iloc[1] == head["close"].iloc[-1]  # the bar after the old end continues the path


def test_provider_slices_start_inclusive_end_exclusive() -> None:
    provider = SyntheticProvider(_market())
    start, end = ORIGIN + pd.Timedelta(hours=5), ORIGIN + pd.Timedelta(hours=9)
    bars = provider.fetch_bars("AAA", "1h", start=start, end=end)
    assert list(bars.index) == list(pd.date_range(start, periods=4, freq="h"))
    assert provider.fetch_bars("AAA", "1h", start=end, end=start).empty
    early = provider.fetch_bars("AAA", "1h", start=ORIGIN - pd.Timedelta(days=30), end=end)
    assert early.index[0] == ORIGIN and len(early) == 9
    before = provider.fetch_bars("AAA", "1h", end=ORIGIN)
    assert before.empty and tuple(before.columns) == BAR_COLUMNS
    assert simulate_regimes(provider.market, "1h", ORIGIN).empty


def test_unknown_symbol_and_missing_end_are_typed_errors() -> None:
    provider = SyntheticProvider(_market())
    with pytest.raises(NotSupported, match=r"no symbol 'ZZZ'.*AAA, BBB, CCC"):
        provider.fetch_bars("ZZZ", "1d", end=ORIGIN + pd.Timedelta(days=5))
    with pytest.raises(EndRequiredError, match="pass end=") as caught:
        provider.fetch_bars("AAA", "1d")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, NotSupported)


# --- configuration -----------------------------------------------------------------------------


def test_config_validation_says_how_to_fix() -> None:
    four = ("A", "B", "C", "D")
    with pytest.raises(ValidationError, match=r"\(-0.3333, 1\)"):
        SyntheticMarket(symbols=four, correlation=-0.5)
    bad = ((1.0, 0.9, -0.9), (0.9, 1.0, 0.9), (-0.9, 0.9, 1.0))
    with pytest.raises(ValidationError, match="not positive definite"):
        SyntheticMarket(symbols=("A", "B", "C"), correlation=bad)
    with pytest.raises(ValidationError, match="start_prices has 2 values for 3 symbols"):
        SyntheticMarket(symbols=("A", "B", "C"), start_prices=(1.0, 2.0))
    with pytest.raises(ValidationError, match="vol_calm has 2 values for 3 symbols"):
        SyntheticMarket(symbols=("A", "B", "C"), vol_calm=(0.1, 0.2))
    with pytest.raises(ValidationError, match="symbols repeat: A"):
        SyntheticMarket(symbols=("A", "B", "A"))
    with pytest.raises(ValidationError, match="unknown calendar"):
        SyntheticMarket(calendar="MOON")
    # Inputs are coerced at the boundary: an ndarray matrix, a naive origin string read as UTC.
    market = SyntheticMarket.model_validate(
        {"symbols": four, "correlation": np.eye(4), "origin": "2021-06-01 12:00"}
    )
    assert market.origin == pd.Timestamp("2021-06-01 12:00", tz="UTC")
    assert SyntheticMarket.model_validate_json(market.model_dump_json()) == market
    assert hash(market) == hash(market.model_copy())
    with pytest.raises(ValidationError):
        market.seed = 3


# --- bars: grid and invariants -----------------------------------------------------------------


@pytest.mark.parametrize("calendar", ["24/7", "24/5", "XNYS"])
@pytest.mark.parametrize("timeframe", ["1m", "1h", "1d"])
def test_bars_lie_on_the_grid_and_keep_ohlc_invariants(calendar: str, timeframe: str) -> None:
    # A violent market (stressed vol 200 %, frequent large jumps) to stress positivity and order.
    market = _market(calendar=calendar, vol_stressed=2.0, jump_intensity=300.0, jump_std=0.25)
    end = ORIGIN + SPANS[timeframe]
    frames = simulate(market, timeframe, end)
    grid = get_calendar(calendar).bar_grid(timeframe, ORIGIN, end)
    assert len(grid) > 0
    for j, (symbol, bars) in enumerate(frames.items()):
        assert symbol == market.symbols[j]
        assert bars.index.equals(grid) and bars.index.name == "ts"
        assert str(bars.index.dtype) == "datetime64[ns, UTC]"
        assert tuple(bars.columns) == BAR_COLUMNS and (bars.dtypes == "float64").all()
        o, h, lo, c, v = (bars[col].to_numpy() for col in BAR_COLUMNS)
        assert np.isfinite(bars.to_numpy()).all()
        assert (lo > 0).all() and (v > 0).all()
        assert (lo <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all()
        assert (h > np.maximum(o, c)).mean() > 0.99 and (lo < np.minimum(o, c)).mean() > 0.99
        assert o[0] == market.initial_prices()[j]
        assert np.array_equal(o[1:], c[:-1])


def test_xnys_minutes_only_within_sessions() -> None:
    market = _market(calendar="XNYS")
    bars = simulate(market, "1m", pd.Timestamp("2024-08-01", tz="UTC"))["AAA"]
    local = pd.DatetimeIndex(bars.index).tz_convert("America/New_York")
    minutes = local.hour * 60 + local.minute
    assert (local.day_of_week < 5).all()
    assert ((minutes >= 9 * 60 + 30) & (minutes < 16 * 60)).all()
    days = pd.Series(1, index=local.date).groupby(level=0).size()
    assert pd.Timestamp("2024-01-15").date() not in days.index  # Martin Luther King Jr. Day
    assert pd.Timestamp("2024-07-04").date() not in days.index
    assert days.loc[pd.Timestamp("2024-07-03").date()] == 210  # early close at 13:00
    assert (days.drop(pd.Timestamp("2024-07-03").date()) == 390).all()
    sessions = xcals.get_calendar("XNYS").sessions_in_range("2024-01-01", "2024-07-31")
    assert list(days.index) == [d.date() for d in sessions]


def test_fx_bars_follow_the_24_5_week() -> None:
    bars = simulate(_market(calendar="24/5"), "1h", ORIGIN + pd.Timedelta(days=60))["AAA"]
    local = pd.DatetimeIndex(bars.index).tz_convert("America/New_York")
    dow, hour = local.day_of_week, local.hour
    assert not (dow == 5).any()
    assert not ((dow == 4) & (hour >= 17)).any()
    assert not ((dow == 6) & (hour < 17)).any()
    assert ((dow == 6) & (hour == 17)).any()  # the week opens Sunday 17:00 New York
    weekly = (
        pd.Series(1, index=bars.index)
        .groupby(pd.DatetimeIndex(bars.index).tz_convert(None).to_period("W-SAT"))
        .size()
    )
    assert (weekly.iloc[1:-1] == 120).all()  # five 24-hour sessions


# --- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "correlation",
    [0.6, ((1.0, 0.5, -0.3), (0.5, 1.0, 0.2), (-0.3, 0.2, 1.0))],
    ids=["constant", "matrix"],
)
def test_realised_correlation_matches_configuration(correlation: object) -> None:
    market = _market(
        correlation=correlation, jump_intensity=0.0, vol_calm=(0.1, 0.2, 0.3), vol_stressed=(0.3, 0.6, 0.9)
    )
    frames = simulate(market, "1m", ORIGIN + pd.Timedelta(minutes=200_000))
    returns = np.vstack([_log_returns(f) for f in frames.values()])
    realised = np.corrcoef(returns)
    # SE of a sample correlation is about (1 - rho^2) / sqrt(n) = 0.0022 at n = 2e5, at most
    # x1.6 for the regime's heteroskedasticity: 0.015 is over four standard errors.
    np.testing.assert_allclose(realised, market.correlation_matrix(), atol=0.015, rtol=0)


def test_realised_volatility_by_regime() -> None:
    market = _market(jump_intensity=0.0)
    end = ORIGIN + pd.Timedelta(days=3650)
    bars = simulate(market, "1h", end)["AAA"]
    stressed = simulate_regimes(market, "1h", end).to_numpy()
    returns = _log_returns(bars)
    per_year = get_calendar("24/7").bars_per_year("1h")
    calm_vol = returns[~stressed].std() * math.sqrt(per_year)
    stressed_vol = returns[stressed].std() * math.sqrt(per_year)
    # About 48 calm/stressed cycles in ten years: the stressed share 15/75 = 0.2 has an SD near 0.03.
    assert 0.1 < stressed.mean() < 0.3
    assert calm_vol < stressed_vol
    # Relative SE of a standard deviation is 1/sqrt(2n): 0.3 % (calm, n ~ 70k), 0.6 % (stressed).
    assert calm_vol == pytest.approx(0.15, rel=0.03)
    assert stressed_vol == pytest.approx(0.45, rel=0.03)


def test_regime_spells_have_the_configured_mean_duration() -> None:
    market = _market(calm_days=2.0, stressed_days=1.0)
    stressed = simulate_regimes(market, "1h", ORIGIN + pd.Timedelta(hours=200_000)).to_numpy()
    edges = np.flatnonzero(np.diff(stressed.astype(np.int8))) + 1
    spells = np.split(stressed, edges)[1:-1]  # drop the cut-off first and last spells
    calm = np.array([len(s) for s in spells if not s[0]]) / 24.0
    hot = np.array([len(s) for s in spells if s[0]]) / 24.0
    # About 2 800 spells of each kind; SE of a geometric mean is about mean / sqrt(n): 2 %.
    assert len(calm) > 2000 and len(hot) > 2000
    assert calm.mean() == pytest.approx(2.0, rel=0.08)
    assert hot.mean() == pytest.approx(1.0, rel=0.08)


def test_jumps_add_excess_kurtosis_at_the_configured_rate() -> None:
    common: dict[str, object] = {"vol_calm": 0.2, "vol_stressed": 0.2, "jump_mean": -0.01, "jump_std": 0.03}
    end = ORIGIN + pd.Timedelta(hours=50_000)
    plain = _log_returns(simulate(_market(jump_intensity=0.0, **common), "1h", end)["AAA"])
    jumpy_market = _market(jump_intensity=50.0, **common)
    jumpy = _log_returns(simulate(jumpy_market, "1h", end)["AAA"])
    # Gaussian: SE of excess kurtosis is sqrt(24/n) = 0.022; jumps: theory gives about 150.
    assert abs(_excess_kurtosis(plain)) < 0.15
    assert _excess_kurtosis(jumpy) > 20.0
    # Jumps have their own stream: the runs differ by the compensator except on jump bars.
    dt = 1.0 / get_calendar("24/7").bars_per_year("1h")
    compensator = 50.0 * math.expm1(-0.01 + 0.5 * 0.03**2) * dt
    diff = jumpy - plain + compensator
    hit = np.abs(diff) > 1e-9
    expected = 50.0 * len(plain) * dt  # 285 jumps; Poisson SD 17
    assert abs(hit.sum() - expected) < 70
    assert diff[hit].mean() == pytest.approx(-0.01, abs=0.008)  # SE 0.03/sqrt(285) = 0.0018
    assert diff[hit].std() == pytest.approx(0.03, rel=0.2)  # relative SE 1/sqrt(570) = 4 %


def test_intraday_volume_is_u_shaped_and_sums_to_base_volume() -> None:
    market = _market(calendar="XNYS", base_volume=(2e6, 5e5, 1e6))
    end = pd.Timestamp("2024-04-01", tz="UTC")
    bars = simulate(market, "1m", end)["AAA"]
    stressed = simulate_regimes(market, "1m", end).to_numpy()
    local = pd.DatetimeIndex(bars.index).tz_convert("America/New_York")
    minutes = np.asarray(local.hour * 60 + local.minute)
    volume = bars["volume"].to_numpy()
    first = volume[minutes < 10 * 60 + 30].mean()
    midday = volume[(minutes >= 12 * 60) & (minutes < 13 * 60)].mean()
    last = volume[minutes >= 15 * 60].mean()
    # Profile 1 + a(3(2x-1)^2 - 1), a = 0.5: about 1.6 in the outer hours and 0.55 at midday.
    assert first > 2.0 * midday and last > 2.0 * midday
    # A calm session trades base_volume on average: per-bar CV ~0.5 over > 10k calm bars (< 1 %).
    calm = ~stressed
    assert calm.sum() > 10_000
    assert volume[calm].sum() / (calm.sum() / 390) == pytest.approx(2e6, rel=0.04)
    # The same units at 1d on a 24/7 calendar: about 3 500 calm days, SE 0.5/sqrt(3500) = 0.9 %.
    daily_market = _market(base_volume=(2e6, 5e5, 1e6))
    daily_end = ORIGIN + pd.Timedelta(days=12 * 365)
    daily = simulate(daily_market, "1d", daily_end)["BBB"]["volume"].to_numpy()
    daily_calm = ~simulate_regimes(daily_market, "1d", daily_end).to_numpy()
    assert daily_calm.sum() > 2500 and (~daily_calm).sum() > 400
    assert daily[daily_calm].mean() == pytest.approx(5e5, rel=0.04)
    assert daily[~daily_calm].mean() == pytest.approx(2 * 5e5, rel=0.08)  # M = 2; SE about 2.5 %
