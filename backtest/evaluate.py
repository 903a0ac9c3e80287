"""Walk-forward evaluation of a registered model version: its own pyfunc, on raw bars, net of costs.

What would be served is what is tested: each forecast comes from the registered pyfunc given the
raw bars up to the decision bar (``history`` of them), exactly as a client of the REST service
would send them. Forecasts become positions at the bar's close and are filled at the next open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backtest.engine import BacktestResult, Costs, run
from config.backtest import BacktestConfig


@dataclass(frozen=True)
class ModelRef:
    """A registered model version and what it was trained on."""

    name: str
    version: str
    run_id: str
    symbol: str
    timeframe: str
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    @property
    def uri(self) -> str:
        """``models:/name/version``."""
        return f"models:/{self.name}/{self.version}"


def resolve_model(spec: str) -> ModelRef:
    """Resolve ``name@alias`` or ``name/version`` against the active MLflow tracking store.

    Raises:
        LookupError: an unknown model, alias or version; the message says what exists.
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
    return ModelRef(
        name=name,
        version=str(mv.version),
        run_id=str(mv.run_id),
        symbol=params["symbol"],
        timeframe=params["timeframe"],
        test_start=pd.Timestamp(params["data.test_start"]),
        test_end=pd.Timestamp(params["data.test_end"]),
    )


def rolling_forecasts(
    model: Any, bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, history: int
) -> pd.DataFrame:
    """The model's forecast at every bar in ``[start, end]``, each from the ``history`` raw bars up to it.

    All requests go in one call, one pseudo-symbol per decision bar, as a batch client would.
    """
    positions = np.flatnonzero((bars.index >= start) & (bars.index <= end))
    if len(positions) == 0:
        raise ValueError(f"no bars between {start} and {end}; ingest the evaluation window first")
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
    forecasts = rolling_forecasts(model, bars, start, end, config.history)
    positions = forecast_positions(forecasts["forecast_log_return"], config.strategy, config.threshold)
    return evaluate_positions(bars, positions, config, calendar=calendar, timeframe=ref.timeframe), forecasts


def benchmark_positions(
    bars: pd.DataFrame, index: pd.DatetimeIndex, predictions: pd.DataFrame | None, config: BacktestConfig
) -> Mapping[str, pd.Series]:
    """Benchmarks on the same bars: buy and hold, and each baseline's logged test forecasts as a strategy."""
    out: dict[str, pd.Series] = {"buy and hold": pd.Series(1.0, index=index)}
    if predictions is not None:
        for name in ("last_return", "ridge", "hist_gb"):
            if name in predictions:
                forecast = predictions[name].reindex(index)
                if forecast.notna().any():
                    out[f"baseline {name}"] = forecast_positions(
                        forecast.fillna(0.0), config.strategy, config.threshold
                    )
    return out
