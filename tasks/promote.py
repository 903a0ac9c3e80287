"""Prefect tasks of the promotion stage: the gate, and rollback."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel

from config.backtest import PromoteConfig
from config.flows import InputError
from config.settings import Settings
from storage import list_quarantine, record_promotion
from tasks.backtest import baseline_predictions, load_series, use_tracking
from tasks.store import store_for


class PromotionSummary(BaseModel):
    """The gate's decision and why."""

    model: str
    outcome: str
    promoted: bool
    forced: bool
    challenger_version: str
    champion_version: str | None
    primary_metric: str
    challenger_value: float | None
    champion_value: float | None
    baseline_name: str
    baseline_value: float | None
    window: str
    reasons: list[str]
    promotion_id: int


def _value(metrics: dict[str, Any] | None, key: str) -> float | None:
    if not metrics or key not in metrics:
        return None
    value = float(metrics[key])
    return value if pd.notna(value) else None


def _window_validated(
    settings: Settings, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
) -> bool:
    """True when no row of the window is waiting in quarantine (its data passed validation)."""
    with store_for(settings).connect() as conn:
        pending = list_quarantine(conn, status="quarantined", symbol=symbol, timeframe=timeframe)
    return not any(e.ts is None or start <= e.ts <= end for e in pending)


@task(name="promotion-gate", task_run_name="gate-{config.model}", cache_policy=NONE)
def gate_model(config: PromoteConfig, settings: Settings) -> PromotionSummary:
    """Backtest challenger and champion on the challenger's out-of-sample window, decide, apply, record."""
    from backtest.evaluate import (
        benchmark_positions,
        evaluate_model,
        evaluate_positions,
        resolve_model,
    )
    from models.gate import GateInput, best_baseline, decide
    from models.registry import apply_decision

    use_tracking(settings)
    try:
        challenger = resolve_model(f"{config.model}@challenger")
    except LookupError:
        raise InputError(
            f"{config.model} has no @challenger to judge; train one with `fks train forecaster`"
        ) from None
    try:
        champion = resolve_model(f"{config.model}@champion")
    except LookupError:
        champion = None
    window = (challenger.test_start, challenger.test_end)
    bt = config.backtest
    bars, calendar = load_series(settings, challenger.symbol, challenger.timeframe)
    evaluation, forecasts = evaluate_model(challenger, bars, bt, calendar=calendar, window=window)
    challenger_metrics = evaluation.result.metrics
    champion_metrics = None
    if champion is not None and champion.version != challenger.version:
        champion_bars, champion_calendar = load_series(settings, champion.symbol, champion.timeframe)
        champion_eval, _ = evaluate_model(
            champion, champion_bars, bt, calendar=champion_calendar, window=window
        )
        champion_metrics = champion_eval.result.metrics
    benchmarks = benchmark_positions(
        bars, pd.DatetimeIndex(forecasts.index), baseline_predictions(challenger.run_id), bt
    )
    baselines = {
        name: evaluate_positions(
            bars, positions, bt, calendar=calendar, timeframe=challenger.timeframe
        ).result.metrics
        for name, positions in benchmarks.items()
        if config.include_buy_and_hold or name != "buy and hold"
    }
    metric = config.policy.primary_metric
    baseline_name, baseline_metrics = best_baseline(baselines, metric)
    inputs = GateInput(
        challenger=challenger_metrics,
        champion=champion_metrics,
        baseline_name=baseline_name,
        baseline=baseline_metrics,
        window_start=window[0],
        window_end=window[1],
        data_validated=_window_validated(settings, challenger.symbol, challenger.timeframe, *window),
        n_trades=int(challenger_metrics.get("trades", 0)),
    )
    decision = decide(inputs, config.policy, force=config.force)
    apply_decision(
        config.model, decision, challenger_version=challenger.version, reason_tags={"actor": config.actor}
    )
    facts: dict[str, Any] = {
        "challenger_version": challenger.version,
        "champion_version": champion.version if champion else None,
        "primary_metric": metric,
        "challenger_value": _value(challenger_metrics, metric),
        "champion_value": _value(champion_metrics, metric),
        "baseline_name": baseline_name,
        "baseline_value": _value(baseline_metrics, metric),
    }
    with store_for(settings).begin() as conn:
        promotion_id = record_promotion(
            conn,
            model_name=config.model,
            decision=decision.outcome,
            actor=config.actor,
            window_start=window[0],
            window_end=window[1],
            reasons=decision.reasons,
            metrics=decision.metrics,
            **facts,
        )
    return PromotionSummary(
        model=config.model,
        outcome=decision.outcome,
        promoted=decision.promote,
        forced=decision.forced,
        **facts,
        window=f"{window[0]:%Y-%m-%d} .. {window[1]:%Y-%m-%d}",
        reasons=list(decision.reasons),
        promotion_id=promotion_id,
    )


def rollback_model(model: str, settings: Settings, *, actor: str, reason: str = "") -> str:
    """Give ``champion`` back to the previous champion and record it in ``promotions``.

    Raises:
        InputError: there is no previous champion.
    """
    from models.registry import CHAMPION, get_version_by_alias, rollback

    use_tracking(settings)
    current = get_version_by_alias(model, CHAMPION)
    try:
        restored = rollback(model, reason=reason)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    with store_for(settings).begin() as conn:
        record_promotion(
            conn,
            model_name=model,
            challenger_version=restored,
            decision="rolled_back",
            actor=actor,
            champion_version=str(current.version) if current is not None else None,
            reasons=[reason or f"rolled back to version {restored}"],
        )
    return restored
