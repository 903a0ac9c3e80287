"""Input drift statistics (models.drift): PSI, KS and the verdicts on known distributions."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from models.drift import (
    DRIFT,
    SHIFT,
    STABLE,
    TOO_FEW,
    DriftReference,
    FeatureReference,
    drift_report,
    psi,
)

THRESHOLDS = {"psi_warn": 0.1, "psi_alert": 0.25, "ks_pvalue": 0.01, "min_samples": 30}


def _training(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    """Three features of different shapes: normal, skewed (log-normal), uniform."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "normal": rng.normal(0.5, 2.0, n),
            "skewed": rng.lognormal(0.0, 0.75, n),
            "uniform": rng.uniform(-1.0, 3.0, n),
        }
    )


def test_psi_by_hand() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty bin is floored at eps: (0.1 - 1e-4) ln(0.1 / 1e-4) + (0.4 - 0.5) ln(0.4 / 0.5)
    expected = (0.1 - 1e-4) * math.log(0.1 / 1e-4) + (0.4 - 0.5) * math.log(0.4 / 0.5)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(expected)
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1], eps=1e-2) == pytest.approx(
        (0.1 - 1e-2) * math.log(0.1 / 1e-2) + (0.4 - 0.5) * math.log(0.4 / 0.5)
    )
    with pytest.raises(ValueError, match="same"):
        psi([0.5, 0.5], [1.0])


def test_reference_holds_deciles_fractions_and_a_sample() -> None:
    values = np.arange(1000, dtype=float)
    ref = FeatureReference.from_values("x", values)
    assert len(ref.edges) == 9 and list(ref.edges) == sorted(ref.edges)
    assert ref.expected == pytest.approx([0.1] * 10)
    assert ref.sample == tuple(values) and ref.n == 1000  # all values when <= 5000
    big = FeatureReference.from_values("x", np.arange(20_000, dtype=float))
    assert len(big.sample) == 5000 and list(big.sample) == sorted(big.sample)
    assert big.sample[0] < 5 and big.sample[-1] > 19_995  # evenly spaced quantiles span the range
    assert FeatureReference.from_values("x", np.arange(20_000, dtype=float)) == big  # deterministic
    # repeated values: fewer, distinct edges; fractions from the data, summing to 1
    steps = FeatureReference.from_values("dow", np.tile(np.arange(5.0), 200))
    assert steps.edges == (1.0, 2.0, 3.0, 4.0) and steps.expected == pytest.approx([0.2] * 5)
    constant = FeatureReference.from_values("c", np.full(50, 3.0))
    assert constant.edges == () and constant.expected == (1.0,)
    with pytest.raises(ValueError, match="no finite"):
        FeatureReference.from_values("x", [np.nan, np.inf])


def test_identical_distribution_is_stable_with_zero_psi() -> None:
    train = _training()
    report = drift_report(DriftReference.from_frame(train), train, **THRESHOLDS)
    assert report.verdict == STABLE
    for f in report.features:
        assert f.psi == pytest.approx(0.0, abs=1e-12)
        assert f.ks_statistic == pytest.approx(0.0) and f.ks_pvalue == pytest.approx(1.0)
        assert f.verdict == STABLE and f.n_served == len(train)


def test_draws_from_the_training_distribution_are_stable() -> None:
    reference = DriftReference.from_frame(_training())
    served = _training(n=500, seed=2)  # new draws from the same distributions
    report = drift_report(reference, served, **THRESHOLDS)
    assert [f.verdict for f in report.features] == [STABLE] * 3
    assert report.verdict == STABLE
    assert all(f.psi is not None and f.psi < 0.1 for f in report.features)


@pytest.mark.parametrize(
    "change",
    [lambda s: s + s.std(), lambda s: s.mean() + 2.0 * (s - s.mean())],
    ids=["shifted by one std", "scaled by two"],
)
def test_shifted_or_scaled_inputs_are_drift(change: object) -> None:
    reference = DriftReference.from_frame(_training())
    served = _training(n=500, seed=2)
    served = served.apply(change)  # type: ignore[arg-type]
    report = drift_report(reference, served, **THRESHOLDS)
    assert [f.verdict for f in report.features] == [DRIFT] * 3
    assert report.verdict == DRIFT
    assert all(f.psi is not None and f.psi >= 0.25 and f.ks_pvalue < 0.01 for f in report.features)  # type: ignore[operator]


def test_one_drifted_feature_makes_the_report_drift_and_a_small_shift_is_shift() -> None:
    reference = DriftReference.from_frame(_training())
    served = _training(n=2000, seed=2)
    served["normal"] = served["normal"] + 0.3 * 2.0  # 0.3 std: below the PSI warn level, KS sees it
    served["uniform"] = served["uniform"] + 4.0  # beyond the training range
    report = drift_report(reference, served, **THRESHOLDS)
    verdicts = {f.feature: f.verdict for f in report.features}
    assert verdicts == {"normal": SHIFT, "skewed": STABLE, "uniform": DRIFT}
    normal = report.features[0]
    assert normal.psi is not None and normal.psi < 0.1 and normal.ks_pvalue is not None
    assert normal.ks_pvalue < 0.01  # the shift verdict comes from the KS test
    assert report.verdict == DRIFT


def test_too_few_inputs_and_nan_values() -> None:
    reference = DriftReference.from_frame(_training())
    served = _training(n=600, seed=3)
    served.loc[served.index[25:], "skewed"] = np.nan  # 25 values left of 600
    report = drift_report(reference, served, **THRESHOLDS)
    by_name = {f.feature: f for f in report.features}
    assert by_name["skewed"].n_served == 25 and by_name["skewed"].verdict == TOO_FEW
    assert by_name["skewed"].psi is not None  # computed, not trusted
    assert by_name["normal"].n_served == 600 and by_name["normal"].verdict == STABLE
    assert report.verdict == TOO_FEW  # worse than stable, better than shift
    empty = drift_report(reference, pd.DataFrame(), **THRESHOLDS)
    assert empty.n_served == 0 and empty.verdict == TOO_FEW
    assert all(f.psi is None and f.ks_pvalue is None and f.verdict == TOO_FEW for f in empty.features)


def test_a_missing_feature_is_named() -> None:
    reference = DriftReference.from_frame(_training())
    served = _training(n=50).drop(columns=["skewed"])
    served["extra"] = 1.0  # extra columns are ignored
    with pytest.raises(ValueError, match="skewed"):
        drift_report(reference, served, **THRESHOLDS)
    with pytest.raises(ValueError, match="psi_warn"):
        drift_report(reference, _training(n=50), **{**THRESHOLDS, "psi_warn": 0.5})


def test_round_trips_through_json() -> None:
    reference = DriftReference.from_frame(_training())
    data = json.loads(json.dumps(reference.to_dict()))
    assert DriftReference.from_dict(data) == reference
    served = _training(n=200, seed=4)
    served.loc[0, "normal"] = np.nan
    report = drift_report(
        reference,
        served,
        **THRESHOLDS,
        model="m",
        version="3",
        window_start=pd.Timestamp("2024-01-01", tz="UTC"),
        window_end=pd.Timestamp("2024-01-02", tz="UTC"),
    )
    out = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert out["model"] == "m" and out["version"] == "3" and out["n_served"] == 200
    assert out["window_start"] == "2024-01-01T00:00:00+00:00" and out["verdict"] == report.verdict
    assert out["thresholds"] == {"psi_warn": 0.1, "psi_alert": 0.25, "ks_pvalue": 0.01, "min_samples": 30}
    assert [f["feature"] for f in out["features"]] == ["normal", "skewed", "uniform"]
    assert out["features"][0]["n_served"] == 199
    with pytest.raises(ValueError):
        DriftReference.from_dict({"features": []})
    with pytest.raises(ValueError):
        DriftReference.from_dict({"features": [{"feature": "x", "edges": [1.0], "expected": [1.0]}]})
