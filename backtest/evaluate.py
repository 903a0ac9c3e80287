"""Walk-forward evaluation of a registered model version: its own pyfunc, on raw bars, net of costs.

What would be served is what is tested: each forecast comes from the registered pyfunc given the
raw bars up to the decision bar (``history`` of them, by default the model's ``min_bars``, the
least a client may send), exactly as a client of the REST service would send them. The model's
features are history-invariant, so these are the forecasts training evaluated on the same bars.
The model's family turns its output into positions (:meth:`models.family.ModelFamily.positions`),
decided at the bar's close and filled at the next open.

:func:`run_backtest` is the whole ``fks backtest`` stage (a registered version against buy and
hold and its baselines, the tearsheet, the MLflow records), usable without Prefect::

    summary = run_backtest(BacktestConfig(model="fks-forecaster@challenger"), settings, engine=engine)
    summary.metrics["buy and hold"]["sharpe"], summary.tearsheet

:func:`strategy_metrics` is what training logs of its test forecasts traded net of default costs
(:func:`models.trainer.train_and_register`'s ``evaluate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from backtest.engine import BacktestResult, Costs, run
from config.backtest import STRATEGIES, BacktestConfig, CostsConfig, EvaluationConfig
from config.flows import InputError
from config.promotion import BUY_AND_HOLD
from models.family import AnyFamily, Trained, TrainingData
from models.registry import ModelRef

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.settings import Settings

__all__ = [
    "STRATEGY_METRICS",
    "BacktestSummary",
    "Evaluation",
    "benchmark_positions",
    "evaluate_model",
    "evaluate_positions",
    "load_series",
    "min_bars",
    "rolling_forecasts",
    "run_backtest",
    "strategy_metrics",
]

STRATEGY_METRICS = ("total_return", "sharpe", "max_drawdown", "trades")
"""The figures :func:`strategy_metrics` reports per strategy."""


def min_bars(model: Any) -> int:
    """Bars a loaded pyfunc needs per request (its ``min_bars``), or 1 when it does not say."""
    inner = model.unwrap_python_model() if hasattr(model, "unwrap_python_model") else model
    return int(getattr(inner, "min_bars", 1))


def rolling_forecasts(
    model: Any, bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, history: int | None = None
) -> pd.DataFrame:
    """The model's output at every bar in ``[start, end]``, each from the ``history`` raw bars up to it.

    ``history`` defaults to the model's ``min_bars``. All requests go in one call, one
    pseudo-symbol per decision bar, as a batch client would. The result is indexed by the
    decision bar (UTC ``ts``) and has the model's output columns other than ``symbol`` and ``ts``
    (for the forecaster ``forecast_log_return``, ``prob_up`` and ``horizon``).

    Raises:
        ValueError: no bars in the window, or fewer than ``history`` bars before its first bar.
    """
    history = min_bars(model) if history is None else history
    positions = np.flatnonzero((bars.index >= start) & (bars.index <= end))
    if len(positions) == 0:
        raise ValueError(f"no bars between {start} and {end}; ingest the evaluation window first")
    if positions[0] + 1 < history:
        raise ValueError(
            f"the window starts at {bars.index[positions[0]]} with {positions[0] + 1} bars up to it, "
            f"but each forecast needs {history}; ingest earlier history or start the window later"
        )
    raw = bars.reset_index()
    raw["ts"] = raw["ts"].map(lambda t: t.isoformat())
    pieces = []
    for i in positions:
        piece = raw.iloc[max(0, i - history + 1) : i + 1].copy()
        piece["symbol"] = f"t{i:08d}"
        pieces.append(piece)
    frame = pd.concat(pieces, ignore_index=True)
    numeric = ["open", "high", "low", "close", "volume"]
    frame[numeric] = frame[numeric].astype("float64")
    out = model.predict(frame[["symbol", "ts", *numeric]])
    out.index = pd.DatetimeIndex(pd.to_datetime(out["ts"], utc=True), name="ts")
    return out.sort_index().drop(columns=["symbol", "ts"], errors="ignore")


def _costs(config: EvaluationConfig | CostsConfig) -> Costs:
    c = config.costs if isinstance(config, EvaluationConfig) else config
    return Costs(commission_bps=c.commission_bps, slippage_bps=c.slippage_bps, min_fee=c.min_fee)


@dataclass(frozen=True)
class Evaluation:
    """One strategy's backtest over the whole window and per walk-forward block."""

    result: BacktestResult
    blocks: list[dict[str, Any]]
    history: int | None = None
    """Raw bars sent with each forecast request (model evaluations only)."""


def evaluate_positions(
    bars: pd.DataFrame,
    positions: pd.Series,
    config: EvaluationConfig,
    *,
    calendar: str,
    timeframe: str,
    symbol: str | None = None,
) -> Evaluation:
    """Backtest ``positions`` on ``bars`` over their index, whole and in ``config.windows`` blocks.

    ``symbol`` names the asset in the result (its trades' ``asset``, its positions' name); by
    default the positions' own name is kept.
    """
    window = bars.loc[positions.index[0] : positions.index[-1]]
    positions = positions.reindex(window.index).fillna(0.0)
    if symbol is not None:
        positions = positions.rename(symbol)
    kwargs: dict[str, Any] = {"costs": _costs(config), "calendar": calendar, "timeframe": timeframe}
    whole = run(window, positions, **kwargs)
    blocks = []
    for part in np.array_split(np.arange(len(window)), config.windows):
        if len(part) < 3:
            continue
        sub = window.iloc[part]
        res = run(sub, positions.iloc[part], **kwargs)
        blocks.append({"start": sub.index[0], "end": sub.index[-1], **res.metrics})
    return Evaluation(result=whole, blocks=blocks)


def evaluate_model(
    family: AnyFamily,
    ref: ModelRef,
    bars: pd.DataFrame,
    config: EvaluationConfig,
    *,
    calendar: str,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> tuple[Evaluation, pd.DataFrame]:
    """Forecast with the registered pyfunc over ``window`` (default: its test window), turn the
    output into positions by ``family``'s rule and backtest them.

    Returns:
        The evaluation and the model's output per decision bar (:func:`rolling_forecasts`).
    """
    import mlflow

    start, end = window or (ref.test_start, ref.test_end)
    model = mlflow.pyfunc.load_model(ref.uri)
    history = min_bars(model) if config.history is None else config.history
    forecasts = rolling_forecasts(model, bars, start, end, history)
    positions = family.positions(forecasts, strategy=config.strategy, threshold=config.threshold)
    evaluation = evaluate_positions(
        bars, positions, config, calendar=calendar, timeframe=ref.timeframe, symbol=ref.symbol
    )
    return replace(evaluation, history=history), forecasts


def benchmark_positions(
    family: AnyFamily,
    bars: pd.DataFrame,
    index: pd.DatetimeIndex,
    baselines: pd.DataFrame | None,
    config: EvaluationConfig,
    *,
    names: Sequence[str] | None = None,
    problems: dict[str, str] | None = None,
) -> Mapping[str, pd.Series]:
    """Benchmarks on the same bars: buy and hold, and each baseline's logged test output as a strategy.

    Args:
        family: the model's family (its positions rule, its default baselines).
        bars: the series' bars.
        index: the decision bars of the window (the model's forecasts' index).
        baselines: the training run's logged baseline outputs
            (:meth:`models.family.ModelFamily.baseline_outputs`, one column per baseline), or
            None when there are none.
        config: strategy and threshold that turn outputs into positions.
        names: the benchmarks wanted: ``"buy and hold"`` and baseline names (columns of
            ``baselines``). None: buy and hold and the family's ``baselines`` (for the
            forecaster ``last_return``, ``ridge`` and ``hist_gb``) where they can be built (the
            tearsheet's best-effort set).
        problems: filled with ``{name: why}`` for each of ``names`` that cannot be built (no
            logged outputs, no such column, no output on any bar of ``index``), so a caller that
            needs every one of them can refuse with the reason instead of skipping it.

    Returns:
        ``{"buy and hold": positions, "baseline <name>": positions, ...}`` in the order asked.
    """
    wanted = list(names) if names is not None else [BUY_AND_HOLD, *family.baselines]
    out: dict[str, pd.Series] = {}
    for name in wanted:
        if name == BUY_AND_HOLD:
            out[name] = pd.Series(1.0, index=index)
            continue
        if baselines is None:
            why = "the model's training run logged no baseline test predictions"
        elif name not in baselines:
            why = (
                f"the training run's test predictions have no {name!r} column (baselines logged: "
                f"{list(baselines.columns)}); fix or remove the name in the promotion config's "
                f"baselines, or retrain the model with `{family.train_command}`"
            )
        else:
            forecast = baselines[name].reindex(index)
            if forecast.notna().any():
                out[f"baseline {name}"] = family.positions(
                    forecast.fillna(0.0), strategy=config.strategy, threshold=config.threshold
                )
                continue
            why = f"its logged test forecasts cover none of the {len(index)} bars of the window" + (
                f" {index[0]:%Y-%m-%d}..{index[-1]:%Y-%m-%d}" if len(index) else ""
            )
        if problems is not None and names is not None:
            problems[name] = why
    return out


def strategy_metrics(family: AnyFamily, trained: Trained, data: TrainingData) -> dict[str, dict[str, float]]:
    """The trained model's test output traded ``long_flat`` and ``long_short`` (threshold 0) net of
    the default costs, filled at the next open: :data:`STRATEGY_METRICS` per strategy.

    Annualised with the asset's calendar and timeframe when ``data`` knows the calendar.
    """
    output = trained.test_output
    window = data.bars.loc[output.index[0] : output.index[-1]]
    costs = _costs(CostsConfig())
    timeframe = data.timeframe if data.calendar is not None else None
    out: dict[str, dict[str, float]] = {}
    for strategy in STRATEGIES:
        positions = family.positions(output, strategy=strategy, threshold=0.0)
        positions = positions.reindex(window.index).fillna(0.0)
        result = run(window, positions, costs=costs, calendar=data.calendar, timeframe=timeframe)
        out[strategy] = {k: float(result.metrics[k]) for k in STRATEGY_METRICS}
    return out


def load_series(engine: Engine, symbol: str, timeframe: str) -> tuple[pd.DataFrame, str]:
    """Stored bars of a series and its calendar name.

    Raises:
        InputError: the series is not stored.
    """
    from storage import get_asset, read_bars

    with engine.connect() as conn:
        bars = read_bars(conn, symbol, timeframe)
        asset = get_asset(conn, symbol)
    if bars.empty or asset is None:
        raise InputError(f"no stored {timeframe} bars for {symbol}; run `fks ingest` first")
    return bars, asset.calendar


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


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and np.isfinite(v)}


def run_backtest(config: BacktestConfig, settings: Settings, *, engine: Engine) -> BacktestSummary:
    """Backtest a registered model version on its out-of-sample window against buy and hold and the
    baselines, write the tearsheet into a folder of this run's own
    (:func:`backtest.report.new_report_folder`:
    ``<data dir>/reports/backtests/<model>-v<version>/<strategy>-<YYYYmmddTHHMMSS>-<run id>/``,
    never overwritten) and log it (artifacts under ``backtest/<that folder's name>/``, metrics
    ``backtest_*``) on the model's MLflow run. The trades are named after the model's symbol.

    Raises:
        InputError: an unknown model, alias or version, or no stored bars of its series.
    """
    import mlflow

    from backtest.report import new_report_folder, write_tearsheet
    from models.family import get_family
    from models.registry import resolve_model
    from models.tracking import use_tracking

    family = get_family(config.family)
    use_tracking(settings.mlflow_tracking_uri)
    try:
        ref = resolve_model(config.model, family=family)
    except LookupError as exc:
        raise InputError(str(exc)) from None
    bars, calendar = load_series(engine, ref.symbol, ref.timeframe)
    evaluation, forecasts = evaluate_model(family, ref, bars, config, calendar=calendar)
    label = f"{ref.name} v{ref.version} ({config.strategy})"
    results = {label: evaluation.result}
    for name, positions in benchmark_positions(
        family, bars, pd.DatetimeIndex(forecasts.index), family.baseline_outputs(ref.run_id), config
    ).items():
        results[name] = evaluate_positions(
            bars, positions, config, calendar=calendar, timeframe=ref.timeframe, symbol=ref.symbol
        ).result
    folder = new_report_folder(settings.data_dir, ref.name, ref.version, config.strategy)
    tearsheet = write_tearsheet(
        results,
        folder,
        title=f"{ref.name} v{ref.version}: {ref.symbol} {ref.timeframe}",
        subtitle=f"out of sample {ref.test_start:%Y-%m-%d} .. {ref.test_end:%Y-%m-%d}, net of costs",
        costs=_costs(config),
        notes=[
            "Positions are decided at each bar's close from the forecast and filled at the next open.",
            f"Forecasts come from the registered pyfunc on the last {evaluation.history} raw bars, "
            "as served.",
        ],
    )
    client = mlflow.MlflowClient()
    client.log_artifacts(ref.run_id, str(folder), f"backtest/{folder.name}")
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
