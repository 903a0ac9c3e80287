"""Train the allocator on stored bars and record it: what ``fks train allocator`` runs.

:func:`train_and_record` reads the universe's stored bars, trains
(:func:`models.allocator.training.train_allocator`), has the caller's ``evaluate`` backtest the
test span beside the baselines (``backtest.allocation.evaluate_allocation``; ``models/`` never
imports ``backtest/``), logs the run, registers ``fks-allocator`` with the alias ``challenger``
and returns an :class:`AllocatorSummary` (the table the CLI and the pipeline print)::

    from backtest.allocation import evaluate_allocation
    summary = train_and_record(AllocatorConfig(symbols=("SPY", "QQQ", "TLT", "GLD", "IWM")), settings,
                               engine=engine, evaluate=evaluate_allocation)
    summary.test["agent"]["sharpe"], summary.test["equal_weight"]["sharpe"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel

from config.flows import InputError
from config.models import AllocatorConfig
from models.allocator.report import AllocationReport

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.settings import Settings
    from models.allocator.training import AllocatorResult

__all__ = ["AllocationEvaluator", "AllocatorSummary", "load_universe", "summarize", "train_and_record"]

AllocationEvaluator = Callable[["AllocatorResult", Mapping[str, pd.DataFrame]], AllocationReport]
"""``evaluate(result, bars) -> AllocationReport``: the test backtests of the agent and its baselines
(``bars``: the universe's raw bars, for baselines that need more than closes, such as the
forecaster-driven allocation), with MLflow pointed at the project's store."""


class AllocatorSummary(BaseModel):
    """What an allocator training run produced, for people and for the pipeline summary."""

    symbols: list[str]
    timeframe: str
    source: str
    run_id: str
    experiment_id: str
    model_uri: str
    registered_name: str
    version: str
    alias: str = "challenger"
    algo: str
    seeds: dict[str, float]
    seed_kept: int
    timesteps: int
    test: dict[str, dict[str, float]]
    best_baseline: str
    data_window: str
    tuned: dict[str, Any] | None = None


def load_universe(engine: Engine, symbols: tuple[str, ...], timeframe: str) -> dict[str, pd.DataFrame]:
    """The stored bars of every symbol.

    Raises:
        InputError: a symbol without stored bars (the message lists them and says how to ingest).
    """
    from storage import read_bars

    out: dict[str, pd.DataFrame] = {}
    with engine.connect() as conn:
        for symbol in symbols:
            out[symbol] = read_bars(conn, symbol, timeframe)
    empty = [s for s, bars in out.items() if bars.empty]
    if empty:
        raise InputError(
            f"no stored {timeframe} bars for {', '.join(empty)}; run `fks ingest` for them first "
            "(see `fks data list`)"
        )
    return out


def summarize(
    result: AllocatorResult, report: AllocationReport, record: Any, source: str, tuned: dict[str, Any] | None
) -> AllocatorSummary:
    """The :class:`AllocatorSummary` of a trained, evaluated and recorded allocator."""
    config = result.config
    lo, hi = result.windows["train"][0], result.windows["test"][1]
    return AllocatorSummary(
        symbols=list(config.symbols),
        timeframe=config.timeframe,
        source=source,
        run_id=record.run_id,
        experiment_id=record.experiment_id,
        model_uri=record.model_uri,
        registered_name=record.registered_name,
        version=record.version,
        algo=config.algo,
        seeds={str(r.seed): r.val_reward for r in result.runs},
        seed_kept=result.agent.seed,
        timesteps=result.agent.timesteps,
        test=report.metrics,
        best_baseline=report.best_baseline("sharpe"),
        data_window=f"{lo:%Y-%m-%d} .. {hi:%Y-%m-%d}",
        tuned=tuned,
    )


def train_and_record(
    config: AllocatorConfig,
    settings: Settings,
    *,
    engine: Engine,
    evaluate: AllocationEvaluator,
    source: str = "stored bars",
    bars: Mapping[str, pd.DataFrame] | None = None,
) -> AllocatorSummary:
    """Train, evaluate, log and register the allocator on the universe's stored bars.

    Args:
        config: the experiment.
        settings: the MLflow store (``mlflow_tracking_uri``, ``mlflow_artifact_root``) and the
            database of the Optuna study (``db_url``).
        engine: the FKS store holding the bars.
        evaluate: the test backtests (``backtest.allocation.evaluate_allocation``).
        source: where the bars come from, as a person reads it (tag ``data_source``).
        bars: the universe's bars, when not read from ``engine``.

    Returns:
        The :class:`AllocatorSummary`; the new version has the alias ``challenger``.

    Raises:
        InputError: a symbol without stored bars, an unknown or research-only feature set, or too
            little history for the config.
    """
    from features import get_feature_set
    from models.allocator.tracking import log_training
    from models.allocator.training import train_allocator

    try:
        feature_set = get_feature_set(config.feature_set)
        _ = feature_set.min_history  # a research-only set cannot be served
    except ValueError as exc:
        raise InputError(str(exc)) from None
    universe = dict(bars) if bars is not None else load_universe(engine, config.symbols, config.timeframe)
    tuned: dict[str, Any] | None = None
    if config.tuning.trials > 0 or config.tuning.timeout_s:
        from models.allocator.tuning import tune_logged

        tuning = tune_logged(universe, feature_set, config, settings)
        config, tuned = tuning.best_config, tuning.summary()
    try:
        result = train_allocator(universe, feature_set, config)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    from models.tracking import use_tracking

    use_tracking(settings.mlflow_tracking_uri)  # evaluate may read the registry (the forecaster champion)
    report = evaluate(result, universe)
    record = log_training(
        result,
        report,
        bars=universe,
        tracking_uri=settings.mlflow_tracking_uri,
        artifact_root=settings.mlflow_artifact_root,
        source=source,
        tuning=tuned,
    )
    return summarize(result, report, record, source, tuned)
