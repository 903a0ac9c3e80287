"""Drift of served inputs on a real MLflow store and FKS store (SQLite), without training a network.

A "training run" here is an MLflow run with the tags and params the forecaster's training logs
(:func:`models.forecaster.tracking.log_training`) for the training rows of the real recipe
(``prepare_dataset`` + ``chronological_split`` on the SPX sample): with the drift reference
logged, or without it (a version registered before runs logged it), when it must be rebuilt
from the store's bars. The versions are registered directly on those runs (no model is needed to
read drift), and the served inputs are rows of table ``predictions``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from config.models import ForecasterConfig
from config.settings import Settings
from features import FeatureSet, build_features, get_feature_set
from market.bars import canonical_bars
from models.drift import DRIFT, STABLE, TOO_FEW, model_drift
from models.forecaster.tracking import train_features
from models.forecaster.training import Dataset, prepare_dataset
from models.reference import REFERENCE_ARTIFACT, log_reference, training_features
from models.splits import Split, chronological_split
from models.tracking import flatten
from providers.csv import parse_bars_csv
from storage import open_store, upsert_bars
from storage.predictions import Prediction, record_predictions

REPO = Path(__file__).resolve().parents[2]
NAME = "fks-forecaster"
CONFIG = ForecasterConfig(feature_set="minimal", lookback=10, horizon=1)


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


@dataclass
class World:
    settings: Settings
    engine: Engine
    bars: pd.DataFrame
    feature_set: FeatureSet
    dataset: Dataset
    split: Split
    train: pd.DataFrame  # the raw rows the scaler is fitted on
    experiment_id: str

    def log_run(self, *, reference: bool, **tag_overrides: str) -> str:
        """A run with the training's tags and params; the drift reference logged when asked."""
        import mlflow

        windows = {
            name: (self.dataset.sample_ts(part)[0], self.dataset.sample_ts(part)[-1])
            for name, part in (
                ("train", self.split.train),
                ("val", self.split.val),
                ("test", self.split.test),
            )
        }
        tags = {
            "symbols": "SPX",
            "timeframe": "1d",
            "feature_set": self.feature_set.name,
            "feature_set_version": self.feature_set.version,
            **tag_overrides,
        }
        with mlflow.start_run(experiment_id=self.experiment_id) as run:
            mlflow.set_tags(tags)
            mlflow.log_params(flatten(CONFIG))
            for name, (lo, hi) in windows.items():
                mlflow.log_params({f"data.{name}_start": lo.isoformat(), f"data.{name}_end": hi.isoformat()})
            if reference:
                log_reference(self.train)
        return str(run.info.run_id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import mlflow

    root = tmp_path_factory.mktemp("drift")
    settings = Settings(
        data_dir=root / "data",
        db_url=f"sqlite:///{root / 'fks.db'}",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        mlflow_artifact_root=root / "artifacts",
    )
    bars = canonical_bars(parse_bars_csv(REPO / "data" / "samples" / "sp500_daily.csv").bars.reset_index())
    engine = open_store(settings.db_url)
    with engine.begin() as conn:
        upsert_bars(conn, "SPX", "1d", bars, source="csv")
    feature_set = get_feature_set("minimal")
    dataset = prepare_dataset(bars, feature_set, CONFIG)
    split = chronological_split(
        dataset.n_samples,
        val_fraction=CONFIG.val_fraction,
        test_fraction=CONFIG.test_fraction,
        purge=CONFIG.purge,
    )
    with _tracking(settings.mlflow_tracking_uri):
        experiment_id = mlflow.create_experiment(
            "drift-test", artifact_location=(root / "artifacts").as_uri()
        )
        yield World(
            settings=settings,
            engine=engine,
            bars=bars,
            feature_set=feature_set,
            dataset=dataset,
            split=split,
            train=train_features(dataset, split),
            experiment_id=experiment_id,
        )
    engine.dispose()


@pytest.fixture(autouse=True)
def _store(world: World) -> Iterator[None]:
    """Every test on the module's MLflow store (model_drift points MLflow at it too)."""
    with _tracking(world.settings.mlflow_tracking_uri):
        yield


def test_the_reference_is_the_scaler_rows_of_the_training_span(world: World) -> None:
    train, dataset, split = world.train, world.dataset, world.split
    # the scaler of the final model is fitted on dataset.rows[window_rows(split.train)]: every row
    # a training window reads, from lookback - 1 rows before the first training decision bar
    assert len(train) == split.train.stop + CONFIG.lookback - 1
    assert train.index[CONFIG.lookback - 1] == dataset.sample_ts(split.train)[0]
    assert train.index[-1] == dataset.sample_ts(split.train)[-1]
    assert train.index[-1] < dataset.sample_ts(split.val)[0]  # no validation (or test) row
    # raw, unscaled: build_features' values, from the row after the min_history warm-up on
    features = build_features(world.bars, world.feature_set, timeframe="1d")
    assert train.index[0] == features.index[world.feature_set.min_history - 1]
    pd.testing.assert_frame_equal(train, features.loc[train.index], check_freq=False, check_names=False)


def test_logged_reference_round_trips(world: World) -> None:
    run_id = world.log_run(reference=True)
    import mlflow

    listed = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "reference")}
    assert listed == {REFERENCE_ARTIFACT}
    back = training_features(run_id, engine=None)  # no store: it must come from the artifact
    pd.testing.assert_frame_equal(back, world.train, check_freq=False)


def test_a_run_without_the_artifact_is_rebuilt_from_the_store(world: World) -> None:
    run_id = world.log_run(reference=False)
    rebuilt = training_features(run_id, engine=world.engine)
    pd.testing.assert_frame_equal(rebuilt, world.train, check_freq=False, check_names=False, rtol=1e-12)
    assert list(rebuilt.columns) == world.dataset.feature_names

    with pytest.raises(LookupError, match="no store was given"):
        training_features(run_id, engine=None)
    other = world.log_run(reference=False, feature_set_version="0123456789ab")
    with pytest.raises(ValueError, match=r"version 0123456789ab.*retrain"):
        training_features(other, engine=world.engine)
    empty = open_store(f"sqlite:///{Path(world.settings.data_dir) / 'empty.db'}")
    try:
        with pytest.raises(ValueError, match=r"no SPX 1d bars.*fks ingest"):
            training_features(run_id, engine=empty)
    finally:
        empty.dispose()
    with pytest.raises(LookupError, match="no MLflow run"):
        training_features("0" * 32, engine=world.engine)


def _register(world: World, run_id: str, alias: str) -> str:
    """A registered version of NAME on ``run_id`` (no model: drift reads the run only)."""
    import mlflow

    from models.registry import set_alias

    client = mlflow.MlflowClient()
    if not client.search_registered_models(f"name='{NAME}'"):
        client.create_registered_model(NAME)
    run = client.get_run(run_id)
    version = str(client.create_model_version(NAME, source=run.info.artifact_uri, run_id=run_id).version)
    set_alias(NAME, alias, version)
    return version


def _served(
    world: World, rows: pd.DataFrame, version: str, *, hours_ago: float = 0.0, shadow: bool = False
) -> None:
    served_at = pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=hours_ago)
    predictions = [
        Prediction(
            request_id=f"r{version}-{i}",
            model=NAME,
            version=version,
            alias="champion",
            symbol="SPX",
            bar_ts=ts,
            output={"forecast_log_return": 0.0, "prob_up": 0.5},
            latency_ms=1.0,
            features={str(k): float(v) for k, v in row.items()},
            shadow=shadow,
            served_at=served_at,
        )
        for i, (ts, row) in enumerate(rows.iterrows())
    ]
    with world.engine.begin() as conn:
        record_predictions(conn, predictions)


@pytest.fixture(scope="module")
def registered(world: World) -> dict[str, str]:
    """Version 1 (@champion, reference logged) served training-like inputs; version 2
    (@challenger, reference rebuilt from the store) served shifted ones."""
    with _tracking(world.settings.mlflow_tracking_uri):
        v1 = _register(world, world.log_run(reference=True), "champion")
        v2 = _register(world, world.log_run(reference=False), "challenger")
    rng = np.random.default_rng(11)
    like = world.train.iloc[rng.integers(0, len(world.train), 400)]
    _served(world, like, v1)
    shifted = world.train.iloc[rng.integers(0, len(world.train), 400)]
    shifted = shifted + world.train.std()  # every feature one standard deviation up
    _served(world, shifted, v2)
    _served(world, shifted, v1, hours_ago=48)  # outside a 24 h window
    _served(world, shifted, v1, shadow=True)  # shadow inputs are not what callers sent
    return {"stable": v1, "drifted": v2}


def test_model_drift_flags_shifted_inputs_only(world: World, registered: dict[str, str]) -> None:
    stable = model_drift(world.settings, world.engine, NAME, hours=24)  # @champion
    assert stable.version == registered["stable"] and stable.n_served == 400
    assert stable.verdict == STABLE, stable.to_dict()
    assert [f.feature for f in stable.features] == world.dataset.feature_names
    assert all(f.verdict == STABLE and f.n_served == 400 for f in stable.features)
    assert stable.thresholds["psi_alert"] == world.settings.drift_psi_alert

    drifted = model_drift(world.settings, world.engine, NAME, version=registered["drifted"], hours=24)
    assert drifted.version == registered["drifted"] and drifted.n_served == 400
    assert drifted.verdict == DRIFT and all(f.verdict == DRIFT for f in drifted.features)

    # 72 h reach back to the shifted inputs of version 1 served two days ago
    wider = model_drift(world.settings, world.engine, NAME, hours=72)
    assert wider.n_served == 800 and wider.verdict == DRIFT

    few = model_drift(world.settings.model_copy(update={"drift_min_samples": 1000}), world.engine, NAME)
    assert few.verdict == TOO_FEW

    with pytest.raises(LookupError, match=rf"no registered model .nope.*{NAME}"):
        model_drift(world.settings, world.engine, "nope")
    with pytest.raises(LookupError, match="no version '99'"):
        model_drift(world.settings, world.engine, NAME, version="99")


def test_fks_drift_prints_the_verdicts(world: World, registered: dict[str, str]) -> None:
    from flows.cli import app

    env = {
        "FKS_DB_URL": world.settings.db_url,
        "FKS_MLFLOW_TRACKING_URI": world.settings.mlflow_tracking_uri,
        "FKS_DATA_DIR": str(world.settings.data_dir),
        "COLUMNS": "200",
    }
    runner = CliRunner()
    shown = runner.invoke(app, ["drift", "--hours", "24"], env=env)
    assert shown.exit_code == 0, shown.output
    for name in world.dataset.feature_names:
        assert name in shown.output
    assert "overall: stable" in shown.output and f"v{registered['stable']}" in shown.output

    as_json = runner.invoke(
        app, ["drift", "--version", registered["drifted"], "--hours", "24", "--json"], env=env
    )
    assert as_json.exit_code == 0, as_json.output  # drifted is a finding, not a failure
    report = json.loads(as_json.stdout)
    assert report["verdict"] == DRIFT and report["version"] == registered["drifted"]
    assert {f["feature"] for f in report["features"]} == set(world.dataset.feature_names)

    unknown = runner.invoke(app, ["drift", "--model", "nope"], env=env)
    assert unknown.exit_code == 1
    assert "no registered model 'nope'" in unknown.output
