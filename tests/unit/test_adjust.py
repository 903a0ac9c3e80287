"""Back-adjusting bars for splits (``market.adjust.apply_splits``), checked against sums done by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from market import apply_splits
from market.adjust import split_factors


@dataclass(frozen=True)
class Split:
    """Anything with an ex-date and a ratio will do (here not the store's CorporateAction)."""

    ex_date: Any
    ratio: float
    kind: str = "split"


def day_bars(closes: list[float], volumes: list[float], start: str = "2024-03-04") -> pd.DataFrame:
    """Day bars with open = close - 1, high = close + 2, low = close - 2."""
    index = pd.date_range(start, periods=len(closes), freq="D", tz="UTC", name="ts").as_unit("ns")
    close = np.asarray(closes, dtype="float64")
    return pd.DataFrame(
        {"open": close - 1, "high": close + 2, "low": close - 2, "close": close, "volume": volumes},
        index=index,
    )


def test_a_two_for_one_split_halves_the_prices_and_doubles_the_volume_before_its_ex_date() -> None:
    bars = day_bars([100.0, 102.0, 51.5, 52.0], [1_000.0, 1_200.0, 2_500.0, 2_400.0])
    before = bars.copy()

    adjusted = apply_splits(bars, [Split(pd.Timestamp("2024-03-06", tz="UTC"), 2.0)])

    # by hand: the 4th and 5th of March are on the old basis, the 6th is the ex-date
    assert adjusted["close"].tolist() == [50.0, 51.0, 51.5, 52.0]
    assert adjusted["open"].tolist() == [49.5, 50.5, 50.5, 51.0]
    assert adjusted["high"].tolist() == [51.0, 52.0, 53.5, 54.0]
    assert adjusted["low"].tolist() == [49.0, 50.0, 49.5, 50.0]
    assert adjusted["volume"].tolist() == [2_000.0, 2_400.0, 2_500.0, 2_400.0]
    pd.testing.assert_frame_equal(bars, before)  # the input is left alone


def test_a_one_for_ten_reverse_split_multiplies_earlier_prices_by_ten() -> None:
    bars = day_bars([1.5, 1.4, 14.2], [10_000.0, 9_000.0, 950.0])
    adjusted = apply_splits(bars, [Split("2024-03-06", 0.1)])  # a naive ex-date is UTC
    assert adjusted["close"].tolist() == pytest.approx([15.0, 14.0, 14.2])
    assert adjusted["open"].tolist() == pytest.approx([5.0, 4.0, 13.2])
    assert adjusted["volume"].tolist() == pytest.approx([1_000.0, 900.0, 950.0])


def test_later_splits_compound_and_the_order_given_does_not_matter() -> None:
    bars = day_bars([400.0, 200.0, 210.0, 21.0], [1.0, 2.0, 2.0, 20.0])
    splits = [Split("2024-03-07", 0.1), Split("2024-03-05", 2.0)]  # out of order on purpose
    adjusted = apply_splits(bars, splits)
    # 4 March: before both (2 * 0.1 = 0.2); 5-6 March: before the reverse split only (0.1)
    assert adjusted["close"].tolist() == pytest.approx([2_000.0, 2_000.0, 2_100.0, 21.0])
    assert adjusted["volume"].tolist() == pytest.approx([0.2, 0.2, 0.2, 20.0])
    np.testing.assert_allclose(split_factors(pd.DatetimeIndex(bars.index), splits), [0.2, 0.1, 0.1, 1.0])


def test_intraday_bars_of_the_ex_date_are_on_the_new_basis() -> None:
    index = pd.DatetimeIndex(
        ["2024-03-05 20:00", "2024-03-06 14:30", "2024-03-06 15:30"], tz="UTC", name="ts"
    ).as_unit("ns")
    bars = pd.DataFrame(
        {"open": [100.0, 50.0, 50.5], "high": [101.0, 51.0, 51.0], "low": [99.0, 49.0, 50.0],
         "close": [100.0, 50.5, 50.8], "volume": [10.0, 30.0, 25.0], "source": ["a", "b", "c"]},
        index=index,
    )  # fmt: skip
    adjusted = apply_splits(bars, [Split(pd.Timestamp("2024-03-06", tz="UTC"), 2.0)])
    assert adjusted["close"].tolist() == [50.0, 50.5, 50.8]
    assert adjusted["volume"].tolist() == [20.0, 30.0, 25.0]
    assert adjusted["source"].tolist() == ["a", "b", "c"]  # other columns pass through


def test_no_splits_or_only_later_or_other_kinds_change_nothing() -> None:
    bars = day_bars([10.0, 11.0], [5.0, 6.0])
    pd.testing.assert_frame_equal(apply_splits(bars, []), bars)
    pd.testing.assert_frame_equal(apply_splits(bars, [Split("2024-03-04", 3.0)]), bars)  # first bar's day
    pd.testing.assert_frame_equal(apply_splits(bars, [Split("2024-03-05", 3.0, kind="dividend")]), bars)


@pytest.mark.parametrize("ratio", [0.0, -2.0, float("nan"), float("inf")])
def test_an_invalid_ratio_is_refused_with_what_a_ratio_is(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"2024-03-05 has ratio .* positive number of new shares per old"):
        apply_splits(day_bars([10.0, 11.0], [5.0, 6.0]), [Split("2024-03-05", ratio)])


def test_bars_that_are_not_canonical_are_refused() -> None:
    with pytest.raises(ValueError, match="lack column"):
        apply_splits(day_bars([10.0], [1.0]).drop(columns="volume"), [])
    with pytest.raises(ValueError, match="DatetimeIndex"):
        apply_splits(day_bars([10.0], [1.0]).reset_index(), [])
