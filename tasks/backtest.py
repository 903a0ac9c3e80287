"""Prefect tasks of the evaluation stage: backtest a registered model version net of costs, report it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel

from config.backtest import BacktestConfig
from config.flows import InputError
from config.settings import Settings
from storage import get_asset, read_bars
from tasks.store import store_for


class BacktestSummary(BaseModel):
    """A model version's out-of-sample backtest beside its benchmarks, and where the report is."""

    model: str
    version: str
    run_id: str
    symbol: str
    timeframe: str
    window_start: str
    window_end: str
    strategy: str
    metrics: dict[str, dict[str, float]]
    blocks: list[dict[str, Any]]
    tearsheet: str


def use_tracking(settings: Settings) -> None:
    """Point MLflow at the configured tracking store."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)


PREDICTIONS_ARTIFACT = "predictions/test_predictions.csv"
"""Where a training run logs the test forecasts of the model and its baselines."""


def baseline_predictions(run_id: str, *, strict: bool = False) -> pd.DataFrame | None:
    """The baselines' test forecasts logged by the training run (:data:`PREDICTIONS_ARTIFACT`).

    Args:
        run_id: the model version's training run.
        strict: raise instead of returning None when they are missing or unreadable (the
            promotion gate needs every configured baseline; the tearsheet does with what exists).

    Returns:
        One column per baseline (and ``actual``, ``lstm``, ``prob_up``), indexed by UTC ``ts``;
        None when the artifact is missing or unreadable and not ``strict``.

    Raises:
        LookupError: with ``strict``, the artifact is missing or unreadable; the message names the
            run and says how to fix it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    fix = (
        "retrain the model with `fks train forecaster`, which logs it, or leave the forecaster "
        "baselines out of the promotion config's baselines"
    )
    try:
        path = mlflow.MlflowClient().download_artifacts(run_id, PREDICTIONS_ARTIFACT)
    except (MlflowException, OSError):
        if strict:
            raise LookupError(f"training run {run_id} logged no {PREDICTIONS_ARTIFACT}; {fix}") from None
        return None
    try:
        frame = pd.read_csv(path, index_col=0)
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True), name="ts")
    except (ValueError, OSError) as exc:  # pandas' parser and empty-data errors are ValueErrors
        if strict:
            detail = " ".join(str(exc).split())[:200]
            raise LookupError(
                f"training run {run_id} has an unreadable {PREDICTIONS_ARTIFACT} ({detail}); {fix}"
            ) from None
        return None
    return frame


def load_series(settings: Settings, symbol: str, timeframe: str) -> tuple[pd.DataFrame, str]:
    """Stored bars of a series and its calendar name.

    Raises:
        InputError: the series is not stored.
    """
    with store_for(settings).connect() as conn:
        bars = read_bars(conn, symbol, timeframe)
        asset = get_asset(conn, symbol)
    if bars.empty or asset is None:
        raise InputError(f"no stored {timeframe} bars for {symbol}; run `fks ingest` first")
    return bars, asset.calendar


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and np.isfinite(v)}


@task(name="backtest-model", task_run_name="backtest-{config.model}", cache_policy=NONE)
def backtest_model(config: BacktestConfig, settings: Settings) -> BacktestSummary:
    """Backtest a registered model version on its out-of-sample window against buy and hold and the
    baselines, write the tearsheet under the data dir and log it on the model's MLflow run."""
    import mlflow

    from backtest import Costs
    from backtest.evaluate import benchmark_positions, evaluate_model, evaluate_positions, resolve_model
    from backtest.report import write_tearsheet

    use_tracking(settings)
    try:
        ref = resolve_model(config.model)
    except LookupError as exc:
        raise InputError(str(exc)) from None
    bars, calendar = load_series(settings, ref.symbol, ref.timeframe)
    evaluation, forecasts = evaluate_model(ref, bars, config, calendar=calendar)
    label = f"{ref.name} v{ref.version} ({config.strategy})"
    results = {label: evaluation.result}
    for name, positions in benchmark_positions(
        bars, pd.DatetimeIndex(forecasts.index), baseline_predictions(ref.run_id), config
    ).items():
        results[name] = evaluate_positions(
            bars, positions, config, calendar=calendar, timeframe=ref.timeframe
        ).result
    c = config.costs
    folder = Path(settings.data_dir) / "reports" / f"{ref.name}-v{ref.version}"
    tearsheet = write_tearsheet(
        results,
        folder,
        title=f"{ref.name} v{ref.version}: {ref.symbol} {ref.timeframe}",
        subtitle=f"out of sample {ref.test_start:%Y-%m-%d} .. {ref.test_end:%Y-%m-%d}, net of costs",
        costs=Costs(commission_bps=c.commission_bps, slippage_bps=c.slippage_bps, min_fee=c.min_fee),
        notes=[
            "Positions are decided at each bar's close from the forecast and filled at the next open.",
            f"Forecasts come from the registered pyfunc on the last {evaluation.history} raw bars, "
            "as served.",
        ],
    )
    client = mlflow.MlflowClient()
    client.log_artifacts(ref.run_id, str(folder), "backtest")
    for key, value in _finite(evaluation.result.metrics).items():
        client.log_metric(ref.run_id, f"backtest_{key}", value)
    return BacktestSummary(
        model=ref.name,
        version=ref.version,
        run_id=ref.run_id,
        symbol=ref.symbol,
        timeframe=ref.timeframe,
        window_start=f"{ref.test_start:%Y-%m-%d}",
        window_end=f"{ref.test_end:%Y-%m-%d}",
        strategy=config.strategy,
        metrics={name: _finite(r.metrics) for name, r in results.items()},
        blocks=[
            {k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in b.items()}
            for b in evaluation.blocks
        ],
        tearsheet=str(tearsheet),
    )
