"""Training the forecaster in a Prefect flow run: honest splits, baselines, MLflow records, registry."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect

from config.flows import IngestConfig, InputError
from config.models import ForecasterConfig
from config.settings import Settings
from flows.ingest import ingest
from flows.train_forecaster import train_forecaster
from models.registry import get_version_by_alias
from storage import read_bars
from tasks.store import store_for

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

SMALL = {
    "symbol": "GOOGL",
    "lookback": 20,
    "units": (8,),
    "epochs": 3,
    "walk_forward": {"folds": 2},
    "seed": 3,
}


@pytest.fixture
def ml_settings(settings: Settings, tmp_path: Path) -> Settings:
    tracked = settings.model_copy(
        update={
            "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
            "mlflow_artifact_root": tmp_path / "mlruns" / "artifacts",
        }
    )
    ingest(IngestConfig(symbols=["GOOGL"]), tracked)
    return tracked


def test_training_records_an_honest_run_and_registers_a_challenger(ml_settings: Settings) -> None:
    summary = train_forecaster(ForecasterConfig(**SMALL), ml_settings)
    assert summary.version == "1" and summary.alias == "challenger"
    assert set(summary.test) == {"lstm", "zero", "always_long", "last_return", "ridge", "hist_gb"}
    # an LSTM on daily returns is near the zero forecast; a diverged one would be far worse
    assert summary.test["lstm"]["rmse"] < 1.5 * summary.test["zero"]["rmse"]

    client = mlflow.MlflowClient(ml_settings.mlflow_tracking_uri)
    run = client.get_run(summary.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["symbol"] == "GOOGL" and params["walk_forward.folds"] == "2" and params["units"] == "[8]"
    train_end, val_start = pd.Timestamp(params["data.train_end"]), pd.Timestamp(params["data.val_start"])
    val_end, test_start = pd.Timestamp(params["data.val_end"]), pd.Timestamp(params["data.test_start"])
    with store_for(ml_settings).connect() as conn:
        days = read_bars(conn, "GOOGL", "1d").index
    purge = 20 + 1
    assert days.get_loc(val_start) - days.get_loc(train_end) > purge  # purge gap between the splits
    assert days.get_loc(test_start) - days.get_loc(val_end) > purge
    assert {"wf_lstm_rmse_mean", "wf_ridge_rmse_mean", "test_lstm_ic", "test_hist_gb_rank_ic"} <= set(metrics)
    assert "uplift_rmse_improvement" in metrics
    assert set(summary.strategies) == {"long_flat", "long_short"}  # trading the forecasts, net of costs
    assert {"test_long_flat_sharpe", "test_long_short_total_return", "test_long_short_trades"} <= set(metrics)
    assert tags["git_commit"] and tags["feature_set_version"] and tags["symbols"] == "GOOGL"
    artifacts = {a.path for a in client.list_artifacts(summary.run_id)}
    assert {"model_card.md", "config.json", "plots", "predictions", "explain"} <= artifacts
    plots = {a.path for a in client.list_artifacts(summary.run_id, "plots")}
    assert plots == {"plots/learning_curve.png", "plots/predictions_vs_actual.png", "plots/shap_summary.png"}
    card = Path(client.download_artifacts(summary.run_id, "model_card.md")).read_text()
    assert "Intended use" in card and "hist_gb" in card and "Limits" in card

    mlflow.set_tracking_uri(ml_settings.mlflow_tracking_uri)
    version = get_version_by_alias("fks-forecaster", "challenger")
    assert version is not None and str(version.version) == "1"
    assert version.tags["data_window"] == tags["data_window"] and "test_rmse" in version.tags
    assert {"test_zero_rmse", "test_hist_gb_ic", "uplift_rmse_best_baseline", "git_commit"} <= set(
        version.tags
    )
    assert ForecasterConfig.model_validate_json(version.tags["config"]) == ForecasterConfig(**SMALL)
    model = mlflow.pyfunc.load_model("models:/fks-forecaster@challenger")
    assert model.metadata.signature is not None
    with store_for(ml_settings).connect() as conn:
        raw = read_bars(conn, "GOOGL", "1d").iloc[-model.unwrap_python_model().min_bars :].reset_index()
    raw["ts"] = raw["ts"].map(lambda t: t.isoformat())
    served = model.predict(raw)
    assert list(served.columns) == ["symbol", "ts", "forecast_log_return", "prob_up", "horizon"]
    assert served["ts"].iloc[0].startswith("2018-08-29")


def test_same_config_same_model(ml_settings: Settings) -> None:
    first = train_forecaster(ForecasterConfig(**SMALL), ml_settings)
    second = train_forecaster(ForecasterConfig(**SMALL), ml_settings)
    assert first.test == second.test and second.version == "2"


def test_tuning_stores_its_study_in_the_project_database(ml_settings: Settings) -> None:
    config = ForecasterConfig(**{**SMALL, "tuning": {"trials": 2, "epochs": 2}})
    summary = train_forecaster(config, ml_settings)
    assert summary.tuned is not None and summary.tuned["trials"] == 2
    assert set(summary.tuned) >= {"units", "dropout", "learning_rate", "lookback"}
    tables = set(inspect(create_engine(ml_settings.db_url)).get_table_names())
    assert {"studies", "trials"} <= tables  # Optuna's RDB storage in FKS's own database
    client = mlflow.MlflowClient(ml_settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("fks-forecaster")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.info.run_name.startswith("tuning-")]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == 2


def test_no_bars_is_bad_input(ml_settings: Settings) -> None:
    with pytest.raises(InputError, match="no stored bars for MSFT"):
        train_forecaster(ForecasterConfig(symbol="MSFT"), ml_settings)


def test_too_little_history_is_bad_input_with_tuning_too(ml_settings: Settings, tmp_path: Path) -> None:
    # With tuning (what --quick asks for) the same message as without, no failed trial:
    # the data is checked against the base config before the study starts.
    from market.bars import canonical_bars
    from providers.csv import parse_bars_csv
    from storage import upsert_bars

    spx = parse_bars_csv(Path(__file__).resolve().parents[2] / "data" / "samples" / "sp500_daily.csv").bars
    engine = store_for(ml_settings)
    with engine.begin() as conn:
        upsert_bars(conn, "SHORT", "1d", canonical_bars(spx.iloc[:300]), source="csv")
    tuned = ForecasterConfig(symbol="SHORT", tuning={"trials": 2})
    for config in (tuned, ForecasterConfig(symbol="SHORT")):
        with pytest.raises(InputError, match=r"300 bars give 0 samples; .* ingest more history"):
            train_forecaster(config, ml_settings)


def test_training_test_forecasts_are_the_registered_pyfuncs(ml_settings: Settings) -> None:
    # One answer per question: the forecasts training evaluated on its test window are the ones
    # the registered pyfunc gives on the same dates from min_bars raw bars (what a REST client
    # sends) or from more, and the training's strategy line equals the backtest table.
    import numpy as np

    from backtest.evaluate import rolling_forecasts
    from config.backtest import BacktestConfig
    from flows.backtest import backtest

    summary = train_forecaster(ForecasterConfig(**SMALL), ml_settings)
    client = mlflow.MlflowClient(ml_settings.mlflow_tracking_uri)
    path = client.download_artifacts(summary.run_id, "predictions/test_predictions.csv")
    logged = pd.read_csv(path, index_col=0)
    logged.index = pd.DatetimeIndex(pd.to_datetime(logged.index, utc=True), name="ts")

    mlflow.set_tracking_uri(ml_settings.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/fks-forecaster/{summary.version}")
    need = model.unwrap_python_model().min_bars
    params = client.get_run(summary.run_id).data.params
    assert int(params["min_bars"]) == need
    with store_for(ml_settings).connect() as conn:
        bars = read_bars(conn, "GOOGL", "1d")
    start, end = logged.index[0], logged.index[-1]
    scale = float(np.median(np.abs(logged["lstm"])))
    for history in (need, need + 200):
        served = rolling_forecasts(model, bars, start, end, history)
        assert served.index.equals(logged.index)
        gap = np.abs(served["forecast_log_return"] - logged["lstm"])
        err = gap / np.maximum(np.abs(logged["lstm"]), scale)
        assert float(err.max()) <= 1e-6, (history, float(err.max()))
        np.testing.assert_allclose(served["prob_up"], logged["prob_up"], rtol=1e-6)

    table = backtest(BacktestConfig(model=f"fks-forecaster/{summary.version}"), ml_settings)
    line = summary.strategies["long_flat"]
    ours = table.metrics[f"fks-forecaster v{summary.version} (long_flat)"]
    for key in ("total_return", "sharpe", "max_drawdown", "trades"):
        assert ours[key] == pytest.approx(line[key], rel=1e-9, abs=1e-12), key
