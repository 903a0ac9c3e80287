"""Chronological and walk-forward splits: sizes, purge gaps, no label/window overlap, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import make_windows
from models.preprocessing import FeatureScaler
from models.splits import (
    Fold,
    LeakageError,
    Split,
    check_no_overlap,
    chronological_split,
    feature_rows,
    walk_forward_folds,
)


def _label_bars(block: slice, horizon: int) -> set[int]:
    """Bars (in sample coordinates) the labels of ``block`` are computed from: t .. t + h."""
    return {t + k for t in range(block.start, block.stop) for k in range(horizon + 1)}


def _window_bars(block: slice, lookback: int) -> set[int]:
    """Bars the feature windows of ``block`` read: t - L + 1 .. t."""
    return {t - k for t in range(block.start, block.stop) for k in range(lookback)}


def test_split_sizes_and_purge_exact() -> None:
    split = chronological_split(1000, val_fraction=0.15, test_fraction=0.15, purge=31)
    assert split.train == slice(0, 638)
    assert split.val == slice(669, 819)
    assert split.test == slice(850, 1000)
    assert split.val.start - split.train.stop == 31
    assert split.test.start - split.val.stop == 31
    assert split.sizes == {"train": 638, "val": 150, "test": 150}
    assert sum(split.sizes.values()) + 2 * 31 == 1000


def test_split_zero_purge_tiles_everything() -> None:
    split = chronological_split(100, val_fraction=0.2, test_fraction=0.1, purge=0)
    idx = np.arange(100)
    assert np.array_equal(np.concatenate([idx[split.train], idx[split.val], idx[split.test]]), idx)
    assert split.sizes == {"train": 70, "val": 20, "test": 10}


@pytest.mark.parametrize(("lookback", "horizon"), [(2, 1), (5, 3), (30, 1), (10, 20)])
def test_split_no_train_label_touches_later_windows(lookback: int, horizon: int) -> None:
    split = chronological_split(2000, val_fraction=0.15, test_fraction=0.15, purge=lookback + horizon)
    check_no_overlap(split, lookback, horizon)
    train_labels = _label_bars(split.train, horizon)
    val_labels = _label_bars(split.val, horizon)
    assert not train_labels & _window_bars(split.val, lookback)
    assert not train_labels & _window_bars(split.test, lookback)
    assert not val_labels & _window_bars(split.test, lookback)
    assert not train_labels & _label_bars(split.val, horizon)


def test_split_on_real_windows_train_rows_stop_before_val() -> None:
    """With make_windows, the rows of train windows and their label rows never reach a val window."""
    lookback, horizon = 4, 2
    n_rows = 200
    X = np.arange(n_rows, dtype=float)[:, None]  # the row number is the feature
    windows, _ = make_windows(X, lookback)
    split = chronological_split(len(windows), val_fraction=0.2, test_fraction=0.2, purge=lookback + horizon)
    train_rows = set(windows[split.train].ravel().astype(int))
    label_rows = {int(w[-1, 0]) + k for w in windows[split.train] for k in range(horizon + 1)}
    val_rows = set(windows[split.val].ravel().astype(int))
    test_rows = set(windows[split.test].ravel().astype(int))
    assert not (train_rows | label_rows) & val_rows
    assert not (train_rows | label_rows) & test_rows
    rows = feature_rows(split.train, lookback)
    assert set(range(rows.start, rows.stop)) == train_rows


def test_minimal_gap_passes_and_one_less_leaks() -> None:
    lookback, horizon = 5, 3
    need = lookback + horizon - 1
    ok = Split(train=slice(0, 50), val=slice(50 + need, 80), test=slice(80 + need, 120))
    check_no_overlap(ok, lookback, horizon)
    assert not _label_bars(ok.train, horizon) & _window_bars(ok.val, lookback)
    bad = Split(train=slice(0, 50), val=slice(50 + need - 1, 80), test=slice(80 + need, 120))
    assert _label_bars(bad.train, horizon) & _window_bars(bad.val, lookback)
    with pytest.raises(LeakageError, match="train leaks into val"):
        check_no_overlap(bad, lookback, horizon)
    bad_test = Split(train=slice(0, 50), val=slice(60, 80), test=slice(81, 120))
    with pytest.raises(ValueError, match="val leaks into test"):
        check_no_overlap(bad_test, lookback, horizon)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(50, 3000),
    lookback=st.integers(2, 40),
    horizon=st.integers(1, 10),
    val=st.floats(0.05, 0.3),
    test=st.floats(0.05, 0.3),
)
def test_split_property(n: int, lookback: int, horizon: int, val: float, test: float) -> None:
    purge = lookback + horizon
    try:
        split = chronological_split(n, val_fraction=val, test_fraction=test, purge=purge)
    except ValueError as err:
        assert "too few samples" in str(err)
        return
    assert split.train.start == 0 and split.test.stop == n
    assert split.val.start - split.train.stop == purge == split.test.start - split.val.stop
    assert split.sizes["train"] >= 2 * purge
    check_no_overlap(split, lookback, horizon)


def test_split_errors_name_the_numbers() -> None:
    with pytest.raises(ValueError, match=r"n_samples=100 gives train=8, val=15, test=15 with purge=31"):
        chronological_split(100, val_fraction=0.15, test_fraction=0.15, purge=31)
    with pytest.raises(ValueError, match="val, test >= 2"):
        chronological_split(10, val_fraction=0.1, test_fraction=0.1, purge=0)
    with pytest.raises(ValueError, match="val_fraction"):
        chronological_split(100, val_fraction=0.0, test_fraction=0.1, purge=0)
    with pytest.raises(ValueError, match="< 1"):
        chronological_split(100, val_fraction=0.6, test_fraction=0.5, purge=0)
    with pytest.raises(ValueError, match="purge"):
        chronological_split(100, val_fraction=0.1, test_fraction=0.1, purge=-1)
    with pytest.raises(ValueError, match="n_samples"):
        chronological_split(0, val_fraction=0.1, test_fraction=0.1, purge=0)
    with pytest.raises(ValueError, match="n_samples"):
        chronological_split(True, val_fraction=0.1, test_fraction=0.1, purge=0)


def test_dataclasses_validate_and_are_frozen() -> None:
    with pytest.raises(ValueError, match="time order"):
        Split(train=slice(0, 10), val=slice(5, 20), test=slice(30, 40))
    with pytest.raises(ValueError, match="step"):
        Split(train=slice(0, 10, 2), val=slice(20, 30), test=slice(40, 50))
    with pytest.raises(ValueError, match="explicit integer"):
        Fold(train=slice(None, 10), val=slice(20, 30))
    with pytest.raises(ValueError, match="after train"):
        Fold(train=slice(0, 30), val=slice(20, 40))
    fold = Fold(train=slice(0, 10), val=slice(20, 30))
    with pytest.raises(AttributeError):
        fold.train = slice(0, 5)  # type: ignore[misc]


def test_expanding_folds() -> None:
    folds = walk_forward_folds(819, folds=3, purge=31, mode="expanding", min_train_fraction=0.4)
    assert [f.val for f in folds] == [slice(360, 513), slice(513, 666), slice(666, 819)]
    assert [f.train for f in folds] == [slice(0, 329), slice(0, 482), slice(0, 635)]
    for f in folds:
        assert f.val.start - f.train.stop == 31
    check_no_overlap(folds, lookback=30, horizon=1)


def test_rolling_folds_fixed_length_and_sliding() -> None:
    folds = walk_forward_folds(819, folds=3, purge=31, mode="rolling", min_train_fraction=0.4)
    expanding = walk_forward_folds(819, folds=3, purge=31, mode="expanding", min_train_fraction=0.4)
    assert [f.val for f in folds] == [f.val for f in expanding]
    lengths = {f.sizes["train"] for f in folds}
    assert lengths == {329}
    starts = [f.train.start for f in folds]
    assert starts == sorted(starts) and starts[0] == 0 and starts[1] > 0
    assert [f.train.stop for f in folds] == [f.train.stop for f in expanding]
    check_no_overlap(folds, lookback=30, horizon=1)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(20, 2000),
    k=st.integers(1, 8),
    purge=st.integers(0, 40),
    frac=st.floats(0.1, 0.8),
    mode=st.sampled_from(["expanding", "rolling"]),
)
def test_folds_property(n: int, k: int, purge: int, frac: float, mode: str) -> None:
    try:
        folds = walk_forward_folds(n, folds=k, purge=purge, mode=mode, min_train_fraction=frac)  # type: ignore[arg-type]
    except ValueError as err:
        assert "too few samples" in str(err)
        return
    assert len(folds) == k
    assert folds[-1].val.stop == n
    for a, b in itertools.pairwise(folds):
        assert a.val.stop == b.val.start  # consecutive, non-overlapping
        assert a.train.stop < b.train.stop
    for f in folds:
        assert f.val.start - f.train.stop == purge
        assert f.sizes["val"] == folds[0].sizes["val"] >= 2
        assert f.sizes["train"] >= max(2 * purge, 2)
    if purge >= 2:
        check_no_overlap(folds, lookback=purge - 1, horizon=1)


def test_folds_errors() -> None:
    with pytest.raises(ValueError, match="too few samples for 3 walk-forward folds"):
        walk_forward_folds(100, folds=3, purge=31)
    with pytest.raises(ValueError, match="mode"):
        walk_forward_folds(1000, folds=3, purge=5, mode="sliding")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="folds"):
        walk_forward_folds(1000, folds=0, purge=5)
    with pytest.raises(ValueError, match="min_train_fraction"):
        walk_forward_folds(1000, folds=3, purge=5, min_train_fraction=1.0)


def test_check_no_overlap_on_folds_and_bad_input() -> None:
    leaky = [Fold(train=slice(0, 100), val=slice(101, 150))]
    with pytest.raises(LeakageError, match="fold 0 train leaks into fold 0 val"):
        check_no_overlap(leaky, lookback=10, horizon=1)
    check_no_overlap(Fold(train=slice(0, 100), val=slice(110, 150)), lookback=10, horizon=1)
    with pytest.raises(ValueError, match="expected a Fold"):
        check_no_overlap([slice(0, 3)], lookback=2, horizon=1)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="lookback"):
        check_no_overlap(leaky, lookback=0, horizon=1)


# ---------------------------------------------------------------- scaler: fitted on train rows only


def _rows(n: int = 300, f: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(loc=[1.0, -2.0, 50.0, 0.0][:f], scale=[0.5, 3.0, 10.0, 1e-3][:f], size=(n, f))


def test_scaler_fitted_on_train_rows_only() -> None:
    lookback, horizon = 10, 1
    X = _rows()
    windows, _ = make_windows(X, lookback)
    split = chronological_split(len(windows), val_fraction=0.2, test_fraction=0.2, purge=lookback + horizon)
    rows = feature_rows(split.train, lookback)
    scaler = FeatureScaler().fit(X[rows])
    mean, scale = scaler.mean_.copy(), scaler.scale_.copy()  # type: ignore[union-attr]
    X2 = X.copy()
    X2[rows.stop :] = 1e6  # change every row after the train windows (val, test, purges)
    scaler2 = FeatureScaler().fit(X2[rows])
    np.testing.assert_array_equal(scaler2.mean_, mean)
    np.testing.assert_array_equal(scaler2.scale_, scale)
    Z = scaler.transform(X[rows])
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(mean, X[rows].mean(axis=0))
    assert not np.allclose(mean, X.mean(axis=0))  # not the statistics of all rows


def test_scaler_windows_zero_variance_and_clip() -> None:
    X = _rows(200, 3)
    X[:, 1] = 0.1  # constant column
    scaler = FeatureScaler(clip=3.0).fit(X)
    assert scaler.scale_[1] == 1.0  # type: ignore[index]
    Z = scaler.transform(X)
    assert np.all(Z[:, 1] == 0.0)
    assert np.abs(Z).max() <= 3.0
    windows, _ = make_windows(X, 5)
    Zw = scaler.transform(windows)
    assert Zw.shape == windows.shape
    np.testing.assert_array_equal(Zw[:, -1, :], Z[4:])
    outlier = X[:1].copy()
    outlier[0, 0] = 1e9
    assert scaler.transform(outlier)[0, 0] == 3.0
    assert FeatureScaler(clip=None).fit(X).transform(outlier)[0, 0] > 1e6


def test_scaler_dataframe_names_and_roundtrip() -> None:
    import json

    import pandas as pd

    frame = pd.DataFrame(_rows(100, 3), columns=["rsi_14", "log_ret_1", "atr_14"])
    scaler = FeatureScaler().fit(frame)
    assert scaler.feature_names == ["rsi_14", "log_ret_1", "atr_14"]
    out = scaler.transform(frame)
    assert isinstance(out, pd.DataFrame) and out.index.equals(frame.index)
    with pytest.raises(ValueError, match="other order"):
        scaler.transform(frame[["log_ret_1", "rsi_14", "atr_14"]])
    with pytest.raises(ValueError, match=r"missing \['atr_14'\]"):
        scaler.transform(frame[["rsi_14", "log_ret_1"]].assign(x=1.0))
    restored = FeatureScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored.feature_names == scaler.feature_names and restored.clip == scaler.clip
    np.testing.assert_array_equal(restored.transform(frame.to_numpy()), out.to_numpy())
    with pytest.raises(ValueError, match="format"):
        FeatureScaler.from_dict({"mean": [0.0]})


def test_scaler_errors() -> None:
    X = _rows(50, 3)
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match="column 2"):
        FeatureScaler().fit(X)
    import pandas as pd

    with pytest.raises(ValueError, match="column 2 \\('c'\\)"):
        FeatureScaler().fit(pd.DataFrame(X, columns=["a", "b", "c"]))
    with pytest.raises(ValueError, match="not fitted"):
        FeatureScaler().transform(X)
    with pytest.raises(ValueError, match="2-D"):
        FeatureScaler().fit(X[None])
    with pytest.raises(ValueError, match="features on its last axis"):
        FeatureScaler().fit(_rows(50, 3)).transform(_rows(5, 2))
    with pytest.raises(ValueError, match="clip"):
        FeatureScaler(clip=0.0)
