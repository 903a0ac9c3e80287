"""The proof: the real samples validate clean, and each kind of corruption made from them is caught.

Every corruption case asserts that the right expectation id fails at exactly the corrupted row
position(s) and that no untouched row is flagged (neither as a failure nor as a warning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.settings import PROJECT_ROOT
from config.validation import ValidationPolicy, load_validation_policy
from expectations import ValidationReport, validate_bars
from market.calendars import get_calendar
from providers.csv import parse_bars_csv

SAMPLES = PROJECT_ROOT / "data" / "samples"


@dataclass(frozen=True)
class Sample:
    file: str
    timeframe: str
    calendar: str
    asset_class: str


SAMPLE_SPECS = {
    "SPX": Sample("sp500_daily.csv", "1d", "XNYS", "index"),
    "GOOGL": Sample("googl_daily.csv", "1d", "XNYS", "equity"),
    "EURUSD": Sample("eurusd_hourly.csv", "1h", "24/5", "fx"),
}


@cache
def _bars(symbol: str) -> pd.DataFrame:
    parsed = parse_bars_csv(SAMPLES / SAMPLE_SPECS[symbol].file)
    assert not parsed.problems
    return parsed.bars.reset_index()


def bars(symbol: str) -> pd.DataFrame:
    """The sample as a frame with a ``ts`` column (a fresh copy)."""
    return _bars(symbol).copy()


@cache
def policy() -> ValidationPolicy:
    return load_validation_policy()


def run(symbol: str, frame: pd.DataFrame, **kwargs: object) -> ValidationReport:
    spec = SAMPLE_SPECS[symbol]
    now = kwargs.pop("now", _bars(symbol)["ts"].max() + pd.Timedelta(days=1))
    return validate_bars(
        frame,
        symbol=symbol,
        timeframe=spec.timeframe,
        calendar=get_calendar(spec.calendar),
        asset_class=spec.asset_class,
        policy=kwargs.pop("policy", policy()),  # type: ignore[arg-type]
        now=now,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def _insert(frame: pd.DataFrame, position: int, row: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame.iloc[:position], row, frame.iloc[position:]], ignore_index=True)


@pytest.mark.parametrize("symbol", list(SAMPLE_SPECS))
def test_real_samples_have_no_critical_failure(symbol: str) -> None:
    report = run(symbol, bars(symbol))
    assert report.rows_checked == len(_bars(symbol))
    assert report.failures == {}, {p: report.reasons(p) for p in list(report.failures)[:5]}
    assert report.warnings == {}
    assert report.success
    assert all(o.success for o in report.outcomes)
    # weekends, holidays and the FX weekly close are not on the grid, so they are not gaps either
    assert report.gaps.off_calendar == 0


def test_eurusd_gaps_are_reported_not_failed() -> None:
    report = run("EURUSD", bars("EURUSD"))
    assert report.gaps.missing > 0  # hours the sample lacks inside sessions
    assert report.failures == {}


# Each case: (symbol, corrupt(frame) -> (frame, positions, extra kwargs), expected id)
Corrupt = Callable[[pd.DataFrame], tuple[pd.DataFrame, list[int], dict[str, object]]]


def _nan_price(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    f.loc[500, "close"] = np.nan
    return f, [500], {}


def _zero_price(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    f.loc[700, "open"] = 0.0
    return f, [700], {}


def _negative_price(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    f.loc[1000, "low"] = -f.loc[1000, "low"]
    return f, [1000], {}


def _high_below_low(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    high, low = float(f.loc[1200, "high"]), float(f.loc[1200, "low"])
    assert high > low
    f.loc[1200, "high"], f.loc[1200, "low"] = low, high
    return f, [1200], {}


def _close_above_high(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    f.loc[900, "close"] = f.loc[900, "high"] * 1.02
    return f, [900], {}


def _negative_volume(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    f.loc[1300, "volume"] = -1.0
    return f, [1300], {}


def _duplicate_ts(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    twin = f.iloc[[2000]].copy()
    twin["close"] = twin["low"]  # same bar time, other values (still a consistent OHLC bar)
    assert twin["close"].iloc[0] != f.loc[2000, "close"]
    return _insert(f, 2001, twin), [2000, 2001], {}


def _off_grid(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    pos = 1500
    assert f.loc[pos, "ts"].minute == 0
    f.loc[pos, "ts"] = f.loc[pos, "ts"] + pd.Timedelta(minutes=17)
    return f, [pos], {}


def _holiday(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    xmas = pd.Timestamp("2018-12-25", tz="UTC")
    pos = int(pd.DatetimeIndex(f["ts"]).searchsorted(xmas))
    row = f.iloc[[pos - 1]].copy()  # the 24 December bar, copied onto Christmas Day
    row["ts"] = xmas
    return _insert(f, pos, row), [pos], {}


def _july_4th(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    day = pd.Timestamp("2018-07-04", tz="UTC")
    pos = int(pd.DatetimeIndex(f["ts"]).searchsorted(day))
    row = f.iloc[[pos - 1]].copy()
    row["ts"] = day
    return _insert(f, pos, row), [pos], {}


def _future(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    last = f["ts"].iloc[-1]
    row = f.iloc[[-1]].copy()
    row["ts"] = last + pd.Timedelta(hours=1)
    return pd.concat([f, row], ignore_index=True), [len(f)], {"now": last + pd.Timedelta(minutes=30)}


def _spike(f: pd.DataFrame) -> tuple[pd.DataFrame, list[int], dict[str, object]]:
    f.loc[1500, ["open", "high", "low", "close"]] *= 1.5  # the whole bar 50 % up, then back
    return f, [1500], {}


CASES: dict[str, tuple[str, Corrupt, str]] = {
    "nan_price": ("SPX", _nan_price, "not_null"),
    "zero_price": ("GOOGL", _zero_price, "prices_positive"),
    "negative_price": ("EURUSD", _negative_price, "prices_positive"),
    "high_below_low": ("SPX", _high_below_low, "high_ge_low"),
    "close_above_high": ("GOOGL", _close_above_high, "high_ge_open_close"),
    "negative_volume": ("SPX", _negative_volume, "volume_non_negative"),
    "duplicate_ts": ("EURUSD", _duplicate_ts, "ts_unique"),
    "off_grid_10_17": ("EURUSD", _off_grid, "ts_on_grid"),
    "holiday_xmas": ("SPX", _holiday, "ts_on_calendar"),
    "holiday_july_4th": ("GOOGL", _july_4th, "ts_on_calendar"),
    "future": ("EURUSD", _future, "ts_not_future"),
    "spike_50pct": ("GOOGL", _spike, "no_spike"),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_corruption_is_caught_at_its_row_only(kind: str) -> None:
    symbol, corrupt, expected_id = CASES[kind]
    frame, positions, extra = corrupt(bars(symbol))
    report = run(symbol, frame, **extra)
    flagged = {p for p, ids in report.failures.items() if expected_id in ids}
    assert flagged == set(positions), (kind, {p: report.reasons(p) for p in report.failures})
    assert set(report.failures) | set(report.warnings) == set(positions), {
        p: report.reasons(p) for p in set(report.failures) | set(report.warnings)
    }
    assert not report.success
    for pos in positions:
        assert any(reason.startswith(f"{expected_id}: ") for reason in report.reasons(pos))
    outcome = next(o for o in report.outcomes if o.id == expected_id)
    assert not outcome.success and outcome.unexpected_count == len(positions)


def test_spike_bar_after_the_reversal_is_not_blamed() -> None:
    frame, _, _ = _spike(bars("GOOGL"))
    report = run("GOOGL", frame)
    assert report.failures[1500] == ["no_spike"]
    assert report.warnings[1500] == ["return_in_bound"]  # beyond the bound too: kept as a warning
    assert 1501 not in report.failures and 1501 not in report.warnings


def test_real_crash_day_passes() -> None:
    # 2008-10-13 (+11.6 %) and 2008-10-15 (-9.0 %): real, large and in bound for an index in a crisis
    frame = bars("SPX")
    report = run("SPX", frame)
    crash = frame.index[frame["ts"].isin(pd.DatetimeIndex(["2008-10-13", "2008-10-15"], tz="UTC"))]
    assert len(crash) == 2
    assert not set(crash) & set(report.failures)


def test_string_in_a_numeric_column_is_a_row_problem_and_a_failure(tmp_path: Path) -> None:
    # Through the CSV reader: the cell becomes a RowProblem and its row is left out of the bars.
    lines = (SAMPLES / "googl_daily.csv").read_text().splitlines()
    line_no = 101  # file line number (the header is line 1)
    cells = lines[line_no - 1].split(",")
    cells[4] = "abc"  # Close
    lines[line_no - 1] = ",".join(cells)
    corrupted = tmp_path / "googl_corrupted.csv"
    corrupted.write_text("\n".join(lines) + "\n")
    parsed = parse_bars_csv(corrupted)
    assert [(p.row, p.column, p.value) for p in parsed.problems] == [(line_no, "Close", "abc")]
    assert len(parsed.bars) == len(_bars("GOOGL")) - 1
    assert run("GOOGL", parsed.bars.reset_index()).failures == {}
    # A frame that still holds the string (an object column) fails at that row.
    frame = bars("GOOGL")
    close = frame["close"].astype(object)
    close.iloc[line_no - 2] = "abc"
    frame["close"] = close
    report = run("GOOGL", frame)
    assert set(report.failures) == {line_no - 2}
    assert "values_numeric" in report.failures[line_no - 2]


def test_waiver_skips_exactly_the_waived_expectation_for_that_row() -> None:
    frame = bars("SPX")
    frame.loc[[1300, 1400], "volume"] = -1.0
    frame.loc[1300, "open"] = 0.0
    waived = {
        frame.loc[1300, "ts"]: ["volume_non_negative"],
        frame.loc[1400, "ts"]: ["prices_positive"],  # another id: does not release the volume
    }
    report = run("SPX", frame, waived=waived)
    assert "volume_non_negative" not in report.failures[1300]
    assert "prices_positive" in report.failures[1300]
    assert report.failures[1400] == ["volume_non_negative"]
    assert set(report.failures) == {1300, 1400}
    # the outcome still counts both rows: the waiver is a release, not a pass
    outcome = next(o for o in report.outcomes if o.id == "volume_non_negative")
    assert outcome.unexpected_count == 2


def test_policy_warning_moves_a_failure_to_warnings() -> None:
    frame = bars("SPX")
    frame.loc[1300, "volume"] = -1.0
    relaxed = policy().with_severity("bars", "volume_non_negative", "warning")
    report = run("SPX", frame, policy=relaxed)
    assert report.failures == {}
    assert report.warnings == {1300: ["volume_non_negative"]}
    assert report.success
    assert report.reasons(1300) == ["warning: volume_non_negative: volume < 0 or not finite"]
    off = policy().with_severity("bars", "volume_non_negative", "off")
    report = run("SPX", frame, policy=off)
    assert report.failures == {} and report.warnings == {}
    assert "volume_non_negative" not in {o.id for o in report.outcomes}


def _return_failures(report: ValidationReport, upto: int) -> set[int]:
    flagged = {**report.failures, **report.warnings}
    return {p for p, ids in flagged.items() if p <= upto and "return_in_bound" in ids}


def test_return_bound_has_no_look_ahead() -> None:
    base = bars("GOOGL")
    t = 1500
    # a level shift at t (no reversion): bar t is beyond the return bound (a warning)
    shifted = base.copy()
    shifted.loc[t:, ["open", "high", "low", "close"]] *= 1.6
    before = run("GOOGL", shifted)
    assert t in _return_failures(before, t)
    # change every bar after t (a crash, then noise): nothing at or before t changes
    changed = shifted.copy()
    rng = np.random.default_rng(0)
    changed.loc[t + 1 :, ["open", "high", "low", "close"]] *= 0.3
    changed.loc[t + 5 :, ["open", "high", "low", "close"]] *= rng.uniform(
        0.5, 2.0, size=(len(base) - t - 5, 1)
    )
    after = run("GOOGL", changed)
    assert _return_failures(after, t) == _return_failures(before, t)
    truncated = run("GOOGL", shifted.iloc[: t + 1].copy())
    assert _return_failures(truncated, t) == _return_failures(before, t)


def test_history_gives_the_first_bars_their_past() -> None:
    full = bars("GOOGL")
    history = full.iloc[:1500].set_index("ts")
    batch = full.iloc[1500:].reset_index(drop=True)
    assert run("GOOGL", batch, history=history).failures == {}
    spiked = batch.copy()
    spiked.loc[0, ["open", "high", "low", "close"]] *= 1.5
    report = run("GOOGL", spiked, history=history)
    assert set(report.failures) == {0}
    assert "no_spike" in report.failures[0]
