"""The promotion gate's run: the challenger and champion backtested on a window out of sample for both.

:func:`run_gate` is the whole ``fks promote`` stage, usable without Prefect::

    summary = run_gate(PromoteConfig(), settings, engine=engine)
    summary.outcome, summary.reasons          # "refused", ["Sharpe 0.21 does not beat baseline ..."]

Steps: resolve the model's ``@challenger`` and ``@champion``
(:func:`models.promotion.resolve_rivals`); the comparison window
(:func:`models.gate.comparison_window`: the challenger's test window, less what either model has
seen); both versions backtested there with their own pyfuncs (:func:`backtest.evaluate.evaluate_model`)
and the configured baselines (:func:`evaluate_baselines`); the decision (:func:`models.gate.decide`);
the tearsheet of those backtests in a folder of its own (:func:`backtest.evidence.write_gate_tearsheet`);
then the registry and table ``promotions`` (:func:`models.promotion.apply_and_record`), whose row
links that tearsheet, and the decision written beside it (``decision.json``). It lives in
``backtest/`` because it backtests; the decision and the registry stay in ``models/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from backtest.engine import BacktestResult
from backtest.evaluate import (
    _costs,
    benchmark_positions,
    evaluate_model,
    evaluate_positions,
    load_series,
)
from backtest.evidence import write_decision, write_gate_tearsheet
from config.backtest import PromoteConfig
from config.flows import InputError
from config.models import AllocatorConfig
from config.promotion import BUY_AND_HOLD
from models.family import AnyFamily, get_family
from models.gate import comparison_window
from models.promotion import (
    PromotionSummary,
    judge_and_record,
    resolve_rivals,
    window_validated,
)
from models.registry import ModelRef

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.settings import Settings

__all__ = ["evaluate_baselines", "run_gate"]


def evaluate_baselines(
    family: AnyFamily,
    config: PromoteConfig,
    challenger: ModelRef,
    bars: pd.DataFrame,
    index: pd.DatetimeIndex,
    calendar: str,
    results: dict[str, BacktestResult] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Backtest each of ``config.gate_baselines`` on the window ``index``.

    ``results``, when given, is filled with each evaluated benchmark's backtest (for the gate's
    tearsheet), under the same names as the metrics.

    Returns:
        ``({benchmark: metrics}, {baseline: why it could not be evaluated})``; every configured
        baseline is in exactly one of them.
    """
    wanted = config.gate_baselines
    outputs, unavailable = None, None
    if any(name != BUY_AND_HOLD for name in wanted):
        try:
            outputs = family.baseline_outputs(challenger.run_id, strict=True)
        except LookupError as exc:
            unavailable = str(exc)
    problems: dict[str, str] = {}
    benchmarks = benchmark_positions(
        family, bars, index, outputs, config.backtest, names=wanted, problems=problems
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
                bars,
                benchmarks[key],
                config.backtest,
                calendar=calendar,
                timeframe=challenger.timeframe,
                symbol=challenger.symbol,
            ).result
        except ValueError as exc:
            problems[name] = f"its backtest failed: {exc}"
            continue
        metrics[key] = dict(result.metrics)
        if results is not None:
            results[key] = result
    return metrics, problems


def run_gate(config: PromoteConfig, settings: Settings, *, engine: Engine) -> PromotionSummary:
    """Backtest challenger and champion on a window out of sample for both, decide, apply, record.

    The window is :func:`models.gate.comparison_window`'s: the challenger's test window, less
    what the champion (or the challenger) has seen. A champion on another series, or without
    enough such bars, fails the champion check; a configured baseline that cannot be evaluated
    fails the baseline check (see :class:`config.backtest.PromoteConfig`).

    An allocator (``config.family == "allocator"``) is judged by
    :func:`backtest.allocation.run_allocation_gate` (its universe walked forward through its pyfunc).

    Raises:
        InputError: no challenger, a challenger whose run does not say what it was trained on,
            or no stored bars of its test window.
    """
    from models.tracking import use_tracking

    if config.family == AllocatorConfig.family:  # a universe, walked forward through its pyfunc
        from backtest.allocation import run_allocation_gate

        return run_allocation_gate(config, settings, engine=engine)
    family = get_family(config.family)
    use_tracking(settings.mlflow_tracking_uri)
    rivals = resolve_rivals(config.model, family=family)
    challenger, champion = rivals.challenger, rivals.champion
    bt = config.backtest
    bars, calendar = load_series(engine, challenger.symbol, challenger.timeframe)
    try:
        window = comparison_window(challenger, champion, pd.DatetimeIndex(bars.index), config.policy)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    span = (window.start, window.end)
    evaluation, forecasts = evaluate_model(family, challenger, bars, bt, calendar=calendar, window=span)
    challenger_metrics = evaluation.result.metrics
    results = {f"{challenger.name} v{challenger.version} (challenger)": evaluation.result}
    champion_metrics = None
    if champion is not None and window.problem is None:  # same symbol and timeframe: same bars
        champion_eval, _ = evaluate_model(family, champion, bars, bt, calendar=calendar, window=span)
        champion_metrics = champion_eval.result.metrics
        results[f"{champion.name} v{champion.version} (champion)"] = champion_eval.result
    baselines, problems = evaluate_baselines(
        family, config, challenger, bars, pd.DatetimeIndex(forecasts.index), calendar, results
    )
    evidence = write_gate_tearsheet(
        settings, challenger, f"gate-{bt.strategy}", results,
        title=f"Gate: {challenger.name} v{challenger.version} on {challenger.symbol} {challenger.timeframe}",
        window=window, costs=_costs(bt),
        notes=[
            "The promotion gate's own backtests: challenger, champion (when comparable) and the "
            "configured baselines on the comparison window, net of costs, positions decided at "
            "each bar's close and filled at the next open.",
            f"Forecasts come from each version's registered pyfunc on the last {evaluation.history} "
            "raw bars, as served.",
        ],
    )  # fmt: skip
    summary = judge_and_record(
        config, rivals, window, challenger=challenger_metrics, champion=champion_metrics,
        baselines=baselines, problems=problems,
        data_validated=window_validated(engine, challenger.symbol, challenger.timeframe, *span),
        engine=engine, tearsheet=str(evidence),
    )  # fmt: skip
    write_decision(evidence, summary)
    return summary
