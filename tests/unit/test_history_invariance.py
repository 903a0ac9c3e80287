"""History invariance: features on the last ``min_history`` bars equal the full-history ones.

Property tests on the three shipped samples at random cut points, for every indicator kind (with
drawn parameters) and every shipped feature set; plus the proofs that the check can fail (a
cumulative level, a horizon that stops at the warm-up) and that a serving set refuses ``obv``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import features.spec as spec_module
from features import FeatureSet, IndicatorSpec, build_features, feature_set_names, get_feature_set
from features.history import (
    DECAY_TOLERANCE,
    INVARIANCE_RTOL,
    decay_bars,
    history_mismatch,
    indicator_horizon,
)
from providers.csv import parse_bars_csv

SAMPLES = ("sp500_daily", "googl_daily", "eurusd_hourly")
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "data" / "samples"
EXPONENTIAL = ("ema", "rsi", "atr", "adx", "macd")


@cache
def _bars(name: str) -> pd.DataFrame:
    return parse_bars_csv(SAMPLES_DIR / f"{name}.csv").bars


def _set(*specs: IndicatorSpec, serving: bool = True) -> FeatureSet:
    return FeatureSet(name="t", indicators=list(specs), serving=serving)


def _mismatch(bars: pd.DataFrame, fs: FeatureSet, cut: int, horizon: int) -> dict[str, float]:
    """Mismatches of features built from bar ``cut`` on, from the ``horizon``-th bar of the cut."""
    full = build_features(bars, fs)
    part = build_features(bars.iloc[cut:], fs)
    return history_mismatch(full, part, from_row=horizon - 1)


# Parameters drawn per kind: small and large windows, both ratio settings, every source.
_INT = st.integers(min_value=2, max_value=60)
_ALL_SOURCES = ["open", "high", "low", "close", "volume", "ret", "log_ret"]
_PARAMS: dict[str, Any] = {
    "sma": st.fixed_dictionaries({"period": _INT, "ratio": st.booleans()}),
    "ema": st.fixed_dictionaries({"period": _INT, "ratio": st.booleans()}),
    "rsi": st.fixed_dictionaries({"period": _INT}),
    "macd": st.tuples(st.integers(2, 20), st.integers(1, 30), st.integers(1, 15), st.booleans()).map(
        lambda t: {"fast": t[0], "slow": t[0] + t[1], "signal": t[2], "ratio": t[3]}
    ),
    "bollinger": st.fixed_dictionaries(
        {"period": _INT, "k": st.sampled_from([1.0, 2.0, 2.5]), "ratio": st.booleans()}
    ),
    "atr": st.fixed_dictionaries({"period": _INT, "ratio": st.booleans()}),
    "obv_zscore": st.fixed_dictionaries({"window": _INT}),
    "roc": st.fixed_dictionaries({"period": _INT}),
    "stoch": st.fixed_dictionaries(
        {"fastk": st.integers(1, 30), "slowk": st.integers(1, 10), "slowd": st.integers(1, 10)}
    ),
    "adx": st.fixed_dictionaries({"period": _INT}),
    "cci": st.fixed_dictionaries({"period": _INT}),
    "willr": st.fixed_dictionaries({"period": _INT}),
    "mfi": st.fixed_dictionaries({"period": _INT}),
    "returns": st.fixed_dictionaries({"n": st.integers(1, 20)}),
    "log_returns": st.fixed_dictionaries({"n": st.integers(1, 20)}),
    "rolling_volatility": st.fixed_dictionaries({"window": _INT}),
    "rolling_zscore": st.fixed_dictionaries({"window": _INT, "source": st.sampled_from(_ALL_SOURCES)}),
    "rolling_skew": st.fixed_dictionaries(
        {"window": st.integers(3, 60), "source": st.sampled_from(["close", "volume", "ret", "log_ret"])}
    ),
    "rolling_kurt": st.fixed_dictionaries(
        {"window": st.integers(4, 60), "source": st.sampled_from(["close", "volume", "ret", "log_ret"])}
    ),
    "volume_zscore": st.fixed_dictionaries({"window": _INT}),
    "calendar_features": st.just({}),
}


def test_every_kind_but_obv_has_a_horizon_and_a_property_test() -> None:
    kinds = set(spec_module._KINDS)
    assert kinds - {"obv"} == set(_PARAMS)
    for kind in kinds - {"obv"}:
        assert IndicatorSpec(kind=kind).min_history is not None  # type: ignore[arg-type]
    assert IndicatorSpec(kind="obv").min_history is None


@pytest.mark.parametrize("kind", sorted(_PARAMS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_kind_is_history_invariant_at_random_cuts(kind: str, data: st.DataObject) -> None:
    spec = IndicatorSpec(kind=kind, params=data.draw(_PARAMS[kind], label="params"))  # type: ignore[arg-type]
    fs = _set(spec)
    horizon = fs.min_history
    sample = data.draw(st.sampled_from(SAMPLES), label="sample")
    bars = _bars(sample)
    cut = data.draw(st.integers(1, len(bars) - horizon - 1), label="cut")
    assert _mismatch(bars, fs, cut, horizon) == {}, (spec, sample, cut, horizon)


@pytest.mark.parametrize("set_name", feature_set_names())
@pytest.mark.parametrize("sample", SAMPLES)
def test_shipped_sets_are_history_invariant_at_random_cuts(set_name: str, sample: str) -> None:
    fs = get_feature_set(set_name)
    bars = _bars(sample)
    rng = np.random.default_rng(abs(hash((set_name, sample))) % 2**32)
    for cut in rng.integers(1, len(bars) - fs.min_history - 1, size=6):
        assert _mismatch(bars, fs, int(cut), fs.min_history) == {}, (set_name, sample, cut)
    # and the served case: exactly the last min_history bars give the last full-history row
    full = build_features(bars, fs)
    last = build_features(bars.iloc[-fs.min_history :], fs)
    assert history_mismatch(full, last.iloc[-1:]) == {}


@pytest.mark.parametrize("sample", SAMPLES)
def test_the_check_fails_for_a_cumulative_level(sample: str) -> None:
    bars = _bars(sample)
    fs = _set(IndicatorSpec(kind="obv"), serving=False)
    assert "obv" in _mismatch(bars, fs, 100, 500)


@pytest.mark.parametrize("kind", EXPONENTIAL)
def test_the_check_fails_for_exponential_kinds_cut_at_their_warmup(kind: str) -> None:
    # Right after the warm-up an exponential indicator still remembers its seed: the decay
    # term of its horizon is what makes it invariant.
    fs = _set(IndicatorSpec(kind=kind))  # type: ignore[arg-type]
    bars = _bars("sp500_daily")
    assert fs.min_history > fs.warmup + 50
    assert _mismatch(bars, fs, 1000, fs.warmup + 1) != {}


def test_horizons_of_windowed_kinds_are_exact() -> None:
    # One bar fewer than the horizon leaves the first compared row undefined or different.
    bars = _bars("googl_daily")
    for kind, params in [("sma", {"period": 20}), ("mfi", {"period": 14}), ("stoch", {}), ("roc", {})]:
        fs = _set(IndicatorSpec(kind=kind, params=params))  # type: ignore[arg-type]
        h = fs.min_history
        assert _mismatch(bars, fs, 500, h) == {}
        assert _mismatch(bars, fs, 500, h - 1) != {}, kind


def test_decay_bars() -> None:
    assert decay_bars(1.0) == 0
    k = decay_bars(2 / 21)
    assert (1 - 2 / 21) ** k <= DECAY_TOLERANCE < (1 - 2 / 21) ** (k - 1)
    k2 = decay_bars(1 / 14, order=2)
    assert (k2 + 1) * (13 / 14) ** k2 <= DECAY_TOLERANCE < k2 * (13 / 14) ** (k2 - 1)
    with pytest.raises(ValueError, match="alpha"):
        decay_bars(0.0)
    with pytest.raises(ValueError, match="no history horizon"):
        indicator_horizon("nope", {})


def test_default_set_min_history_and_version() -> None:
    fs = get_feature_set("default")
    assert "obv" not in fs.columns() and "obv_zscore_20" in fs.columns()
    assert fs.min_history == max(spec.min_history or 0 for spec in fs.indicators)
    assert fs.min_history > fs.warmup
    assert INVARIANCE_RTOL == 1e-6


def test_a_serving_set_refuses_obv_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"indicator 'obv'.*obv_zscore.*serving: false"):
        _set(IndicatorSpec(kind="rsi"), IndicatorSpec(kind="obv"))
    path = tmp_path / "sets.yaml"
    path.write_text("feature_sets: {s: {indicators: [{kind: rsi}, {kind: obv}]}}\n")
    with pytest.raises(ValueError, match=r"feature set 's'.*'obv'"):
        get_feature_set("s", path)
    path.write_text("feature_sets: {s: {serving: false, indicators: [{kind: rsi}, {kind: obv}]}}\n")
    research = get_feature_set("s", path)
    assert research.columns() == ["rsi_14", "obv"]
    with pytest.raises(ValueError, match="research only"):
        _ = research.min_history
    serving = _set(IndicatorSpec(kind="rsi"), IndicatorSpec(kind="obv_zscore"))
    assert serving.min_history == IndicatorSpec(kind="rsi").min_history


@pytest.mark.parametrize("kind", sorted(_PARAMS))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_declared_warmup_is_the_first_complete_row(kind: str, data: st.DataObject) -> None:
    # FeatureSet.warmup is declared per kind (TA-Lib's lookback); the build must agree exactly.
    # A continuous random walk (real prices repeat, and a 2-bar z-score of equal prices is NaN).
    spec = IndicatorSpec(kind=kind, params=data.draw(_PARAMS[kind], label="params"))  # type: ignore[arg-type]
    fs = _set(spec)
    rng = np.random.default_rng(5)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 600)))
    open_ = np.concatenate([[100.0], close[:-1]])
    walk = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1.0 + rng.uniform(0.001, 0.01, 600)),
            "low": np.minimum(open_, close) * (1.0 - rng.uniform(0.001, 0.01, 600)),
            "close": close,
            "volume": rng.uniform(1e5, 1e6, 600),
        },
        index=pd.date_range("2000-01-03", periods=600, freq="D", tz="UTC", name="ts"),
    )
    frame = build_features(walk, fs)
    complete = ~frame.isna().to_numpy().any(axis=1)
    assert int(np.argmax(complete)) == fs.warmup, spec
    assert complete[fs.warmup :].all()
