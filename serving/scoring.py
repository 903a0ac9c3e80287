"""How a forecast request is answered: which version answers, bars to windows (cached), the
shared forward pass, the rows for table ``predictions``, shadow scoring and explanations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from serving.schemas import AllocateRequest, Attribution, ExplainResponse, SeriesRequest
from serving.slots import LoadedModel
from serving.state import Problem, ServiceState
from storage.predictions import Prediction

log = logging.getLogger(__name__)

EXPLAIN_BACKGROUND = 64
"""Training windows an explanation's expected gradients are drawn against."""


@dataclass(frozen=True)
class Scored:
    """One model version's answer for every series of a request."""

    loaded: LoadedModel
    symbols: list[str]
    last_ts: list[pd.Timestamp]
    windows: np.ndarray
    features: list[dict[str, float]]
    forecast: np.ndarray
    prob_up: np.ndarray

    @property
    def horizon(self) -> int:
        return int(self.loaded.python_model.preprocess.horizon)


def share_draw(request_id: str) -> float:
    """A number in [0, 1) fixed by the request id (uuid4 hex): who answers is reproducible."""
    return int(request_id[:8], 16) / 2**32


def pick(state: ServiceState, name: str, request_id: str) -> LoadedModel:
    """The version answering this request: ``name``'s challenger for ``serve_challenger_share``
    of requests (when a challenger other than the default version is loaded), else the default."""
    loaded = state.forecaster(name)
    share = state.settings.serve_challenger_share
    if share > 0 and not state.settings.serve_shadow:
        challenger = state.challenger(name)
        if challenger is not None and share_draw(request_id) < share:
            return challenger
    return loaded


def bars_needed(state: ServiceState, name: str) -> int:
    """Stored bars to read for ``name``: the most any of its loaded versions needs (more history
    never changes a forecast: the features are history-invariant)."""
    versions = [state.forecaster(name), state.challenger(name)]
    return max(int(v.python_model.min_bars) for v in versions if v is not None)


Series = list[tuple[str, pd.DataFrame]]
"""The series of a request: ``(symbol, canonical bars)`` pairs, in answer order."""


def _bars(item: SeriesRequest, keep: int) -> pd.DataFrame:
    """A request's bars (validated: finite, positive, increasing) as canonical bars, the last
    ``keep`` of them."""
    from market.bars import canonical_bars

    bars = (item.bars or [])[-keep:]
    frame = pd.DataFrame(
        {
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        },
        index=pd.DatetimeIndex(pd.to_datetime([b.ts for b in bars], utc=True), name="ts"),
    )
    return canonical_bars(frame)


def request_series(state: ServiceState, series: Sequence[SeriesRequest], name: str) -> Series:
    """The bars of every series of a request; a series without bars gets the latest stored bars
    of the model's timeframe. Only the last :func:`bars_needed` bars are kept: older ones never
    change a forecast.

    Raises:
        Problem: 404 when a symbol has no stored bars, 422 for a series with an empty bar list.
    """

    keep = bars_needed(state, name)
    out: Series = []
    for item in series:
        if item.bars is not None:
            if not item.bars:
                raise Problem(422, f"series {item.symbol!r} has no bars; send at least the model's min_bars")
            out.append((item.symbol, _bars(item, keep)))
            continue
        timeframe = state.forecaster(name).python_model.preprocess.timeframe
        out.append((item.symbol, stored_bars(state, item.symbol, timeframe, keep)))
    return out


def stored_bars(state: ServiceState, symbol: str, timeframe: str, count: int) -> pd.DataFrame:
    """The last ``count`` stored ``timeframe`` bars of ``symbol``.

    Raises:
        Problem: 404 when there are none.
    """
    from storage import read_bars

    with state.engine().connect() as conn:
        stored = read_bars(conn, symbol, timeframe)
    if stored.empty:
        raise Problem(
            404,
            f"no stored {timeframe} bars of {symbol!r}; ingest them (`fks ingest`) "
            "or send the bars in the request",
        )
    return stored.iloc[-count:]


async def score(state: ServiceState, loaded: LoadedModel, series: Series) -> Scored:
    """``loaded``'s forecasts of every series: windows built off the event loop
    (from the feature cache when the same bars came before), the forward pass shared with
    concurrent requests.

    Raises:
        Problem: 422 for bars the model refuses (the model's message).
    """
    inner = loaded.python_model
    try:
        prepared = await asyncio.to_thread(inner.prepare_series, series, state.cache(loaded))
    except ValueError as exc:
        raise Problem(422, str(exc)) from None
    forecast, prob_up = await state.batcher(loaded).submit(prepared.x)
    return Scored(
        loaded=loaded,
        symbols=prepared.symbols,
        last_ts=prepared.last_ts,
        windows=prepared.x,
        features=prepared.features,
        forecast=np.asarray(forecast, dtype="float64").reshape(-1),
        prob_up=np.asarray(prob_up, dtype="float64").reshape(-1),
    )


def record(
    state: ServiceState, scored: Scored, *, request_id: str, key_id: int | None, started: float, shadow: bool
) -> None:
    """Hand ``scored``'s rows to the background writer (never waits) and count them."""
    latency_ms = (time.perf_counter() - started) * 1000.0
    loaded = scored.loaded
    rows = [
        Prediction(
            request_id=request_id,
            model=loaded.name,
            version=loaded.version,
            alias=loaded.alias,
            symbol=symbol,
            bar_ts=ts,
            output={"forecast_log_return": float(f), "prob_up": float(p)},
            features=features,
            latency_ms=latency_ms,
            key_id=key_id,
            shadow=shadow,
        )
        for symbol, ts, features, f, p in zip(
            scored.symbols, scored.last_ts, scored.features, scored.forecast, scored.prob_up, strict=True
        )
    ]
    state.metrics.predictions.labels(loaded.name, loaded.alias, str(shadow).lower()).inc(len(rows))
    state.writer.offer(rows)


async def shadow(
    state: ServiceState, answered: LoadedModel, series: Series, *, request_id: str, key_id: int | None
) -> None:
    """Score ``series`` with ``answered``'s challenger too and log it as shadow rows (never
    returned); a challenger that refuses the bars is logged and skipped."""
    challenger = state.challenger(answered.name)
    if challenger is None or challenger.version == answered.version:
        return
    started = time.perf_counter()
    try:
        scored = await score(state, challenger, series)
    except Exception as exc:  # the challenger's failure must never reach the caller
        log.info("shadow %s v%s could not score request %s: %s", challenger.name, challenger.version,
                 request_id, exc)  # fmt: skip
        return
    record(state, scored, request_id=request_id, key_id=key_id, started=started, shadow=True)


async def explain(state: ServiceState, loaded: LoadedModel, window: np.ndarray) -> pd.Series:
    """SHAP attributions of one scaled window's forecast, against training windows of the
    version (its training reference, :func:`models.reference.training_features`).

    Raises:
        Problem: 409 when the version's training reference can be neither read nor recomputed.
    """
    inner = loaded.python_model
    key = (loaded.name, loaded.version, "background")
    background = state.extras.get(key)
    if background is None:
        background = await asyncio.to_thread(_background, state, loaded)
        state.extras[key] = background
    async with state.explaining:
        series: pd.Series = await asyncio.to_thread(inner.explain, window, background)
    return series


async def explained(state: ServiceState, scored: Scored, index: int, top_k: int) -> ExplainResponse:
    """The answer of ``POST /v1/explain`` for series ``index`` of ``scored``: its ``top_k``
    largest SHAP attributions (signed, log-return units), the base value and the rest.

    Raises:
        Problem: 409 when the version cannot be explained (see :func:`explain`).
    """
    import uuid

    loaded = scored.loaded
    values = await explain(state, loaded, scored.windows[index])
    top = values.iloc[:top_k]
    return ExplainResponse(
        request_id=uuid.uuid4().hex,
        model=loaded.name,
        version=loaded.version,
        alias=loaded.alias,
        symbol=scored.symbols[index],
        ts=scored.last_ts[index].isoformat(),
        forecast_log_return=float(scored.forecast[index]),
        base_value=float(values.attrs["base_value"]),
        attributions=[Attribution(feature=str(k), shap=float(v)) for k, v in top.items()],
        rest=float(values.iloc[top_k:].sum()),
    )


def _background(state: ServiceState, loaded: LoadedModel) -> Any:
    from models.reference import training_features

    try:
        features = training_features(loaded.run_id, engine=state.engine())
    except (LookupError, ValueError) as exc:
        raise Problem(409, f"{loaded.name} version {loaded.version} cannot be explained: {exc}") from None
    return loaded.python_model.background(features, size=EXPLAIN_BACKGROUND, seed=0)


def allocation_frame(state: ServiceState, loaded: LoadedModel, body: AllocateRequest) -> pd.DataFrame:
    """The allocator's input: raw bars of every universe symbol (sent, or the latest stored:
    the model's ``min_bars`` of its ``timeframe``), ``ts`` as ISO 8601 strings, with a ``weight``
    column, the current weight.

    Raises:
        Problem: 422 for weights of symbols outside the universe, a repeated symbol, or stored
            bars asked of a model that does not say how many it needs; 404 for a symbol with no
            stored bars.
    """

    symbols = [item.symbol for item in body.universe]
    if len(set(symbols)) != len(symbols):
        raise Problem(422, f"universe names a symbol twice: {sorted(symbols)}; name each asset once")
    strangers = sorted(set(body.weights) - set(symbols))
    if strangers:
        raise Problem(422, f"weights name {strangers}, which are not in the universe {symbols}")
    inner = loaded.python_model
    pieces = []
    for item in body.universe:
        if item.bars is not None:
            rows = pd.DataFrame([b.model_dump() for b in item.bars])
        else:
            timeframe, need = getattr(inner, "timeframe", None), getattr(inner, "min_bars", None)
            if timeframe is None or need is None:
                what = f"send the bars of {item.symbol!r}"
                raise Problem(422, f"{loaded.name} does not say which stored bars it needs; {what}")
            rows = stored_bars(state, item.symbol, str(timeframe), int(need)).reset_index()
        if len(rows) == 0:
            raise Problem(422, f"series {item.symbol!r} has no bars; send at least the model's min_bars")
        rows["ts"] = [
            t.isoformat() for t in pd.to_datetime(rows["ts"], utc=True)
        ]  # as MLflow clients send it
        rows.insert(0, "symbol", item.symbol)
        rows["weight"] = float(body.weights.get(item.symbol, 0.0))
        pieces.append(rows)
    return pd.concat(pieces, ignore_index=True)


def allocate(loaded: LoadedModel, frame: pd.DataFrame) -> tuple[pd.Timestamp | None, list[tuple[str, float]]]:
    """The allocator's answer for ``frame``: the decision bar and ``(symbol, weight)`` pairs.

    Raises:
        Problem: 422 with the model's message when it refuses the input, or when its answer is
            not one weight per symbol.
    """
    from mlflow.exceptions import MlflowException

    try:
        out = loaded.model.predict(frame)
    except (ValueError, MlflowException) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise Problem(422, message) from None
    if not isinstance(out, pd.DataFrame) or not {"symbol", "weight"} <= set(out.columns):
        message = f"{loaded.name} does not answer weights (columns symbol, weight); use /invocations"
        raise Problem(422, message)
    ts = pd.Timestamp(out["ts"].iloc[0]) if "ts" in out.columns and len(out) else None
    return ts, [(str(s), float(w)) for s, w in zip(out["symbol"], out["weight"], strict=True)]
