"""The forecaster pyfunc and the registry on a real MLflow store (SQLite + local artifacts).

One tiny LSTM (untrained, seeded) is logged once per module; the tests load it back the ways
serving does and check that the served forecast is exactly build_features + scaler + network on
the last window, so training and serving cannot drift apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from config.models import ForecasterConfig
from features import FeatureSet, build_features, get_feature_set
from market.bars import canonical_bars
from providers.csv import parse_bars_csv

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
LOOKBACK = 10
HORIZON = 1


@dataclass
class Logged:
    """What the module logged: the model and everything to recompute its output by hand."""

    tracking_uri: str
    experiment_id: str
    model_uri: str
    run_id: str
    feature_set: FeatureSet
    scaler: Any
    network: Any
    min_bars: int


@contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """Use MLflow store ``uri`` inside the block; restore the URI (and its env variable) after."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    global_uri, env_uri = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(global_uri)
        if env_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_uri


def _raw(name: str) -> pd.DataFrame:
    """Raw bars of a shipped sample: ts as a (UTC) column, OHLCV floats."""
    return parse_bars_csv(SAMPLES / name).bars.reset_index()


@pytest.fixture(scope="module")
def spx() -> pd.DataFrame:
    return _raw("sp500_daily.csv")


@pytest.fixture(scope="module")
def googl() -> pd.DataFrame:
    return _raw("googl_daily.csv")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, spx: pd.DataFrame) -> Iterator[Logged]:
    import mlflow

    from models.forecaster import build_lstm, save_model
    from models.forecaster.pyfunc import build_preprocess, log_forecaster
    from models.preprocessing import FeatureScaler
    from models.seeding import seed_everything

    root = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with _tracking(tracking_uri):
        experiment_id = mlflow.create_experiment(
            "forecaster-pyfunc", artifact_location=(root / "artifacts").as_uri()
        )
        feature_set = get_feature_set("minimal")
        features = build_features(canonical_bars(spx), feature_set, timeframe="1d")
        train = features.iloc[feature_set.warmup : len(features) // 2]
        scaler = FeatureScaler(clip=10.0).fit(train)
        seed_everything(7)
        config = ForecasterConfig(lookback=LOOKBACK, horizon=HORIZON, units=(4,), dropout=0.0)
        network = build_lstm(len(features.columns), config, target_scale=0.01)
        keras_path = save_model(network, root / "lstm.keras")
        preprocess = build_preprocess(feature_set, scaler, lookback=LOOKBACK, horizon=HORIZON, timeframe="1d")
        min_bars = feature_set.min_history + LOOKBACK - 1
        with mlflow.start_run(experiment_id=experiment_id) as run:
            info = log_forecaster(
                keras_model_path=keras_path, preprocess=preprocess, input_example=spx.tail(min_bars + 5)
            )
        yield Logged(
            tracking_uri=tracking_uri,
            experiment_id=experiment_id,
            model_uri=info.model_uri,
            run_id=run.info.run_id,
            feature_set=feature_set,
            scaler=scaler,
            network=network,
            min_bars=min_bars,
        )


@pytest.fixture(autouse=True)
def _tracking_uri(request: pytest.FixtureRequest) -> Iterator[None]:
    """Point MLflow at the module's store in every test that uses it, and back afterwards."""

    if "logged" not in request.fixturenames:
        yield
        return
    logged: Logged = request.getfixturevalue("logged")
    with _tracking(logged.tracking_uri):
        yield


@pytest.fixture(scope="module")
def served(logged: Logged) -> Any:
    """The logged model loaded back through MLflow, as serving loads it."""
    import mlflow

    return mlflow.pyfunc.load_model(logged.model_uri)


def _by_hand(logged: Logged, raw: pd.DataFrame) -> tuple[float, float, str]:
    """Forecast of the last window computed without the pyfunc: features, scaler, network."""
    bars = canonical_bars(raw[["ts", "open", "high", "low", "close", "volume"]])
    features = build_features(bars, logged.feature_set, timeframe="1d")
    window = logged.scaler.transform(features.iloc[-LOOKBACK:].to_numpy())
    out = logged.network.predict(window[None].astype("float32"), verbose=0)
    return float(out["ret"][0, 0]), float(out["dir"][0, 0]), bars.index[-1].isoformat()


# ---------------------------------------------------------------------------------------------
# Serving = training


def test_served_forecast_equals_features_scaler_network(
    served: Any, logged: Logged, spx: pd.DataFrame
) -> None:
    raw = spx.tail(600)
    out = served.predict(raw)

    assert list(out.columns) == ["symbol", "ts", "forecast_log_return", "prob_up", "horizon"]
    assert len(out) == 1
    assert pd.api.types.is_string_dtype(out["symbol"]) and pd.api.types.is_string_dtype(out["ts"])
    assert out["forecast_log_return"].dtype == np.float64 and out["prob_up"].dtype == np.float64
    assert out["horizon"].dtype == np.int64
    row = out.iloc[0]
    ret, p_up, ts = _by_hand(logged, raw)
    assert row["symbol"] == ""
    assert row["ts"] == ts == "2018-12-31T00:00:00+00:00"
    assert row["forecast_log_return"] == pytest.approx(ret, rel=1e-6, abs=1e-9)
    assert row["prob_up"] == pytest.approx(p_up, rel=1e-6)
    assert 0.0 <= row["prob_up"] <= 1.0
    assert row["horizon"] == HORIZON


def test_each_window_of_history_is_served_as_trained(served: Any, logged: Logged, spx: pd.DataFrame) -> None:
    # Different history lengths and end dates: the pyfunc always sees what build_features sees.
    for end in (logged.min_bars + 40, 1200, len(spx) - 17):
        raw = spx.iloc[:end]
        got = served.predict(raw).iloc[0]
        ret, p_up, ts = _by_hand(logged, raw)
        assert (got["ts"], got["forecast_log_return"], got["prob_up"]) == pytest.approx((ts, ret, p_up))


def test_any_history_at_or_beyond_min_bars_gives_the_same_forecast(
    served: Any, logged: Logged, spx: pd.DataFrame
) -> None:
    # The forecast does not depend on how much history a client sends (to 1e-6 relative).
    need = logged.min_bars
    for end in (need + 7, 2500, len(spx)):
        history = spx.iloc[:end]
        full = served.predict(history).iloc[0]
        for n in sorted({need, need + 1, need + 250, end // 2 + need}):
            got = served.predict(history.tail(min(n, end))).iloc[0]
            assert got["ts"] == full["ts"]
            expected = full["forecast_log_return"]
            assert got["forecast_log_return"] == pytest.approx(expected, rel=1e-6, abs=1e-12)
            assert got["prob_up"] == pytest.approx(full["prob_up"], rel=1e-6)


def test_ts_as_iso_strings_naive_or_aware_datetimes_in_any_order(
    served: Any, logged: Logged, spx: pd.DataFrame
) -> None:
    raw = spx.tail(logged.min_bars).reset_index(drop=True)
    expected = served.predict(raw)

    iso = raw.assign(ts=raw["ts"].map(lambda t: t.isoformat()))
    iso_z = raw.assign(ts=raw["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    naive = raw.assign(ts=raw["ts"].dt.tz_localize(None))
    shuffled = raw.sample(frac=1.0, random_state=3)
    for variant in (iso, iso_z, naive, shuffled):
        pd.testing.assert_frame_equal(served.predict(variant), expected)


def test_several_symbols_give_one_row_each(
    served: Any, logged: Logged, spx: pd.DataFrame, googl: pd.DataFrame
) -> None:
    a = spx.tail(logged.min_bars + 30).assign(symbol="SPX")
    b = googl.tail(logged.min_bars).assign(symbol="GOOGL")
    mixed = pd.concat([b.head(1), pd.concat([b.iloc[1:], a]).sample(frac=1.0, random_state=1)])

    out = served.predict(mixed)

    assert list(out["symbol"]) == ["GOOGL", "SPX"]  # order of first appearance
    for symbol, raw in (("SPX", a), ("GOOGL", b)):
        alone = served.predict(raw.drop(columns="symbol")).iloc[0]
        got = out.set_index("symbol").loc[symbol]
        assert got["ts"] == alone["ts"]
        assert got["forecast_log_return"] == pytest.approx(alone["forecast_log_return"], rel=1e-6)
        assert got["prob_up"] == pytest.approx(alone["prob_up"], rel=1e-6)


def test_too_few_bars_says_how_many_are_needed(served: Any, logged: Logged, spx: pd.DataFrame) -> None:
    need = logged.min_bars
    assert served.unwrap_python_model().min_bars == need
    assert need == logged.feature_set.min_history + LOOKBACK - 1
    assert served.predict(spx.tail(need)).shape == (1, 5)
    with pytest.raises(ValueError, match=rf"got {need - 1} bars, the model needs at least {need} "):
        served.predict(spx.tail(need - 1))
    two = pd.concat([spx.tail(need).assign(symbol="SPX"), spx.tail(5).assign(symbol="TINY")])
    with pytest.raises(ValueError, match=rf"symbol 'TINY': got 5 bars, the model needs at least {need}"):
        served.predict(two)


def test_bad_input_is_a_value_error_a_person_can_act_on(
    served: Any, logged: Logged, spx: pd.DataFrame
) -> None:
    from mlflow.exceptions import MlflowException

    model = served.unwrap_python_model()
    raw = spx.tail(logged.min_bars).reset_index(drop=True)
    cases = {
        "lacks column\\(s\\) close; send raw bars": raw.drop(columns="close"),
        "column close at row 3 holds 'n/a', which is not a number": raw.astype({"close": object}).assign(
            close=lambda f: f["close"].where(f.index != 3, "n/a")
        ),
        "column volume has 1 missing or infinite value": raw.assign(
            volume=raw["volume"].where(raw.index != 7, np.nan)
        ),
        "column ts at row 0 holds 'yesterday', which is not an ISO 8601 time": raw.assign(
            ts=["yesterday", *raw["ts"].iloc[1:].map(str)]
        ),
        "duplicate timestamp": pd.concat([raw, raw.tail(1)]),
        "close must be positive": raw.assign(close=raw["close"].where(raw.index != 90, -1.0)),
        r"these are 1h bars \(from their open times\), the model was trained on 1d bars; send 1d": raw.assign(
            ts=pd.date_range("2018-01-01", periods=len(raw), freq="h", tz="UTC")
        ),
        "no rows": raw.head(0),
    }
    for message, frame in cases.items():
        with pytest.raises(ValueError, match=message):
            model.predict(None, frame)
    # Through MLflow the signature is checked first: a missing column is named there too.
    with pytest.raises(MlflowException, match=r"missing inputs \['close'\]"):
        served.predict(raw.drop(columns="close"))
    # Numbers are not cast by MLflow (it would refuse int64 volumes): the model reads them and
    # names what it cannot read.
    with pytest.raises(ValueError, match="column close at row 3 holds 'n/a', which is not a number"):
        served.predict(
            cases["column close at row 3 holds 'n/a', which is not a number"].astype({"close": str})
        )


def test_a_frame_read_with_read_csv_predicts_without_a_cast(
    served: Any, logged: Logged, spx: pd.DataFrame, tmp_path: Path
) -> None:
    raw = spx.tail(logged.min_bars).assign(volume=lambda f: f["volume"].round().astype("int64"))
    path = tmp_path / "bars.csv"
    raw.to_csv(path, index=False)
    read = pd.read_csv(path)
    assert read["volume"].dtype == np.int64
    got = served.predict(read)
    expected = served.predict(raw.astype({"volume": "float64"}))
    pd.testing.assert_frame_equal(got, expected)


# ---------------------------------------------------------------------------------------------
# What is logged


def test_logged_model_carries_signature_example_code_and_pins(logged: Logged, spx: pd.DataFrame) -> None:
    import mlflow
    from mlflow.models import Model

    model = Model.load(logged.model_uri)
    signature = model.signature
    assert signature is not None
    inputs = {spec.name: spec for spec in signature.inputs.inputs}
    assert list(inputs) == ["ts", "open", "high", "low", "close", "volume", "symbol"]
    assert not inputs["symbol"].required and inputs["close"].required
    assert signature.outputs.input_names() == ["symbol", "ts", "forecast_log_return", "prob_up", "horizon"]
    example = model.load_input_example(mlflow.artifacts.download_artifacts(logged.model_uri))
    assert isinstance(example, pd.DataFrame) and len(example) == logged.min_bars + 5
    assert example["ts"].iloc[-1] == "2018-12-31T00:00:00+00:00"

    local = Path(mlflow.artifacts.download_artifacts(logged.model_uri))
    code = local / model.flavors["python_function"]["code"]
    assert {"features", "market", "models", "config"} <= {p.name for p in code.iterdir()}
    preprocess = json.loads(next((local / "artifacts").glob("*.json")).read_text())
    assert preprocess["feature_set_version"] == logged.feature_set.version
    assert preprocess["lookback"] == LOOKBACK and preprocess["warmup"] == logged.feature_set.warmup
    assert preprocess["min_history"] == logged.feature_set.min_history
    assert preprocess["feature_columns"] == logged.feature_set.columns("1d")
    requirements = (local / "requirements.txt").read_text()
    assert "keras==" in requirements and "pandas==" in requirements


def test_log_forecaster_refuses_a_mismatched_preprocess(
    logged: Logged, tmp_path: Path, spx: pd.DataFrame
) -> None:
    import mlflow

    from models.forecaster import save_model
    from models.forecaster.pyfunc import build_preprocess, log_forecaster

    keras_path = save_model(logged.network, tmp_path / "lstm.keras")
    wrong = build_preprocess(
        logged.feature_set, logged.scaler, lookback=LOOKBACK + 1, horizon=1, timeframe="1d"
    )
    with pytest.raises(RuntimeError, match="active run"):
        log_forecaster(keras_model_path=keras_path, preprocess=wrong, input_example=spx.tail(logged.min_bars))
    refused = r"windows of shape \(10, 8\) but the preprocess spec builds"
    with mlflow.start_run(experiment_id=logged.experiment_id), pytest.raises(ValueError, match=refused):
        log_forecaster(keras_model_path=keras_path, preprocess=wrong, input_example=spx.tail(logged.min_bars))


def test_loads_and_predicts_in_a_fresh_process_with_the_shipped_code(
    logged: Logged, served: Any, spx: pd.DataFrame, tmp_path: Path
) -> None:
    raw = spx.tail(logged.min_bars).assign(ts=lambda f: f["ts"].map(lambda t: t.isoformat()))
    expected = served.predict(raw)
    payload = {"dataframe_split": json.loads(raw.to_json(orient="split", index=False))}
    (tmp_path / "input.json").write_text(json.dumps(payload))
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "import features\n"
        "raw = pd.DataFrame(**json.load(open('input.json'))['dataframe_split'])\n"
        "out = m.predict(raw)\n"
        "print(json.dumps({'features': features.__file__, 'out': out.to_dict(orient='records')}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHONPATH"))}
    env |= {"MLFLOW_TRACKING_URI": logged.tracking_uri, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", script, logged.model_uri],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["features"].startswith(str(REPO / "features"))  # the model's own copy
    got = pd.DataFrame(result["out"])
    assert got["ts"].tolist() == expected["ts"].tolist()
    np.testing.assert_allclose(got["forecast_log_return"], expected["forecast_log_return"], rtol=1e-6)
    np.testing.assert_allclose(got["prob_up"], expected["prob_up"], rtol=1e-6)

    # The MLflow CLI, as `mlflow models serve --env-manager local` loads it (serving JSON format).
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "predict",
            "-m",
            logged.model_uri,
            "-i",
            "input.json",
            "-t",
            "json",
            "-o",
            "out.json",
            "--env-manager",
            "local",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cli = json.loads((tmp_path / "out.json").read_text())["predictions"]
    assert [row["ts"] for row in cli] == expected["ts"].tolist()
    assert cli[0]["forecast_log_return"] == pytest.approx(expected["forecast_log_return"].iloc[0], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Registry


def test_register_promote_rollback_move_aliases(logged: Logged, spx: pd.DataFrame) -> None:
    import mlflow
    from mlflow import MlflowClient

    from models.registry import get_version_by_alias, promote, register, rollback, set_alias

    name = "fks-forecaster"
    client = MlflowClient()
    v1 = register(logged.model_uri, name, tags={"git_commit": "abc123"}, description="tiny test model")
    assert v1 == "1"
    mv = client.get_model_version(name, v1)
    assert mv.status == "READY" and mv.tags["git_commit"] == "abc123" and mv.description == "tiny test model"
    set_alias(name, "challenger", v1)
    assert str(get_version_by_alias(name, "challenger").version) == "1"
    assert get_version_by_alias(name, "champion") is None
    assert get_version_by_alias("no-such-model", "champion") is None

    with pytest.raises(ValueError, match="reason"):
        promote(name, reason=" ")
    assert promote(name, reason="first champion") == "1"
    assert str(get_version_by_alias(name, "champion").version) == "1"
    assert get_version_by_alias(name, "challenger") is None
    assert get_version_by_alias(name, "previous-champion") is None
    with pytest.raises(ValueError, match="no version of 'fks-forecaster' has alias 'challenger'"):
        promote(name, reason="nothing to promote")

    v2 = register(logged.model_uri, name)
    assert v2 == "2"
    set_alias(name, "challenger", v2)
    assert promote(name, reason="beats the champion on out-of-sample Sharpe") == "2"
    assert str(get_version_by_alias(name, "champion").version) == "2"
    assert str(get_version_by_alias(name, "previous-champion").version) == "1"
    tags = client.get_model_version(name, "2").tags
    assert tags["promotion_reason"] == "beats the champion on out-of-sample Sharpe"
    assert tags["replaced_version"] == "1" and tags["promoted_at"].endswith("+00:00")
    assert all(not v.current_stage or v.current_stage == "None" for v in client.search_model_versions())

    champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert champion.predict(spx.tail(1000)).shape == (1, 5)

    assert rollback(name) == "1"
    assert str(get_version_by_alias(name, "champion").version) == "1"
    assert get_version_by_alias(name, "previous-champion") is None
    assert "rolled_back_at" in client.get_model_version(name, "2").tags
    with pytest.raises(
        ValueError,
        match=r"no 'previous-champion' version to roll back to .*promote a challenger with `fks promote`",
    ):
        rollback(name)
