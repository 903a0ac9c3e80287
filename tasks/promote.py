"""Prefect tasks of the promotion stage: the gate, and rollback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel

from config.backtest import PromoteConfig
from config.flows import InputError
from config.promotion import BUY_AND_HOLD
from config.settings import Settings
from storage import list_quarantine, record_promotion
from tasks.backtest import baseline_predictions, load_series, use_tracking
from tasks.store import store_for

if TYPE_CHECKING:
    from backtest.evaluate import ModelRef


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
    window_bars: int | None = None
    window_narrowed: bool = False
    baseline_problems: dict[str, str] = {}
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


def _evaluate_baselines(
    config: PromoteConfig,
    challenger: ModelRef,
    bars: pd.DataFrame,
    index: pd.DatetimeIndex,
    calendar: str,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Backtest each of ``config.gate_baselines`` on the window ``index``.

    Returns:
        ``({benchmark: metrics}, {baseline: why it could not be evaluated})``; every configured
        baseline is in exactly one of them.
    """
    from backtest.evaluate import benchmark_positions, evaluate_positions

    wanted = config.gate_baselines
    predictions, unavailable = None, None
    if any(name != BUY_AND_HOLD for name in wanted):
        try:
            predictions = baseline_predictions(challenger.run_id, strict=True)
        except LookupError as exc:
            unavailable = str(exc)
    problems: dict[str, str] = {}
    benchmarks = benchmark_positions(
        bars, index, predictions, config.backtest, names=wanted, problems=problems
    )
    if unavailable is not None:
        problems = dict.fromkeys(problems, unavailable)
    metrics: dict[str, dict[str, Any]] = {}
    for name in wanted:
        key = name if name == BUY_AND_HOLD else f"baseline {name}"
        if key not in benchmarks:
            continue
        try:
            result = evaluate_positions(
                bars, benchmarks[key], config.backtest, calendar=calendar, timeframe=challenger.timeframe
            ).result
        except ValueError as exc:
            problems[name] = f"its backtest failed: {exc}"
            continue
        metrics[key] = dict(result.metrics)
    return metrics, problems


def _gate_baseline(
    evaluated: dict[str, dict[str, Any]], problems: dict[str, str], metric: str
) -> tuple[str, dict[str, Any]]:
    """The baseline the challenger is compared with: the best evaluated one on ``metric``; the first
    evaluated one when none has a finite ``metric`` (the check then fails, saying so); the first
    that could not be evaluated (with no metrics) when none was (the problems fail the check)."""
    from models.gate import best_baseline

    if evaluated:
        try:
            return best_baseline(evaluated, metric)
        except ValueError:
            name = next(iter(evaluated))
            return name, evaluated[name]
    return next(iter(problems)), {}


@task(name="promotion-gate", task_run_name="gate-{config.model}", cache_policy=NONE)
def gate_model(config: PromoteConfig, settings: Settings) -> PromotionSummary:
    """Backtest challenger and champion on a window out of sample for both, decide, apply, record.

    The window is :func:`models.gate.comparison_window`'s: the challenger's test window, less
    what the champion (or the challenger) has seen. A champion on another series, or without
    enough such bars, fails the champion check; a configured baseline that cannot be evaluated
    fails the baseline check (see :class:`config.backtest.PromoteConfig`).

    Raises:
        InputError: no challenger, a challenger whose run does not say what it was trained on,
            or no stored bars of its test window.
    """
    from backtest.evaluate import evaluate_model, resolve_model
    from models.gate import GateInput, comparison_window, decide
    from models.registry import CHAMPION, apply_decision, get_version_by_alias

    use_tracking(settings)
    try:
        challenger = resolve_model(f"{config.model}@challenger")
    except LookupError:
        raise InputError(
            f"{config.model} has no @challenger to judge; train one with `fks train forecaster`"
        ) from None
    except ValueError as exc:
        raise InputError(f"cannot judge the challenger: {exc}") from None
    champion: ModelRef | None = None
    champion_version: str | None = None
    champion_problem: str | None = None
    try:
        champion = resolve_model(f"{config.model}@champion")
        champion_version = champion.version
    except LookupError:
        pass  # no champion yet
    except ValueError as exc:  # a champion whose run does not say what it saw cannot be compared
        current = get_version_by_alias(config.model, CHAMPION)
        champion_version = None if current is None else str(current.version)
        champion_problem = f"The champion cannot be compared: {exc}"
    if champion is not None and champion.version == challenger.version:
        champion = None  # the same version is no rival of itself
    bt = config.backtest
    bars, calendar = load_series(settings, challenger.symbol, challenger.timeframe)
    try:
        window = comparison_window(challenger, champion, pd.DatetimeIndex(bars.index), config.policy)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    span = (window.start, window.end)
    evaluation, forecasts = evaluate_model(challenger, bars, bt, calendar=calendar, window=span)
    challenger_metrics = evaluation.result.metrics
    champion_metrics = None
    if champion is not None and window.problem is None:  # same symbol and timeframe: same bars
        champion_eval, _ = evaluate_model(champion, bars, bt, calendar=calendar, window=span)
        champion_metrics = champion_eval.result.metrics
    baselines, problems = _evaluate_baselines(
        config, challenger, bars, pd.DatetimeIndex(forecasts.index), calendar
    )
    metric = config.policy.primary_metric
    baseline_name, baseline_metrics = _gate_baseline(baselines, problems, metric)
    inputs = GateInput(
        challenger=challenger_metrics,
        champion=champion_metrics,
        baseline_name=baseline_name,
        baseline=baseline_metrics,
        window_start=span[0],
        window_end=span[1],
        data_validated=_window_validated(settings, challenger.symbol, challenger.timeframe, *span),
        n_trades=int(challenger_metrics.get("trades", 0)),
        champion_problem=champion_problem or window.problem,
        window_note=window.note,
        baseline_problems=problems,
    )
    decision = decide(inputs, config.policy, force=config.force)
    apply_decision(
        config.model, decision, challenger_version=challenger.version, reason_tags={"actor": config.actor}
    )
    facts: dict[str, Any] = {
        "challenger_version": challenger.version,
        "champion_version": champion_version,
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
            window_start=span[0],
            window_end=span[1],
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
        window=f"{span[0]:%Y-%m-%d} .. {span[1]:%Y-%m-%d}",
        window_bars=window.n_bars,
        window_narrowed=window.narrowed,
        baseline_problems=problems,
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
