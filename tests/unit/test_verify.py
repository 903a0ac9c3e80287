"""The cross-verification math: relative differences, the tolerance edge, shared timestamps only."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from providers.base import BadResponse
from providers.verify import Discrepant, compare, describe, relative_difference


def bars(closes: list[float], start: str = "2024-01-01", freq: str = "1min") -> pd.DataFrame:
    """Canonical bars with the given closes (other prices equal to the close)."""
    index = pd.date_range(start, periods=len(closes), freq=freq, tz="UTC", name="ts")
    close = np.asarray(closes, dtype="float64")
    return pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": np.ones(len(close))},
        index=index,
    )


def test_relative_difference_is_measured_against_the_primary() -> None:
    primary = np.array([100.0, 200.0, 0.0, 0.0, np.nan])
    rel = relative_difference(primary, np.array([101.0, 190.0, 0.0, 1.0, 1.0]))
    assert rel[0] == pytest.approx(0.01)
    assert rel[1] == pytest.approx(0.05)
    assert rel[2] == 0.0  # both zero: no difference
    assert math.isinf(rel[3])  # primary zero, secondary not: infinitely different
    assert math.isnan(rel[4])  # missing values are not compared


def test_identical_bars_are_verified() -> None:
    frame = bars([100.0, 101.0, 102.0])
    result = compare(frame, frame.copy(), ["close"], 0.005)
    assert result.compared == 3
    assert result.discrepancies == []
    assert result.ok
    assert result.first_ts == frame.index[0] and result.last_ts == frame.index[-1]


def test_a_difference_equal_to_the_tolerance_passes_and_above_it_is_reported() -> None:
    # 1/128 is exact in binary, so the edge is tested without rounding noise
    tolerance = 1 / 128
    primary = bars([128.0, 128.0, 128.0])
    secondary = bars([129.0, 129.0 + 1e-9, 127.0])
    result = compare(primary, secondary, ["close"], tolerance)
    assert result.compared == 3
    assert [d.ts for d in result.discrepancies] == [primary.index[1]]
    only = result.discrepancies[0]
    assert only.field == "close"
    assert only.primary_value == 128.0 and only.secondary_value == pytest.approx(129.0 + 1e-9)
    assert only.rel_diff == pytest.approx((1.0 + 1e-9) / 128)
    assert not result.ok


def test_only_timestamps_both_sources_hold_are_compared() -> None:
    primary = bars([100.0, 100.0, 100.0, 100.0])  # 00:00 .. 00:03
    secondary = bars([100.0, 150.0, 100.0], start="2024-01-01 00:02")  # 00:02 .. 00:04
    result = compare(primary, secondary, ["close"], 0.005)
    assert result.compared == 2
    assert result.first_ts == pd.Timestamp("2024-01-01 00:02", tz="UTC")
    assert result.last_ts == pd.Timestamp("2024-01-01 00:03", tz="UTC")
    # 00:03 differs by 50%; 00:04 (150 -> 100 at secondary only) is outside the primary's bars
    assert [(d.ts.minute, d.rel_diff) for d in result.discrepancies] == [(3, pytest.approx(0.5))]


def test_no_shared_timestamps_compares_nothing() -> None:
    result = compare(bars([1.0, 2.0]), bars([1.0, 2.0], start="2024-02-01"), ["close"], 0.005)
    assert result.compared == 0 and result.discrepancies == [] and result.first_ts is None
    assert not result.ok


def test_several_fields_are_checked_and_sorted_by_time_then_field() -> None:
    primary = bars([100.0, 100.0])
    secondary = primary.copy()
    secondary.loc[primary.index[1], ["open", "close"]] = [90.0, 110.0]
    secondary.loc[primary.index[0], "volume"] = 5.0  # volume not among the fields: ignored
    result = compare(primary, secondary, ["close", "open"], 0.005)
    assert [(d.ts, d.field) for d in result.discrepancies] == [
        (primary.index[1], "close"),
        (primary.index[1], "open"),
    ]
    assert [d.rel_diff for d in result.discrepancies] == [pytest.approx(0.1), pytest.approx(0.1)]


def test_nan_values_are_not_reported() -> None:
    primary = bars([100.0, 100.0])
    secondary = bars([np.nan, 100.0])
    result = compare(primary, secondary, ["close"], 0.005)
    assert result.compared == 2 and result.discrepancies == []


@pytest.mark.parametrize(
    ("fields", "tolerance", "message"),
    [
        (["close"], -0.1, "tolerance"),
        (["close"], float("nan"), "tolerance"),
        ([], 0.005, "at least one"),
        (["vwap"], 0.005, "vwap"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(fields: list[str], tolerance: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare(bars([1.0]), bars([1.0]), fields, tolerance)


def test_discrepant_is_a_bad_response_that_carries_the_bars() -> None:
    primary, secondary = bars([100.0]), bars([110.0])
    found = compare(primary, secondary, ["close"], 0.005).discrepancies
    error = Discrepant(f"BTC-USD: {describe(found)}", found)
    assert isinstance(error, BadResponse)
    assert error.discrepancies == found
    assert "2024-01-01T00:00:00+00:00 close 100 vs 110 (10.00%)" in str(error)


def test_describe_shortens_long_lists() -> None:
    found = compare(bars([100.0] * 8), bars([120.0] * 8), ["close"], 0.005).discrepancies
    text = describe(found, limit=3)
    assert text.count("close 100 vs 120") == 3
    assert text.endswith("and 5 more")
