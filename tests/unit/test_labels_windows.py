"""Labels (forward returns) and their alignment with features; sequence windows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features import align_features_labels, build_features, get_feature_set, make_labels, make_windows
from providers.csv import parse_bars_csv


def _bars(closes: list[float]) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=len(closes), freq="D", tz="UTC", name="ts")
    c = np.asarray(closes, dtype="float64")
    return pd.DataFrame({"open": c, "high": c, "low": c, "close": c, "volume": np.ones(len(c))}, index=index)


BARS = _bars([100.0, 110.0, 99.0, 99.0, 120.0])


def test_labels_on_a_hand_made_series() -> None:
    labels = make_labels(BARS, 1)
    assert list(labels.columns) == ["fwd_log_ret_1", "fwd_dir_1"]
    assert labels.index.equals(BARS.index)
    expected = [math.log(1.1), math.log(0.9), 0.0, math.log(120 / 99), np.nan]
    np.testing.assert_allclose(labels["fwd_log_ret_1"], expected, rtol=1e-15)
    np.testing.assert_array_equal(labels["fwd_dir_1"], [1.0, 0.0, 0.0, 1.0, np.nan])

    two = make_labels(BARS, 2)
    np.testing.assert_allclose(
        two["fwd_log_ret_2"], [math.log(0.99), math.log(0.9), math.log(120 / 99), np.nan, np.nan], rtol=1e-15
    )
    np.testing.assert_array_equal(two["fwd_dir_2"], [0.0, 0.0, 1.0, np.nan, np.nan])


def test_labels_use_only_the_next_horizon_bars() -> None:
    base = make_labels(BARS, 2)
    changed = BARS.copy()
    changed.loc[changed.index[4], "close"] = 1.0  # only row 2 (t + 2 = 4) and row 4 may change
    other = make_labels(changed, 2)
    pd.testing.assert_frame_equal(other.iloc[:2], base.iloc[:2])
    assert other["fwd_log_ret_2"].to_numpy()[2] != base["fwd_log_ret_2"].to_numpy()[2]


def test_last_rows_are_nan_and_long_horizons() -> None:
    assert make_labels(BARS, 5).isna().all().all()
    assert make_labels(BARS, 4).notna().sum().tolist() == [1, 1]
    assert make_labels(BARS.iloc[:0], 1).shape == (0, 2)


@pytest.mark.parametrize("horizon", [0, -1, 1.5, True, "1"])
def test_bad_horizon(horizon: object) -> None:
    with pytest.raises(ValueError, match="horizon must be a whole number of bars >= 1"):
        make_labels(BARS, horizon)  # type: ignore[arg-type]


def test_align_drops_warmup_and_unlabelled_rows_without_filling() -> None:
    features = pd.DataFrame({"f": [np.nan, 1.0, 2.0, 3.0, 4.0]}, index=BARS.index)
    labels = make_labels(BARS, 2)
    x, y = align_features_labels(features, labels, warmup=1)
    assert x.index.equals(y.index)
    assert list(x.index) == list(BARS.index[1:3])
    assert x["f"].tolist() == [1.0, 2.0]
    np.testing.assert_allclose(y["fwd_log_ret_2"], [math.log(0.9), math.log(120 / 99)], rtol=1e-15)
    x0, y0 = align_features_labels(features, labels, warmup=0)
    assert np.isnan(x0["f"].iloc[0])  # never filled: warm-up is the caller's to state
    assert len(y0) == 3


def test_align_errors() -> None:
    labels = make_labels(BARS, 1)
    with pytest.raises(ValueError, match="warmup must be"):
        align_features_labels(labels, labels, warmup=-1)
    with pytest.raises(ValueError, match="not indexed alike"):
        align_features_labels(labels.iloc[1:], labels, warmup=0)


def test_align_real_sample_with_default_set() -> None:
    bars = parse_bars_csv("data/samples/googl_daily.csv").bars
    fs = get_feature_set("default")
    x, y = align_features_labels(build_features(bars, fs), make_labels(bars, 5), fs.warmup)
    assert len(x) == len(bars) - fs.warmup - 5
    assert x.index[0] == bars.index[fs.warmup] and x.index[-1] == bars.index[-6]
    assert not x.isna().to_numpy().any() and not y.isna().to_numpy().any()
    assert set(np.unique(y["fwd_dir_5"])) == {0.0, 1.0}


# ----------------------------------------------------------------------------- windows


def test_windows_shape_values_and_no_copy() -> None:
    X = np.arange(24, dtype="float64").reshape(8, 3)
    y = np.arange(8, dtype="float64") * 10
    w, labels = make_windows(X, 3, y)
    assert w.shape == (6, 3, 3)
    assert labels is not None and labels.shape == (6,)
    assert np.shares_memory(w, X)
    assert np.shares_memory(labels, y)
    for i in range(6):
        np.testing.assert_array_equal(w[i], X[i : i + 3])
        assert labels[i] == y[i + 2]  # label of the window's last row
        np.testing.assert_array_equal(w[i, -1], X[i + 2])
    assert not w.flags.writeable


def test_windows_edges() -> None:
    X = np.random.default_rng(0).normal(size=(5, 2))
    w, none = make_windows(X, 1)
    assert none is None and w.shape == (5, 1, 2)
    np.testing.assert_array_equal(w[:, 0, :], X)
    w, y = make_windows(X, 5, np.arange(5))
    assert w.shape == (1, 5, 2) and y is not None and y.tolist() == [4]
    w2, y2 = make_windows(X, 2, np.ones((5, 2)))
    assert w2.shape == (4, 2, 2) and y2 is not None and y2.shape == (4, 2)


@pytest.mark.parametrize("lookback", [0, 6, -1, 2.0])
def test_bad_lookback(lookback: object) -> None:
    with pytest.raises(ValueError, match="lookback"):
        make_windows(np.zeros((5, 2)), lookback)  # type: ignore[arg-type]


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="2-D"):
        make_windows(np.zeros(5), 2)
    with pytest.raises(ValueError, match="one row per row of X"):
        make_windows(np.zeros((5, 2)), 2, np.zeros(4))


def test_windows_on_aligned_features_never_see_past_their_label_row() -> None:
    bars = parse_bars_csv("data/samples/sp500_daily.csv").bars
    fs = get_feature_set("minimal")
    x, y = align_features_labels(build_features(bars, fs), make_labels(bars, 1), fs.warmup)
    X = x.to_numpy()
    w, labels = make_windows(X, 30, y["fwd_dir_1"].to_numpy())
    assert w.shape == (len(x) - 29, 30, x.shape[1])
    assert labels is not None and len(labels) == len(w)
    # window i ends at aligned row i + 29; its label is that row's forward direction
    i = 100
    np.testing.assert_array_equal(w[i, -1], X[i + 29])
    assert labels[i] == y["fwd_dir_1"].iloc[i + 29]
