"""No look-ahead: features built on bars up to a cut equal the full build before the cut."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
