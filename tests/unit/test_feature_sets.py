"""Feature sets: configuration, versioning, column names, warm-up, the real samples, bounds."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import features.spec as spec_module
from expectations.runner import validate_features
from features import (
    FEATURE_CODE_VERSION,
    FeatureSet,
    IndicatorSpec,
    build_features,
    feature_set_names,
    get_feature_set,
)
from features import indicators as ind
from providers.csv import parse_bars_csv

SAMPLES = {"sp500_daily": "1d", "googl_daily": "1d", "eurusd_hourly": "1h"}

DEFAULT_COLUMNS = [
    "rsi_14",
    "macd_ratio_12_26_9",
    "macd_signal_ratio_12_26_9",
    "macd_hist_ratio_12_26_9",
    "bb_upper_ratio_20_2",
    "bb_middle_ratio_20_2",
    "bb_lower_ratio_20_2",
    "bb_width_20_2",
    "bb_pctb_20_2",
    "atr_ratio_14",
    "obv_zscore_20",
    "roc_10",
    "stoch_k_5_3_3",
    "stoch_d_5_3_3",
    "adx_14",
    "cci_14",
    "williams_r_14",
    "mfi_14",
    "sma_ratio_20",
    "ema_ratio_20",
    "ret_1",
    "log_ret_1",
    "volatility_20",
    "zscore_close_20",
    "skew_log_ret_20",
    "kurt_log_ret_20",
    "volume_zscore_20",
    "day_of_week",
]


def _bars(name: str) -> pd.DataFrame:
    return parse_bars_csv(f"data/samples/{name}.csv").bars


@pytest.fixture(scope="module")
def samples() -> dict[str, pd.DataFrame]:
    return {name: _bars(name) for name in SAMPLES}


def _one(kind: str, **params: object) -> FeatureSet:
    spec = IndicatorSpec(kind=kind, params=params)  # type: ignore[arg-type]
    return FeatureSet(name="t", indicators=[spec], serving=spec.min_history is not None)


# ----------------------------------------------------------------------------- configuration


def test_shipped_sets_and_default_columns() -> None:
    assert feature_set_names() == ["default", "minimal"]
    default = get_feature_set("default")
    assert default.columns("1d") == DEFAULT_COLUMNS
    assert default.columns("1h") == [*DEFAULT_COLUMNS, "hour"]
    minimal = get_feature_set("minimal")
    assert set(minimal.columns("1h")) < set(default.columns("1h"))
    assert default.warmup == 33  # MACD 12/26/9: 25 + 8 rows (TA-Lib lookback)
    assert minimal.warmup == 33


def test_default_names_match_the_features_suite_patterns() -> None:
    cols = get_feature_set("default").columns("1h")
    assert {"rsi_14", "stoch_k_5_3_3", "stoch_d_5_3_3", "mfi_14", "williams_r_14"} <= set(cols)
    assert {"atr_ratio_14", "volatility_20", "bb_width_20_2"} <= set(cols)
    assert all(c == c.lower() and " " not in c for c in cols)


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("sma", {"period": 20}, ["sma_20"]),
        ("sma", {"period": 20, "ratio": True}, ["sma_ratio_20"]),
        ("ema", {}, ["ema_30"]),
        ("rsi", {}, ["rsi_14"]),
        ("macd", {}, ["macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"]),
        (
            "bollinger",
            {"k": 2.5},
            ["bb_upper_20_2p5", "bb_middle_20_2p5", "bb_lower_20_2p5", "bb_width_20_2p5", "bb_pctb_20_2p5"],
        ),
        ("atr", {}, ["atr_14"]),
        ("obv", {}, ["obv"]),
        ("obv_zscore", {}, ["obv_zscore_20"]),
        ("roc", {}, ["roc_10"]),
        ("stoch", {"fastk": 14}, ["stoch_k_14_3_3", "stoch_d_14_3_3"]),
        ("adx", {}, ["adx_14"]),
        ("cci", {"period": 20}, ["cci_20"]),
        ("willr", {}, ["williams_r_14"]),
        ("mfi", {}, ["mfi_14"]),
        ("returns", {"n": 5}, ["ret_5"]),
        ("log_returns", {}, ["log_ret_1"]),
        ("rolling_volatility", {}, ["volatility_20"]),
        ("rolling_zscore", {}, ["zscore_close_20"]),
        ("rolling_skew", {"source": "close", "window": 10}, ["skew_close_10"]),
        ("rolling_kurt", {}, ["kurt_log_ret_20"]),
        ("volume_zscore", {}, ["volume_zscore_20"]),
        ("calendar_features", {}, ["day_of_week", "hour"]),
    ],
)
def test_column_names_carry_parameters(kind: str, params: dict[str, object], expected: list[str]) -> None:
    assert _one(kind, **params).columns("1h") == expected


def test_name_override() -> None:
    fs = FeatureSet(
        name="t",
        indicators=[
            IndicatorSpec(kind="rsi", params={"period": 7}, name="rsi_fast"),
            IndicatorSpec(kind="stoch", name="stoch_slow"),
        ],
    )
    assert fs.columns() == ["rsi_fast", "stoch_slow_k", "stoch_slow_d"]
    with pytest.raises(ValueError, match="snake case"):
        IndicatorSpec(kind="rsi", name="RSI Fast")


def test_params_are_resolved_with_defaults_and_types() -> None:
    spec = IndicatorSpec(kind="bollinger", params={"k": 2})
    assert spec.params == {"period": 20, "k": 2.0, "ratio": False}
    assert isinstance(spec.params["k"], float)
    assert IndicatorSpec(kind="rsi", params={"period": 14.0}).params == {"period": 14}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "rsii"}, r"unknown indicator kind 'rsii': use one of sma, ema, rsi"),
        ({"kind": "rsi", "params": {"window": 14}}, r"rsi has no parameter 'window'; it accepts period"),
        ({"kind": "obv", "params": {"period": 3}}, r"obv takes no parameters"),
        ({"kind": "rsi", "params": {"period": 1}}, r"rsi parameter 'period' must be >= 2"),
        ({"kind": "rsi", "params": {"period": 14.5}}, r"whole number of bars"),
        ({"kind": "rsi", "params": {"period": "14"}}, r"must be a number"),
        ({"kind": "sma", "params": {"ratio": "yes"}}, r"must be true or false"),
        ({"kind": "bollinger", "params": {"k": 0}}, r"must be a finite number > 0"),
        ({"kind": "rolling_zscore", "params": {"source": "vwap"}}, r"one of open, high, low, close"),
        ({"kind": "macd", "params": {"fast": 26, "slow": 12}}, r"macd needs fast < slow"),
    ],
)
def test_bad_indicator_specs_say_what_works(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IndicatorSpec.model_validate(data)


def test_repeated_column_is_rejected() -> None:
    with pytest.raises(ValueError, match="builds column 'rsi_14' twice"):
        FeatureSet(name="t", indicators=[IndicatorSpec(kind="rsi"), IndicatorSpec(kind="rsi")])


def test_unknown_set_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"unknown feature set 'nope' in .*feature_sets.yaml: use one of default"
    ):
        get_feature_set("nope")
    with pytest.raises(ValueError, match="does not exist"):
        get_feature_set("default", tmp_path / "missing.yaml")
    bad = tmp_path / "sets.yaml"
    bad.write_text("feature_sets:\n  mine:\n    indicators:\n      - {kind: rsi, params: {period: 0}}\n")
    with pytest.raises(
        ValueError, match=r"sets.yaml: feature set 'mine': indicators.0: rsi parameter 'period'"
    ):
        get_feature_set("mine", bad)
    bad.write_text("feature_sets:\n  mine:\n    indicators:\n      - {kind: vwap}\n")
    with pytest.raises(ValueError, match=r"sets.yaml: feature set 'mine'.*unknown indicator kind 'vwap'"):
        get_feature_set("mine", bad)
    bad.write_text("sets: []\n")
    with pytest.raises(ValueError, match="must hold a mapping 'feature_sets"):
        feature_set_names(bad)
    bad.write_text(
        "feature_sets: {a: {indicators: [{kind: rsi}]}, b: {serving: false, indicators: [{kind: obv}]}}\n"
    )
    assert feature_set_names(bad) == ["a", "b"]
    assert get_feature_set("b", bad).columns() == ["obv"]


# ----------------------------------------------------------------------------- versioning


def test_version_is_a_hash_of_the_config_and_code_version() -> None:
    fs = get_feature_set("default")
    assert len(fs.version) == 12 and int(fs.version, 16) >= 0
    assert fs.version == hashlib.sha256(fs.canonical_json().encode()).hexdigest()[:12]
    assert FEATURE_CODE_VERSION in fs.canonical_json()


def test_version_changes_with_params_and_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    base = _one("macd", fast=12, slow=26, signal=9)
    assert _one("macd", signal=9, slow=26, fast=12).version == base.version  # dict order
    assert _one("macd").version == base.version  # defaults spelled out or not
    assert _one("macd", fast=10).version != base.version
    assert _one("macd", ratio=True).version != base.version
    renamed = FeatureSet(name="t", indicators=[IndicatorSpec(kind="macd", name="m")])
    assert renamed.version != base.version
    described = FeatureSet(name="t", description="words", indicators=[IndicatorSpec(kind="macd")])
    assert described.version == base.version
    before = base.version
    monkeypatch.setattr(spec_module, "FEATURE_CODE_VERSION", FEATURE_CODE_VERSION + ".next")
    assert _one("macd").version != before
    assert base.version != before  # the version is computed, not stored


def test_version_is_stable_across_processes() -> None:
    here = get_feature_set("default").version
    code = "from features import get_feature_set; print(get_feature_set('default').version)"
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        assert out.stdout.strip() == here


# ----------------------------------------------------------------------------- warm-up


@pytest.mark.parametrize(
    ("kind", "params", "warmup"),
    [
        ("sma", {"period": 20}, 19),
        ("ema", {"period": 20}, 19),
        ("rsi", {}, 14),
        ("macd", {}, 33),
        ("bollinger", {}, 19),
        ("atr", {}, 14),
        ("obv", {}, 0),
        ("obv_zscore", {}, 19),
        ("roc", {}, 10),
        ("stoch", {}, 8),
        ("adx", {}, 27),
        ("cci", {}, 13),
        ("willr", {}, 13),
        ("mfi", {}, 14),
        ("returns", {"n": 3}, 3),
        ("rolling_volatility", {}, 20),
        ("rolling_zscore", {}, 19),
        ("rolling_skew", {}, 20),
        ("rolling_kurt", {"source": "close"}, 19),
        ("volume_zscore", {}, 19),
        ("calendar_features", {}, 0),
    ],
)
def test_warmup_matches_talib_lookback(kind: str, params: dict[str, object], warmup: int) -> None:
    assert _one(kind, **params).warmup == warmup


@pytest.mark.parametrize("set_name", ["default", "minimal"])
@pytest.mark.parametrize("sample", list(SAMPLES))
def test_warmup_is_exact_on_real_samples(
    samples: dict[str, pd.DataFrame], set_name: str, sample: str
) -> None:
    fs = get_feature_set(set_name)
    frame = build_features(samples[sample], fs)
    assert frame.iloc[fs.warmup - 1].isna().any()
    assert not frame.iloc[fs.warmup :].isna().to_numpy().any()


# ----------------------------------------------------------------------------- building


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_default_set_on_real_samples_passes_the_features_suite(
    samples: dict[str, pd.DataFrame], sample: str
) -> None:
    fs = get_feature_set("default")
    bars = samples[sample]
    frame = build_features(bars, fs)
    assert frame.index.equals(bars.index)
    assert list(frame.columns) == fs.columns(SAMPLES[sample])
    assert (frame.dtypes == "float64").all()
    assert np.isfinite(frame.iloc[fs.warmup :].to_numpy()).all()
    report = validate_features(frame, fs.warmup)
    assert report.failures == {}
    assert report.success, [o for o in report.outcomes if not o.success]


def test_values_follow_the_indicators(samples: dict[str, pd.DataFrame]) -> None:
    bars = samples["googl_daily"]
    frame = build_features(bars, get_feature_set("default"))
    close = bars["close"].to_numpy()
    np.testing.assert_allclose(frame["sma_ratio_20"], ind.sma(close, 20) / close, rtol=1e-14)
    np.testing.assert_allclose(frame["rsi_14"], ind.rsi(close, 14), rtol=0)
    upper, middle, lower = ind.bollinger(close, 20, 2.0)
    np.testing.assert_allclose(frame["bb_width_20_2"], (upper - lower) / middle, rtol=1e-14)
    np.testing.assert_allclose(frame["bb_pctb_20_2"], (close - lower) / (upper - lower), rtol=1e-12)
    np.testing.assert_allclose(frame["skew_log_ret_20"], ind.rolling_skew(ind.log_returns(close), 20), rtol=0)
    assert frame["day_of_week"].iloc[0] == bars.index[0].day_of_week
    raw = build_features(bars, _one("macd"))
    np.testing.assert_allclose(frame["macd_hist_ratio_12_26_9"], raw["macd_hist_12_26_9"] / close, rtol=1e-14)


def test_flat_bollinger_window_has_pctb_one_half() -> None:
    index = pd.date_range("2024-01-01", periods=30, freq="D", tz="UTC", name="ts")
    ones = np.ones(30)
    bars = pd.DataFrame({"open": ones, "high": ones, "low": ones, "close": ones, "volume": ones}, index=index)
    frame = build_features(bars, _one("bollinger"))
    assert (frame["bb_pctb_20_2"].iloc[19:] == 0.5).all()
    assert (frame["bb_width_20_2"].iloc[19:] == 0.0).all()
    assert frame["bb_pctb_20_2"].iloc[:19].isna().all()


def test_calendar_columns_follow_the_timeframe(samples: dict[str, pd.DataFrame]) -> None:
    fs = _one("calendar_features")
    hourly = samples["eurusd_hourly"]
    frame = build_features(hourly, fs)
    assert list(frame.columns) == ["day_of_week", "hour"]
    assert (frame["hour"].to_numpy() == pd.DatetimeIndex(hourly.index).hour).all()
    assert list(build_features(samples["sp500_daily"], fs).columns) == ["day_of_week"]
    assert list(build_features(hourly.iloc[:1], fs, timeframe="1d").columns) == ["day_of_week"]
    assert list(build_features(hourly.iloc[:0], fs).columns) == ["day_of_week"]


def test_future_bars_never_change_past_features(samples: dict[str, pd.DataFrame]) -> None:
    """Labels (future closes) cannot leak: altering bars after t leaves rows <= t unchanged."""
    fs = get_feature_set("default")
    bars = samples["sp500_daily"]
    base = build_features(bars, fs)
    rng = np.random.default_rng(7)
    for t in (fs.warmup, 1000, 4000):
        altered = bars.copy()
        future = altered.iloc[t + 1 :]
        shuffled = future.to_numpy()[rng.permutation(len(future))]
        altered.iloc[t + 1 :] = shuffled * rng.uniform(0.5, 2.0)
        altered.loc[altered.index[t + 1 :], "high"] = altered.iloc[t + 1 :].max(axis=1)
        other = build_features(altered, fs)
        pd.testing.assert_frame_equal(other.iloc[: t + 1], base.iloc[: t + 1], check_exact=True)
        assert not other.iloc[t + 1 :].equals(base.iloc[t + 1 :])


def test_bad_bars_are_rejected(samples: dict[str, pd.DataFrame]) -> None:
    fs = get_feature_set("minimal")
    bars = samples["googl_daily"].iloc[:100]
    with pytest.raises(ValueError, match="lack column"):
        build_features(bars.drop(columns="volume"), fs)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        build_features(bars.reset_index(drop=True), fs)
    with pytest.raises(ValueError, match="sorted"):
        build_features(bars.iloc[::-1], fs)
    broken = bars.copy()
    broken.loc[broken.index[50], "close"] = 0.0
    with pytest.raises(ValueError, match="close must be positive"):
        build_features(broken, fs)


# ----------------------------------------------------------------------------- property


@st.composite
def ohlcv(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=34, max_value=120))
    unit = st.floats(min_value=0.0, max_value=1.0)
    rets = draw(arrays(np.float64, n, elements=st.floats(min_value=-0.2, max_value=0.2)))
    gaps = draw(arrays(np.float64, n, elements=st.floats(min_value=-0.05, max_value=0.05)))
    ups = draw(arrays(np.float64, n, elements=unit)) * 0.05
    downs = draw(arrays(np.float64, n, elements=unit)) * 0.05
    volume = draw(arrays(np.float64, n, elements=st.floats(min_value=0.0, max_value=1e9)))
    start = draw(st.floats(min_value=0.01, max_value=1e5))
    close = start * np.exp(np.cumsum(rets))
    open_ = np.concatenate([[start], close[:-1]]) * np.exp(gaps)
    high = np.maximum(open_, close) * (1.0 + ups)
    low = np.minimum(open_, close) * (1.0 - downs)
    freq = draw(st.sampled_from(["1D", "1h"]))
    index = pd.date_range("2021-03-01", periods=n, freq=freq, tz="UTC", name="ts")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


BOUNDS = {
    r"^(rsi|stoch|mfi|adx)($|_)": (0.0, 100.0),
    r"^williams_r($|_)": (-100.0, 0.0),
    r"^(atr|volatility|bb_width)($|_)": (0.0, np.inf),
    r"^day_of_week$": (0.0, 6.0),
    r"^hour$": (0.0, 23.0),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bars=ohlcv())
def test_default_set_bounded_and_finite_on_random_ohlcv(bars: pd.DataFrame) -> None:
    fs = get_feature_set("default")
    frame = build_features(bars, fs)
    values = frame.to_numpy()
    assert not np.isinf(values).any(), frame.columns[np.isinf(values).any(axis=0)].tolist()
    checked = 0
    for pattern, (low, high) in BOUNDS.items():
        cols = frame.filter(regex=pattern)
        v = cols.to_numpy()
        v = v[~np.isnan(v)]
        assert ((v >= low) & (v <= high)).all(), (pattern, v.min(), v.max())
        checked += cols.shape[1]
    assert checked >= 9
