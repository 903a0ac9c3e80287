"""Walk-forward evaluation of a registered model version: its own pyfunc, on raw bars, net of costs.

What would be served is what is tested: each forecast comes from the registered pyfunc given the
raw bars up to the decision bar (``history`` of them, by default the model's ``min_bars``, the
least a client may send), exactly as a client of the REST service would send them. The model's
features are history-invariant, so these are the forecasts training evaluated on the same bars.
Forecasts become positions at the bar's close and are filled at the next open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from backtest.engine import BacktestResult, Costs, run
from config.backtest import BacktestConfig


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and what it was trained on.

    Attributes:
        name, version, run_id: the registered version and its training run.
        symbol, timeframe: the series it was trained and tested on.
        test_start, test_end: its out-of-sample (test) window: first and last decision bar.
        val_end: the last decision bar of its training and validation data (run param
            ``data.val_end``): the model has seen the bars up to it and, through that sample's
            label, ``horizon`` bars beyond. None for a run that did not log it; the promotion gate
            then takes every bar before ``test_start`` as seen (see
            :func:`models.gate.comparison_window`).
        horizon: bars ahead the model forecasts (run param ``horizon``; 1 when not logged).
    """

    name: str
    version: str
    run_id: str
    symbol: str
    timeframe: str
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    val_end: pd.Timestamp | None = None
    horizon: int = 1

    @property
    def uri(self) -> str:
        """``models:/name/version``."""
        return f"models:/{self.name}/{self.version}"


def resolve_model(spec: str) -> ModelRef:
    """Resolve ``name@alias`` or ``name/version`` against the active MLflow tracking store.

    The symbol, timeframe, test window, end of training+validation data and horizon are read
    from the training run's params (``symbol``, ``timeframe``, ``data.test_start``,
    ``data.test_end``, ``data.val_end``, ``horizon``, as :func:`models.tracking.log_training`
    logs them); ``data.val_end`` and ``horizon`` may be missing (older runs: None and 1).

    Raises:
        LookupError: an unknown model, alias or version; the message says what exists.
        ValueError: the version's run lacks the params that say what it was trained and tested
            on (not logged by ``fks train forecaster``), or they are not readable.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name, alias, version = spec, None, None
    if "@" in spec:
        name, alias = spec.split("@", 1)
    elif "/" in spec:
        name, version = spec.split("/", 1)
    else:
        alias = "champion"
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, str(version))
        )
    except MlflowException:
        raise LookupError(
            f"no version of {name!r} for {'@' + alias if alias else 'version ' + str(version)}; "
            "train one (`fks train forecaster`) or check the name, alias or version"
        ) from None
    params = client.get_run(str(mv.run_id)).data.params
    where = f"version {mv.version} of {name!r} (run {mv.run_id})"
    required = ("symbol", "timeframe", "data.test_start", "data.test_end")
    missing = [key for key in required if key not in params]
    if missing:
        raise ValueError(
            f"{where} has no logged params {missing}, so what it was trained and tested on is "
            "unknown; register models trained with `fks train forecaster`, which logs them"
        )
    try:
        val_end = pd.Timestamp(params["data.val_end"]) if "data.val_end" in params else None
        return ModelRef(
            name=name,
            version=str(mv.version),
            run_id=str(mv.run_id),
            symbol=params["symbol"],
            timeframe=params["timeframe"],
            test_start=pd.Timestamp(params["data.test_start"]),
            test_end=pd.Timestamp(params["data.test_end"]),
            val_end=None if val_end is None or pd.isna(val_end) else val_end,
            horizon=int(params.get("horizon", "1")),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} has unreadable data window or horizon params: {exc}") from None


def min_bars(model: Any) -> int:
    """Bars a loaded pyfunc needs per request (its ``min_bars``), or 1 when it does not say."""
    inner = model.unwrap_python_model() if hasattr(model, "unwrap_python_model") else model
    return int(getattr(inner, "min_bars", 1))


def rolling_forecasts(
    model: Any, bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, history: int | None = None
) -> pd.DataFrame:
    """The model's forecast at every bar in ``[start, end]``, each from the ``history`` raw bars up to it.

    ``history`` defaults to the model's ``min_bars``. All requests go in one call, one
    pseudo-symbol per decision bar, as a batch client would.

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
    return out.sort_index()[["forecast_log_return", "prob_up"]]


def forecast_positions(forecast: pd.Series, strategy: str, threshold: float) -> pd.Series:
    """Target exposure from forecasts: ``long_flat`` 1/0 above/below ``threshold``, ``long_short`` +-1."""
    if strategy == "long_flat":
        return (forecast > threshold).astype("float64")
    if strategy == "long_short":
        return pd.Series(
            np.where(forecast > threshold, 1.0, np.where(forecast < -threshold, -1.0, 0.0)),
            index=forecast.index,
        )
    raise ValueError(f"unknown strategy {strategy!r}: use long_flat or long_short")


def _costs(config: BacktestConfig) -> Costs:
    c = config.costs
    return Costs(commission_bps=c.commission_bps, slippage_bps=c.slippage_bps, min_fee=c.min_fee)


@dataclass(frozen=True)
class Evaluation:
    """One strategy's backtest over the whole window and per walk-forward block."""

    result: BacktestResult
    blocks: list[dict[str, Any]]
    history: int | None = None
    """Raw bars sent with each forecast request (model evaluations only)."""


def evaluate_positions(
    bars: pd.DataFrame, positions: pd.Series, config: BacktestConfig, *, calendar: str, timeframe: str
) -> Evaluation:
    """Backtest ``positions`` on ``bars`` over their index, whole and in ``config.windows`` blocks."""
    window = bars.loc[positions.index[0] : positions.index[-1]]
    positions = positions.reindex(window.index).fillna(0.0)
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
    ref: ModelRef,
    bars: pd.DataFrame,
    config: BacktestConfig,
    *,
    calendar: str,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> tuple[Evaluation, pd.DataFrame]:
    """Forecast with the registered pyfunc over ``window`` (default: its test window) and backtest it."""
    import mlflow

    start, end = window or (ref.test_start, ref.test_end)
    model = mlflow.pyfunc.load_model(ref.uri)
    history = min_bars(model) if config.history is None else config.history
    forecasts = rolling_forecasts(model, bars, start, end, history)
    positions = forecast_positions(forecasts["forecast_log_return"], config.strategy, config.threshold)
    evaluation = evaluate_positions(bars, positions, config, calendar=calendar, timeframe=ref.timeframe)
    return replace(evaluation, history=history), forecasts


def benchmark_positions(
    bars: pd.DataFrame,
    index: pd.DatetimeIndex,
    predictions: pd.DataFrame | None,
    config: BacktestConfig,
    *,
    names: Sequence[str] | None = None,
    problems: dict[str, str] | None = None,
) -> Mapping[str, pd.Series]:
    """Benchmarks on the same bars: buy and hold, and each baseline's logged test forecasts as a strategy.

    Args:
        bars: the series' bars.
        index: the decision bars of the window (the model's forecasts' index).
        predictions: the training run's logged test predictions (one column per baseline), or
            None when there are none.
        config: strategy and threshold that turn forecasts into positions.
        names: the benchmarks wanted: ``"buy and hold"`` and baseline names (columns of
            ``predictions``). None: buy and hold, and ``last_return``, ``ridge`` and ``hist_gb``
            where they can be built (the tearsheet's best-effort set).
        problems: filled with ``{name: why}`` for each of ``names`` that cannot be built (no
            predictions, no such column, no forecast on any bar of ``index``), so a caller that
            needs every one of them can refuse with the reason instead of skipping it.

    Returns:
        ``{"buy and hold": positions, "baseline <name>": positions, ...}`` in the order asked.
    """
    wanted = list(names) if names is not None else ["buy and hold", "last_return", "ridge", "hist_gb"]
    out: dict[str, pd.Series] = {}
    for name in wanted:
        if name == "buy and hold":
            out[name] = pd.Series(1.0, index=index)
            continue
        if predictions is None:
            why = "the model's training run logged no baseline test predictions"
        elif name not in predictions:
            columns = [c for c in predictions.columns if c not in ("actual", "lstm", "prob_up")]
            why = (
                f"the training run's test predictions have no {name!r} column (baselines logged: "
                f"{columns}); fix or remove the name in the promotion config's baselines, or retrain "
                "the model with `fks train forecaster`"
            )
        else:
            forecast = predictions[name].reindex(index)
            if forecast.notna().any():
                out[f"baseline {name}"] = forecast_positions(
                    forecast.fillna(0.0), config.strategy, config.threshold
                )
                continue
            why = (
                f"its logged test forecasts cover none of the {len(index)} bars of the window"
                + (f" {index[0]:%Y-%m-%d}..{index[-1]:%Y-%m-%d}" if len(index) else "")
            )
        if problems is not None and names is not None:
            problems[name] = why
    return out
