"""Prefect tasks of the training stage: load validated bars, tune, train honestly, record in MLflow."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel

from config.flows import InputError
from config.models import ForecasterConfig
from config.settings import Settings
from features import get_feature_set
from storage import read_bars, read_features
from tasks.features import features_root
from tasks.store import store_for


class TrainingSummary(BaseModel):
    """What a forecaster training run produced, for people and for the pipeline summary."""

    symbol: str
    timeframe: str
    run_id: str
    experiment_id: str
    model_uri: str
    registered_name: str
    version: str
    alias: str = "challenger"
    walk_forward_rmse: dict[str, float]
    test: dict[str, dict[str, float]]
    uplift: dict[str, Any]
    strategies: dict[str, dict[str, float]] = {}
    tuned: dict[str, Any] | None = None
    data_window: str


STRATEGY_METRICS = ("total_return", "sharpe", "max_drawdown", "trades")


def _strategy_metrics(
    trained: Any, bars: Any, settings: Settings, config: ForecasterConfig
) -> dict[str, dict[str, float]]:
    """Long/flat and long/short on the LSTM's test forecasts, net of default costs (next-open fills)."""
    from backtest import Costs, run
    from backtest.evaluate import forecast_positions
    from config.backtest import CostsConfig
    from storage import get_asset

    with store_for(settings).connect() as conn:
        asset = get_asset(conn, config.symbol)
    predictions = trained.final.predictions
    window = bars.loc[predictions.index[0] : predictions.index[-1]]
    c = CostsConfig()
    costs = Costs(commission_bps=c.commission_bps, slippage_bps=c.slippage_bps, min_fee=c.min_fee)
    out: dict[str, dict[str, float]] = {}
    for strategy in ("long_flat", "long_short"):
        positions = forecast_positions(predictions["lstm"], strategy, 0.0).reindex(window.index).fillna(0.0)
        result = run(
            window,
            positions,
            costs=costs,
            calendar=asset.calendar if asset else None,
            timeframe=config.timeframe if asset else None,
        )
        out[strategy] = {k: float(result.metrics[k]) for k in STRATEGY_METRICS}
    return out


def _log_strategies(run_id: str, strategies: dict[str, dict[str, float]]) -> None:
    import math

    import mlflow

    client = mlflow.MlflowClient()
    for strategy, metrics in strategies.items():
        for key, value in metrics.items():
            if math.isfinite(value):
                client.log_metric(run_id, f"test_{strategy}_{key}", value)


@task(
    name="train-forecaster",
    task_run_name="train-forecaster-{config.symbol}-{config.timeframe}",
    cache_policy=NONE,
)
def train_forecaster_task(config: ForecasterConfig, settings: Settings) -> TrainingSummary:
    """Train the LSTM forecaster on the stored (validated) bars of ``config.symbol`` and record it.

    Raises:
        InputError: no stored bars, an unknown feature set, or too little history.
    """
    from models.tracking import ensure_experiment, log_training
    from models.training import train_forecaster
    from models.tuning import tune

    try:
        feature_set = get_feature_set(config.feature_set)
        _ = feature_set.min_history  # a research-only set cannot be trained for serving
    except ValueError as exc:
        raise InputError(str(exc)) from None
    with store_for(settings).connect() as conn:
        bars = read_bars(conn, config.symbol, config.timeframe)
        stored = None
        if not bars.empty:
            stored = read_features(
                conn,
                features_root(settings),
                set_name=feature_set.name,
                set_version=feature_set.version,
                symbol=config.symbol,
                timeframe=config.timeframe,
            )
    if bars.empty:
        raise InputError(
            f"no stored {config.timeframe} bars for {config.symbol}; "
            "run `fks ingest` first (see `fks data list`)"
        )
    tuned: dict[str, Any] | None = None
    if config.tuning.trials > 0 or config.tuning.timeout_s:
        import mlflow

        experiment_id = ensure_experiment(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"tuning-{config.symbol}-{config.timeframe}"
        ):
            result = tune(bars, feature_set, config, settings.db_url)
            mlflow.log_metric("best_wf_val_rmse", result.best_value)
            mlflow.log_params({f"best.{k}": v for k, v in result.best_params.items()})
        config = result.best_config
        tuned = {
            **result.best_params,
            "study": result.study_name,
            "trials": result.trials,
            "pruned": result.pruned,
        }
    try:
        trained = train_forecaster(bars, feature_set, config, features=stored)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    record = log_training(
        trained,
        bars=bars,
        feature_set=feature_set,
        tracking_uri=settings.mlflow_tracking_uri,
        artifact_root=settings.mlflow_artifact_root,
        tuning=tuned,
    )
    strategies = _strategy_metrics(trained, bars, settings, config)
    _log_strategies(record.run_id, strategies)
    lo, hi = trained.windows["train"][0], trained.windows["test"][1]
    return TrainingSummary(
        symbol=config.symbol,
        timeframe=config.timeframe,
        run_id=record.run_id,
        experiment_id=record.experiment_id,
        model_uri=record.model_uri,
        registered_name=record.registered_name,
        version=record.version,
        walk_forward_rmse={m: s["rmse_mean"] for m, s in trained.walk_forward.items()},
        test=trained.test_metrics,
        uplift=trained.uplift,
        tuned=tuned,
        strategies=strategies,
        data_window=f"{lo:%Y-%m-%d} .. {hi:%Y-%m-%d}",
    )
