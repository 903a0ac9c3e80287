"""Backtests of an allocator and its baselines on its test span, net of the same costs.

The agent's test episode and every baseline's targets (:mod:`models.allocator.baselines`) go
through :func:`backtest.run` on the same rows with ``execution="next_open"`` and the config's
costs, so every figure comes from one engine (the environment steps with the same kernel: the
agent's backtest equity is its episode's equity)::

    result = train_allocator(bars, feature_set, config)
    report = evaluate_allocation(result)
    report.metrics["agent"]["sharpe"], report.metrics["equal_weight"]["sharpe"]

Annualisation: bars per year observed over the whole aligned history (365 for a 24/7 daily
universe, about 252 for exchange days), the same for every strategy.

A registered version is walked forward through its own pyfunc by :func:`version_targets` (at each
bar's close the raw bars a client would send and the account's weights; on its own test span this
replays its training's test episode), which :func:`run_allocation_gate` (``fks promote --model
fks-allocator``, dispatched to by :func:`backtest.promotion.run_gate`) uses to judge challenger and
champion beside the baselines on a window out of sample for both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtest.engine import BacktestResult, Costs, run
from config.backtest import BacktestConfig, PromoteConfig
from config.flows import InputError
from config.models import AllocatorConfig
from config.promotion import BUY_AND_HOLD
from envs.data import AlignedAssets, PortfolioData
from models.allocator.baselines import (
    BASELINES,
    BaselineOptions,
    account_targets,
    banded_targets,
    baseline_targets,
    capped,
)
from models.allocator.baselines import BUY_AND_HOLD as ALLOCATION_BUY_AND_HOLD
from models.allocator.report import ALLOCATION_METRICS, AllocationReport
from models.allocator.training import AGENT, AllocatorResult, costs_of
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

    from backtest.evaluate import BacktestSummary
    from config.settings import Settings

FORECASTER = "forecaster"
"""The forecaster-driven allocation's name among the strategies of a report."""

__all__ = [
    "FORECASTER",
    "backtest_targets",
    "evaluate_allocation",
    "forecaster_allocation",
    "forecaster_targets",
    "periods_per_year",
    "run_allocation_backtest",
    "run_allocation_gate",
    "version_targets",
]


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year of ``index`` (observed: rows per 365.25 days).

    Raises:
        ValueError: fewer than two rows.
    """
    if len(index) < 2:
        raise ValueError("need at least two bars to count bars per year")
    days = (index[-1] - index[0]).total_seconds() / 86_400.0
    return (len(index) - 1) * 365.25 / days


def backtest_targets(
    data: PortfolioData, rows: slice, targets: pd.DataFrame, costs: Costs, *, ppy: float
) -> BacktestResult:
    """:func:`backtest.run` of ``targets`` (one column per asset, indexed by ``data.index[rows]``)
    on the universe's prices, filled at the next open, with a capital of 1."""
    return run(data.prices(rows), targets, costs, "next_open", initial_capital=1.0, periods_per_year=ppy)


def _figures(result: BacktestResult) -> dict[str, float]:
    out = {k: float(result.metrics[k]) for k in ALLOCATION_METRICS if k in result.metrics}
    out["costs_paid"] = float(result.costs_paid)
    return out


def _traded(result: BacktestResult) -> pd.Series:
    held = result.positions
    frame = held if isinstance(held, pd.DataFrame) else held.to_frame()
    return frame.diff().abs().sum(axis=1).fillna(frame.iloc[0].abs().sum())


def evaluate_allocation(
    result: AllocatorResult,
    bars: Mapping[str, pd.DataFrame] | None = None,
    extra: Mapping[str, pd.DataFrame] | None = None,
) -> AllocationReport:
    """Backtest the agent's test targets and each baseline's on the test rows, net of costs.

    Args:
        result: a trained allocator (:func:`models.allocator.training.train_allocator`).
        bars: the universe's raw bars; when given and the registry (the active MLflow store) has
            an ``fks-forecaster@champion``, the forecaster-driven allocation joins the baselines
            as ``forecaster`` (:func:`forecaster_targets`).
        extra: more strategies' targets on the same rows (one column per asset).

    Returns:
        The :class:`AllocationReport` (the agent first, then the baselines in order).

    Raises:
        ValueError: targets not on the test rows (see :func:`backtest.run`).
    """
    data, rows = result.data, result.test_rows
    costs = costs_of(result.config)
    ppy = periods_per_year(data.index)
    strategies = {AGENT: result.test.targets, **result.baselines}
    if bars is not None:
        driven = forecaster_targets(result, bars)
        if driven is not None:
            strategies[FORECASTER] = driven
    strategies.update(extra or {})
    runs = {
        name: backtest_targets(data, rows, targets, costs, ppy=ppy) for name, targets in strategies.items()
    }
    agent = runs[AGENT]
    weights = agent.positions if isinstance(agent.positions, pd.DataFrame) else agent.positions.to_frame()
    return AllocationReport(
        metrics={name: _figures(r) for name, r in runs.items()},
        equity=pd.DataFrame({name: r.equity for name, r in runs.items()}),
        turnover=pd.DataFrame({name: _traded(r) for name, r in runs.items()}),
        weights=weights.astype(np.float64),
        periods_per_year=ppy,
    )


def forecaster_targets(
    result: AllocatorResult, bars: Mapping[str, pd.DataFrame], *, alias: str = "champion"
) -> pd.DataFrame | None:
    """The forecaster-driven allocation on the allocator's test rows (:func:`forecaster_allocation`
    under the allocator's caps, band and costs), or None (see there)."""
    data, rows, config = result.data, result.test_rows, result.config
    return forecaster_allocation(
        bars,
        data.assets,
        data.index[rows],
        data.open[rows],
        data.close[rows],
        data.tradable[rows],
        max_weight=config.max_weight,
        gross_cap=config.gross_cap,
        band=config.rebalance_band,
        costs=costs_of(config),
        alias=alias,
    )


def forecaster_allocation(
    bars: Mapping[str, pd.DataFrame],
    assets: Sequence[str],
    index: pd.DatetimeIndex,
    open_: np.ndarray,
    close: np.ndarray,
    tradable: np.ndarray,
    *,
    max_weight: float,
    gross_cap: float,
    band: float,
    costs: Costs,
    alias: str = "champion",
) -> pd.DataFrame | None:
    """The forecaster-driven allocation on the rows ``index`` (prices ``open_``/``close``, ``(T,
    N)``), when ``fks-forecaster@<alias>`` exists: at each decision bar the registered
    forecaster's pyfunc forecasts every symbol from its raw bars up to that bar (as served,
    :func:`backtest.evaluate.rolling_forecasts`); the assets forecast to rise share the account
    equally (each capped at ``max_weight``; none: all cash), traded under ``band`` and ``costs``.

    Returns:
        The targets (one column per asset, on ``index``), or None when there is no such
        forecaster, it was trained on another timeframe, or a symbol lacks the history it needs.
    """
    import mlflow

    from backtest.evaluate import rolling_forecasts
    from config.models import ForecasterConfig
    from models.registry import get_version_by_alias

    version = get_version_by_alias(ForecasterConfig.registered_name, alias)
    if version is None:
        return None
    model = mlflow.pyfunc.load_model(f"models:/{ForecasterConfig.registered_name}/{version.version}")
    columns = []
    for symbol in assets:
        own = bars[symbol]
        try:
            out = rolling_forecasts(model, own, index[0], index[-1])
        except ValueError:
            return None  # another timeframe, or too little history before the window
        forecast = out["forecast_log_return"].reindex(own.index[own.index <= index[-1]]).ffill()
        columns.append(forecast.reindex(index, method="ffill").fillna(0.0).to_numpy() > 0.0)
    rising = np.column_stack(columns).astype(np.float64)
    count = rising.sum(axis=1, keepdims=True)
    desired = np.divide(rising, count, out=np.zeros_like(rising), where=count > 0)
    desired = capped(desired, max_weight, gross_cap)
    targets = banded_targets(desired, open_, close, tradable, band=band, costs=costs, gross_cap=gross_cap)
    return pd.DataFrame(targets, index=index, columns=list(assets))


# ---------------------------------------------------------------------------------------------
# A registered allocator version, walked forward through its own pyfunc, and the promotion gate


def version_targets(
    model: Any,
    bars: Mapping[str, pd.DataFrame],
    aligned: AlignedAssets,
    rows: slice,
    costs: Costs,
    history: int | None = None,
) -> pd.DataFrame:
    """The targets a registered allocator's account executes over ``aligned``'s ``rows``, asking its
    pyfunc at every bar's close, as a client would: the last ``history`` raw bars of each symbol
    up to that bar (default its ``min_bars``) and the account's current weights; the answer is
    traded under the environment's rules with the band, caps and costs (the spec's band and caps,
    the given costs), so on the version's own test span this replays its training's test episode.

    Raises:
        ValueError: too little history before the window for ``history`` bars.
    """
    inner = model.unwrap_python_model()
    spec = inner.spec
    history = history or inner.min_bars
    index = aligned.index[rows]
    raw = {s: bars[s].reset_index() for s in spec.universe}
    for frame in raw.values():
        frame["ts"] = frame["ts"].map(lambda t: t.isoformat())
    ends = {s: bars[s].index.searchsorted(index, side="right") for s in spec.universe}

    def decide(t: int, weights: np.ndarray) -> np.ndarray:
        pieces = []
        for j, symbol in enumerate(spec.universe):
            stop = int(ends[symbol][t])
            if stop < history:
                raise ValueError(
                    f"{symbol} has {stop} bars up to {index[t]}; the allocator needs {history}: ingest "
                    "earlier history"
                )
            piece = raw[symbol].iloc[stop - history : stop][["ts", "open", "high", "low", "close", "volume"]]
            piece = piece.assign(symbol=symbol, weight=float(weights[j]))
            pieces.append(piece)
        answer = model.predict(pd.concat(pieces, ignore_index=True))
        return np.asarray(answer["weight"].to_numpy()[:-1], dtype=np.float64)

    targets = account_targets(
        decide,
        aligned.open[rows],
        aligned.close[rows],
        aligned.tradable[rows],
        band=spec.rebalance_band,
        costs=costs,
        gross_cap=spec.gross_cap,
    )
    return pd.DataFrame(targets, index=index, columns=list(spec.universe))


def _prices(aligned: AlignedAssets, rows: slice) -> dict[str, pd.DataFrame]:
    index = aligned.index[rows]
    return {
        asset: pd.DataFrame({"open": aligned.open[rows, j], "close": aligned.close[rows, j]}, index=index)
        for j, asset in enumerate(aligned.assets)
    }


def _trained_config(ref: ModelRef) -> AllocatorConfig:
    import mlflow

    version = mlflow.MlflowClient().get_model_version(ref.name, ref.version)
    try:
        return AllocatorConfig.model_validate_json(version.tags["config"])
    except (KeyError, ValueError) as exc:
        raise InputError(
            f"{ref.name} version {ref.version} carries no readable config tag ({exc}); retrain it with "
            "`fks train allocator`"
        ) from None


def run_allocation_gate(config: PromoteConfig, settings: Settings, *, engine: Engine) -> PromotionSummary:
    """The promotion gate for an allocator: challenger and champion walked forward through their own
    pyfuncs on a window out of sample for both, beside the baselines, net of the same costs.

    The window is :func:`models.gate.comparison_window`'s over the universe's aligned rows (a
    champion on another universe or timeframe cannot be compared). Each version trades its own
    answers under its own band (:func:`version_targets`); the baselines
    (``config.gate_baselines``: buy and hold, equal weight, minimum variance, maximum Sharpe; and
    the forecaster-driven allocation whenever ``fks-forecaster@champion`` exists, or when listed as
    ``forecaster``, in which case it must exist) trade under the challenger's band, caps and
    baseline window; every account starts flat at the
    window's first bar and pays ``config.backtest.costs``. The tearsheet of those backtests goes
    into a folder of its own (:func:`backtest.promotion.write_gate_tearsheet`); then
    :func:`models.gate.decide` and the registry and ``promotions`` records
    (:func:`models.promotion.apply_and_record`), the row linking the tearsheet, and
    ``decision.json`` beside it.

    Raises:
        InputError: no challenger, a challenger whose run does not say what it was trained on, or
            a universe without stored bars.
    """
    import mlflow

    from backtest.evidence import write_decision, write_gate_tearsheet
    from envs.data import align_assets
    from features import get_feature_set
    from models.allocator.family import ALLOCATOR
    from models.allocator.service import load_universe
    from models.tracking import use_tracking

    use_tracking(settings.mlflow_tracking_uri)
    rivals = resolve_rivals(config.model, family=ALLOCATOR)
    challenger, champion = rivals.challenger, rivals.champion
    trained = _trained_config(challenger)
    bars = load_universe(engine, trained.symbols, trained.timeframe)
    aligned = align_assets(bars, get_feature_set(trained.feature_set), timeframe=trained.timeframe)
    try:
        window = comparison_window(challenger, champion, aligned.index, config.policy)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    first = int(aligned.index.searchsorted(window.start))
    rows = slice(first, int(aligned.index.searchsorted(window.end, side="right")))
    c = config.backtest.costs
    costs = Costs(commission_bps=c.commission_bps, slippage_bps=c.slippage_bps, min_fee=c.min_fee)
    ppy = periods_per_year(aligned.index)
    prices = _prices(aligned, rows)

    results: dict[str, BacktestResult] = {}

    def metrics_of(targets: pd.DataFrame, label: str) -> dict[str, Any]:
        result = run(prices, targets, costs, "next_open", initial_capital=1.0, periods_per_year=ppy)
        results[label] = result
        return {**result.metrics, "costs_paid": result.costs_paid}

    model = mlflow.pyfunc.load_model(challenger.uri)
    label = f"{challenger.name} v{challenger.version} (challenger)"
    challenger_metrics = metrics_of(version_targets(model, bars, aligned, rows, costs), label)
    champion_metrics = None
    if champion is not None and window.problem is None:  # the same universe and timeframe
        other = mlflow.pyfunc.load_model(champion.uri)
        champion_label = f"{champion.name} v{champion.version} (champion)"
        champion_metrics = metrics_of(version_targets(other, bars, aligned, rows, costs), champion_label)
    options = BaselineOptions(
        max_weight=trained.max_weight,
        gross_cap=trained.gross_cap,
        band=trained.rebalance_band,
        window=trained.baseline_window,
        costs=costs,
    )
    names = {BUY_AND_HOLD: ALLOCATION_BUY_AND_HOLD, **{b: b for b in BASELINES}}
    baselines: dict[str, dict[str, Any]] = {}
    problems: dict[str, str] = {}
    wanted = list(config.gate_baselines)
    known = [n for n in wanted if n in names]
    for name in wanted:
        if name not in names and name != FORECASTER:
            problems[name] = f"not an allocator baseline (known: {', '.join([*names, FORECASTER])})"
    targets = baseline_targets(
        aligned.open[: rows.stop],
        aligned.close[: rows.stop],
        aligned.tradable[: rows.stop],
        options,
        index=aligned.index[: rows.stop],
        assets=aligned.assets,
        start=first,
        names=tuple(names[n] for n in known),
    )
    for name in known:
        baselines[name] = metrics_of(targets[names[name]], name)
    # the forecaster-driven allocation joins when fks-forecaster@champion exists; listed, it must
    driven = forecaster_allocation(
        bars, aligned.assets, aligned.index[rows], aligned.open[rows], aligned.close[rows],
        aligned.tradable[rows], max_weight=trained.max_weight, gross_cap=trained.gross_cap,
        band=trained.rebalance_band, costs=costs,
    )  # fmt: skip
    if driven is not None:
        baselines[FORECASTER] = metrics_of(driven, FORECASTER)
    elif FORECASTER in wanted:
        problems[FORECASTER] = "no fks-forecaster@champion forecasts this universe on its timeframe"
    validated = all(
        window_validated(engine, s, trained.timeframe, window.start, window.end) for s in trained.symbols
    )
    evidence = write_gate_tearsheet(
        settings, challenger, "gate-weights", results,
        title=f"Gate: {challenger.name} v{challenger.version} on {', '.join(trained.symbols)} "
        f"{trained.timeframe}",
        window=window, costs=costs,
        notes=[
            "The promotion gate's own backtests: challenger, champion (when comparable) and the "
            "configured baselines on the comparison window, net of costs, every account starting "
            "flat; weights decided at each bar's close and filled at the next open.",
        ],
    )  # fmt: skip
    summary = judge_and_record(
        config, rivals, window, challenger=challenger_metrics, champion=champion_metrics,
        baselines=baselines, problems=problems, data_validated=validated, engine=engine,
        tearsheet=str(evidence),
    )  # fmt: skip
    write_decision(evidence, summary)
    return summary


def run_allocation_backtest(config: BacktestConfig, settings: Settings, *, engine: Engine) -> BacktestSummary:
    """``fks backtest --model fks-allocator@challenger``: a registered allocator version walked
    forward through its own pyfunc over its test span (:func:`version_targets`) beside the
    baselines, net of ``config.costs``; the tearsheet is written into a folder of this run's own,
    ``<data dir>/reports/backtests/<model>-v<version>/weights-<YYYYmmddTHHMMSS>-<run id>/``
    (:func:`backtest.report.new_report_folder`), and logged (artifacts under
    ``backtest/<that folder's name>/``, metrics ``backtest_*``) on the version's run. ``strategy``,
    ``threshold`` and ``windows`` of the config do not apply (the allocator's output is weights);
    one block covers the window; the trades are named after the universe's symbols.

    Raises:
        InputError: an unknown model, alias or version, or a universe without stored bars.
    """
    import mlflow

    from backtest.evaluate import BacktestSummary
    from backtest.report import new_report_folder, write_tearsheet
    from envs.data import align_assets
    from features import get_feature_set
    from models.allocator.family import ALLOCATOR
    from models.allocator.service import load_universe
    from models.registry import resolve_model
    from models.tracking import use_tracking

    use_tracking(settings.mlflow_tracking_uri)
    try:
        ref = resolve_model(config.model, family=ALLOCATOR)
    except (LookupError, ValueError) as exc:
        raise InputError(str(exc)) from None
    trained = _trained_config(ref)
    bars = load_universe(engine, trained.symbols, trained.timeframe)
    aligned = align_assets(bars, get_feature_set(trained.feature_set), timeframe=trained.timeframe)
    first = int(aligned.index.searchsorted(ref.test_start))
    rows = slice(first, int(aligned.index.searchsorted(ref.test_end, side="right")))
    if rows.stop - rows.start < 2:
        raise InputError(
            f"{ref.name} v{ref.version}: fewer than two stored bars of its test window "
            f"{ref.test_start:%Y-%m-%d} .. {ref.test_end:%Y-%m-%d}; ingest them first"
        )
    c = config.costs
    costs = Costs(commission_bps=c.commission_bps, slippage_bps=c.slippage_bps, min_fee=c.min_fee)
    ppy = periods_per_year(aligned.index)
    prices = _prices(aligned, rows)
    model = mlflow.pyfunc.load_model(ref.uri)
    label = f"{ref.name} v{ref.version}"
    strategies = {label: version_targets(model, bars, aligned, rows, costs)}
    options = BaselineOptions(
        max_weight=trained.max_weight,
        gross_cap=trained.gross_cap,
        band=trained.rebalance_band,
        window=trained.baseline_window,
        costs=costs,
    )
    strategies.update(
        baseline_targets(
            aligned.open[: rows.stop],
            aligned.close[: rows.stop],
            aligned.tradable[: rows.stop],
            options,
            index=aligned.index[: rows.stop],
            assets=aligned.assets,
            start=first,
        )
    )
    results = {
        name: run(prices, targets, costs, "next_open", initial_capital=1.0, periods_per_year=ppy)
        for name, targets in strategies.items()
    }
    folder = new_report_folder(settings.data_dir, ref.name, ref.version, "weights")
    start, end = aligned.index[rows.start], aligned.index[rows.stop - 1]
    tearsheet = write_tearsheet(
        results,
        folder,
        title=f"{label}: {', '.join(trained.symbols)} {trained.timeframe}",
        subtitle=f"out of sample {start:%Y-%m-%d} .. {end:%Y-%m-%d}, net of costs",
        costs=costs,
        notes=[
            "Weights are decided at each bar's close by the registered pyfunc from the last "
            f"{model.unwrap_python_model().min_bars} raw bars of every symbol and the account's current "
            "weights, as served, and filled at the next open under the rebalancing band "
            f"{trained.rebalance_band:g}.",
            "Baselines: buy and hold, equal weight, and minimum variance and maximum Sharpe from a "
            f"rolling Ledoit-Wolf estimate on the past {trained.baseline_window} returns.",
        ],
    )
    client = mlflow.MlflowClient()
    client.log_artifacts(ref.run_id, str(folder), f"backtest/{folder.name}")
    figures = {name: _finite(r.metrics) for name, r in results.items()}
    for key, value in figures[label].items():
        client.log_metric(ref.run_id, f"backtest_{key}", value)
    return BacktestSummary(
        model=ref.name,
        version=ref.version,
        run_id=ref.run_id,
        symbol=ref.symbol,
        timeframe=ref.timeframe,
        window_start=f"{start:%Y-%m-%d}",
        window_end=f"{end:%Y-%m-%d}",
        strategy="weights",
        metrics=figures,
        blocks=[{"start": f"{start:%Y-%m-%d}", "end": f"{end:%Y-%m-%d}", **figures[label]}],
        tearsheet=str(tearsheet),
    )


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and np.isfinite(v)}
