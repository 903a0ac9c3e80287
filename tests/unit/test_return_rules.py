"""Validation keeps real market moves and quarantines errors (config/validation.yaml's return rules).

Real moves (crash days and earnings gaps of the shipped samples, synthetic earnings gaps of
+-35%, a big move early in a series) must be stored; planted errors (reverting spikes, unadjusted
2:1 and 1:10 splits, x100 unit errors, repeated stale closes, moves beyond the hard ceiling) must be
quarantined or flagged as the policy says.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from expectations.checks import ReturnParams, return_scores
from tests.unit.test_corruptions import SAMPLE_SPECS, bars, run

PRICES = ["open", "high", "low", "close"]


def _pos(frame: pd.DataFrame, day: str) -> int:
    return int(pd.DatetimeIndex(frame["ts"]).searchsorted(pd.Timestamp(day, tz="UTC")))


def _flagged(report: object, pos: int) -> tuple[list[str], list[str]]:
    return report.failures.get(pos, []), report.warnings.get(pos, [])  # type: ignore[attr-defined]


@pytest.mark.parametrize("symbol", list(SAMPLE_SPECS))
def test_the_samples_have_no_critical_failure(symbol: str) -> None:
    assert run(symbol, bars(symbol)).failures == {}


@pytest.mark.parametrize(
    ("symbol", "day"),
    [
        ("SPX", "2008-10-13"),  # +11.0 %, the largest day of the sample
        ("SPX", "2008-10-15"),  # -9.0 %
        ("SPX", "2008-10-28"),  # +10.2 %
        ("GOOGL", "2015-07-17"),  # +16.3 % on earnings
        ("GOOGL", "2013-10-18"),  # +13.8 % on earnings
        ("GOOGL", "2011-07-15"),  # +13.0 % on earnings
    ],
)
def test_real_crash_days_and_earnings_gaps_are_stored(symbol: str, day: str) -> None:
    frame = bars(symbol)
    pos = _pos(frame, day)
    assert frame["ts"].iloc[pos] == pd.Timestamp(day, tz="UTC")
    assert pos not in run(symbol, frame).failures


@pytest.mark.parametrize("factor", [1.35, 0.65])
def test_synthetic_earnings_gaps_of_35_percent_are_kept_as_warnings(factor: float) -> None:
    frame = bars("GOOGL")
    t = _pos(frame, "2016-04-22")
    frame.loc[t:, PRICES] *= factor  # a one-way gap that stays
    report = run("GOOGL", frame)
    failures, warnings = _flagged(report, t)
    assert failures == [] and report.failures == {}
    assert set(warnings) <= {"return_in_bound"}
    if factor < 1:  # -35 % (log -0.43) is beyond the equity bound: stored, and flagged with its reason
        assert report.reasons(t) == [
            "warning: return_in_bound: the one-bar return of the close is beyond the robust bound for its "
            "asset class and timeframe (a large move: kept, check the news)"
        ]


def test_no_bound_is_judged_from_too_few_returns() -> None:
    # AMD 2005-01-11: -26 % on the sixth bar of its series. Only the hard ceiling applies there.
    frame = bars("GOOGL").iloc[:40].reset_index(drop=True)
    frame.loc[5:, PRICES] *= 0.74
    report = run("GOOGL", frame)
    assert report.failures == {} and report.warnings == {}
    frame.loc[5:, PRICES] *= 0.0001 / 0.74  # x1/10,000: beyond any real move, caught from the start
    assert _flagged(run("GOOGL", frame), 5)[0] == ["return_ceiling"]


@pytest.mark.parametrize("day", ["2009-01-02", "2005-01-03"])
def test_a_reverting_50_percent_index_spike_is_caught_in_2009_as_in_2005(day: str) -> None:
    frame = bars("SPX")
    t = _pos(frame, day)
    frame.loc[t, PRICES] *= 1.5
    report = run("SPX", frame)
    assert "no_spike" in report.failures[t]
    assert set(report.failures) == {t}
    assert t + 1 not in report.warnings


@pytest.mark.parametrize(
    ("factor", "symbol"),
    [(0.5, "GOOGL"), (10.0, "GOOGL"), (100.0, "SPX"), (1 / 3, "SPX")],
    ids=["split_2_for_1", "reverse_split_1_for_10", "unit_x100", "split_3_for_1"],
)
def test_unadjusted_splits_and_unit_changes_are_quarantined(factor: float, symbol: str) -> None:
    frame = bars(symbol)
    t = _pos(frame, "2014-04-03")
    frame.loc[t:, PRICES] *= factor
    frame.loc[t:, "volume"] /= factor
    report = run(symbol, frame)
    assert "split_like" in report.failures[t]
    assert set(report.failures) == {t}
    assert any("record the split" in r for r in report.reasons(t))


def test_a_recorded_split_is_an_unadjusted_split_not_an_error() -> None:
    frame = bars("GOOGL")
    t = _pos(frame, "2014-04-03")  # GOOGL's real 2-for-1 (class C dividend) ex-date
    frame.loc[t:, PRICES] *= 0.5
    report = run("GOOGL", frame, splits={frame["ts"].iloc[t]: 2.0})
    assert report.failures == {}
    assert report.warnings[t] == ["split_unadjusted"]
    other = run("GOOGL", frame, splits={frame["ts"].iloc[t]: 3.0})  # the wrong ratio explains nothing
    assert "split_like" in other.failures[t]


def test_a_x100_unit_error_on_one_bar_is_quarantined() -> None:
    frame = bars("GOOGL")
    t = _pos(frame, "2017-03-01")
    frame.loc[t, PRICES] *= 100.0
    report = run("GOOGL", frame)
    assert {"no_spike", "return_ceiling"} <= set(report.failures[t])
    assert set(report.failures) == {t}


def test_repeated_stale_closes_are_flagged() -> None:
    frame = bars("SPX")
    t = _pos(frame, "2012-06-04")
    stale = frame.loc[t - 1, "close"]
    frame.loc[t : t + 3, PRICES] = stale  # four more bars repeat the last close: a frozen feed
    report = run("SPX", frame)
    run_length = 2  # config/validation.yaml: index 1d stale_run
    flagged = sorted(p for p, ids in report.warnings.items() if "stale_price" in ids)
    assert flagged == list(range(t + run_length - 1, t + 4))
    assert not any("stale_price" in ids for ids in report.failures.values())


def test_return_rules_are_causal() -> None:
    rng = np.random.default_rng(11)
    log_close = np.cumsum(rng.normal(0, 0.01, 300))
    log_close[150:] += np.log(0.5)  # a split-like jump at 150
    params = ReturnParams(window=50, k=10.0, floor=0.05)
    whole = return_scores(log_close, 0, params)
    cut = return_scores(log_close[:151], 0, params)
    assert whole.split_like[150] and cut.split_like[150]
    for name in ("z", "ceiling_z", "split_like", "stale"):
        np.testing.assert_array_equal(getattr(whole, name)[:151], getattr(cut, name))
