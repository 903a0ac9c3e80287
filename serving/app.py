"""The REST service over registered models: ``create_app(settings)`` builds it, nothing at import.

Routes (OpenAPI at ``/docs`` and ``/openapi.json``):

=========================  ==================================================================
``GET /health``            liveness
``GET /ready``             200 once every slot has a loaded, warmed model; 503 until then
``GET /v1/models``         the loaded versions: alias, run, data window, metrics, load time
``POST /v1/forecast``      forecasts for one or many series (raw bars, or the stored bars)
``POST /invocations``      MLflow's scoring protocol, answered as ``mlflow models serve`` does
``GET /metrics``           Prometheus: requests by route and status, latency, versions, swaps,
                           batch sizes
=========================  ==================================================================

The forecaster's fast path skips Keras's ``predict``: each request's windows are built by the
model's own preprocessing and concurrent requests share one compiled forward pass
(:class:`serving.batching.MicroBatcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from config.settings import Settings
from serving.auth import HEADER, KeyGate, Refusal
from serving.batching import MicroBatcher
from serving.schemas import Error, Forecast, ForecastRequest, ForecastResponse, ModelInfo
from serving.slots import LoadedModel, ModelSlot

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _Metrics:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "fks_requests", "Requests by route and status.", ["route", "status"], registry=reg
        )
        self.latency = Histogram(
            "fks_request_seconds", "Request latency.", ["route"], buckets=_LATENCY_BUCKETS, registry=reg
        )
        self.version = Gauge(
            "fks_model_version", "Loaded version per model.", ["model", "alias"], registry=reg
        )
        self.swaps = Counter("fks_model_swaps", "Model versions swapped in.", ["model"], registry=reg)
        self.batch = Histogram(
            "fks_batch_size", "Windows per forward pass.", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=reg
        )


class _State:
    """What the app holds: its slots, their batchers, metrics and the store engine."""

    def __init__(self, settings: Settings, slots: Sequence[ModelSlot]) -> None:
        self.settings = settings
        self.slots = {slot.name: slot for slot in slots}
        self.metrics = _Metrics()
        self.batchers: dict[tuple[str, str], MicroBatcher] = {}
        self._engine: Any = None
        self.gate = KeyGate(self.engine, rate_per_minute=settings.serve_rate_per_minute)

    def engine(self) -> Any:
        if self._engine is None:
            from storage import open_store

            self._engine = open_store(self.settings.db_url)
        return self._engine

    def loaded(self, name: str) -> LoadedModel:
        slot = self.slots.get(name)
        if slot is None:
            served = ", ".join(self.slots) or "none"
            raise _HTTPError(404, f"no model {name!r} is served; served models: {served}")
        current = slot.current
        if current is None:
            raise _HTTPError(503, f"model {name!r} is not loaded yet; retry when GET /ready answers 200")
        return current

    def batcher(self, loaded: LoadedModel) -> MicroBatcher:
        key = (loaded.name, loaded.version)
        batcher = self.batchers.get(key)
        if batcher is None:
            inner = loaded.python_model
            batcher = MicroBatcher(
                lambda x: list(inner.forward(x)),
                max_batch_size=self.settings.serve_max_batch_size,
                max_wait_ms=self.settings.serve_max_wait_ms,
                on_batch=self.metrics.batch.observe,
            )
            self.batchers[key] = batcher
        return batcher


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def default_slots(settings: Settings) -> list[ModelSlot]:
    """The forecaster's champion (its challenger while no champion exists)."""
    return [ModelSlot(name=name, aliases=("champion", "challenger")) for name in settings.serve_models]


def create_app(settings: Settings, slots: Sequence[ModelSlot] | None = None) -> FastAPI:
    """The FastAPI app serving ``slots`` (default :func:`default_slots`).

    Models load in the background at start (``/ready`` says when); the registry is polled every
    ``settings.serve_poll_interval_s`` seconds and a moved alias is swapped in without a failed
    or waiting request.
    """
    state = _State(settings, list(slots) if slots is not None else default_slots(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import mlflow

        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        poller = asyncio.get_running_loop().create_task(_poll(state, settings.serve_poll_interval_s))
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            for batcher in state.batchers.values():
                await batcher.close()

    app = FastAPI(
        title="FKS",
        version="1",
        description="Forecasts of FKS's registered models over REST, and MLflow's scoring protocol.",
        lifespan=lifespan,
    )
    app.state.fks = state
    if settings.serve_cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.serve_cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["content-type", HEADER],
        )  # fmt: skip
    if not settings.serve_auth:
        log.warning(
            "FKS_SERVE_AUTH is off: every route answers without an API key; "
            "use this only on loopback (127.0.0.1)"
        )

    @app.middleware("http")
    async def _observe(request: Request, call_next: Any) -> Response:
        route = request.url.path
        started = time.perf_counter()
        refusal = _size_refusal(state, request)
        needs_key = state.settings.serve_auth and route not in OPEN_ROUTES and request.method != "OPTIONS"
        if refusal is None and needs_key:  # a CORS preflight carries no key
            # the key lookup may read the store: off the event loop
            _, refusal = await asyncio.to_thread(state.gate.check, request.headers.get(HEADER))
        if refusal is not None:
            response: Response = JSONResponse(
                Error(error=refusal.message).model_dump(), status_code=refusal.status, headers=refusal.headers
            )
        else:
            response = await call_next(request)
        state.metrics.requests.labels(route, str(response.status_code)).inc()
        state.metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(_HTTPError)
    async def _http_error(request: Request, exc: _HTTPError) -> JSONResponse:
        return JSONResponse(Error(error=exc.message, detail=exc.detail).model_dump(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"][1:]) or "body"
            problems.append(f"{where}: {str(e['msg']).removeprefix('Value error, ')}")
        message = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        return JSONResponse(Error(error=message, detail=problems).model_dump(), status_code=422)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": Error}})
    async def ready() -> JSONResponse:
        """200 once every served model is loaded and warmed, 503 (naming the missing ones) until then."""
        missing = [name for name, slot in state.slots.items() if slot.current is None]
        if missing:
            return JSONResponse(
                Error(error=f"not loaded yet: {', '.join(missing)}").model_dump(), status_code=503
            )
        return JSONResponse({"status": "ready", "models": sorted(state.slots)})

    @app.get("/v1/models", response_model=list[ModelInfo])
    async def models() -> list[ModelInfo]:
        """The loaded model versions."""
        out = []
        for slot in state.slots.values():
            loaded = slot.current
            if loaded is None:
                continue
            metrics = {}
            for key, value in loaded.tags.items():
                if key.startswith(("test_", "uplift_rmse")):
                    with contextlib.suppress(ValueError):
                        metrics[key] = float(value)
            out.append(
                ModelInfo(
                    name=loaded.name,
                    version=loaded.version,
                    alias=loaded.alias,
                    run_id=loaded.run_id,
                    data_window=loaded.tags.get("data_window"),
                    feature_set_version=loaded.tags.get("feature_set_version"),
                    metrics=metrics,
                    min_bars=getattr(loaded.python_model, "min_bars", None),
                    loaded_at=loaded.loaded_at.isoformat(),
                    load_seconds=round(loaded.load_seconds, 4),
                )
            )
        return out

    @app.post(
        "/v1/forecast",
        response_model=ForecastResponse,
        responses={404: {"model": Error}, 422: {"model": Error}, 503: {"model": Error}},
    )
    async def forecast(body: ForecastRequest) -> ForecastResponse:
        """Forecast each series' last bar with the served version of ``body.model``.

        A series with ``bars`` is forecast from them (at least the model's ``min_bars``, see
        ``GET /v1/models``); one without is forecast from the latest bars stored in FKS.
        """
        loaded = state.loaded(body.model)
        inner = loaded.python_model
        frame = await asyncio.to_thread(_frame, state, inner, body)
        try:
            symbols, last_ts, windows = await asyncio.to_thread(inner.windows, frame)
        except ValueError as exc:
            raise _HTTPError(422, str(exc)) from None
        ret, prob_up = await state.batcher(loaded).submit(windows)
        horizon = int(inner.preprocess.horizon)
        return ForecastResponse(
            request_id=uuid.uuid4().hex,
            model=loaded.name,
            version=loaded.version,
            alias=loaded.alias,
            forecasts=[
                Forecast(
                    symbol=s,
                    ts=t.isoformat(),
                    forecast_log_return=float(r),
                    prob_up=float(p),
                    horizon=horizon,
                )
                for s, t, r, p in zip(symbols, last_ts, ret, prob_up, strict=True)
            ],
        )

    @app.post("/invocations")
    async def invocations(request: Request, model: str | None = None) -> Response:
        """MLflow's scoring protocol (``dataframe_split``, ``dataframe_records``, ``inputs``,
        ``instances``; JSON or CSV), answered exactly as ``mlflow models serve`` answers."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc.scoring_server import invocations as score

        name = model or next(iter(state.slots), "")
        loaded = state.loaded(name)
        data = await request.body()
        content_type = request.headers.get("content-type") or ""
        try:
            result = await asyncio.to_thread(
                score, data, content_type, loaded.model, loaded.model.metadata.get_input_schema()
            )
        except MlflowException as exc:
            return Response(content=exc.serialize_as_json(), status_code=exc.get_http_status_code(),
                            media_type="application/json")  # fmt: skip
        return Response(content=result.response, status_code=result.status, media_type=result.mimetype)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format."""
        for slot in state.slots.values():
            if slot.current is not None:
                state.metrics.version.labels(slot.name, slot.current.alias).set(float(slot.current.version))
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


OPEN_ROUTES = frozenset(
    {"/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
"""Routes that answer without an API key."""


def _size_refusal(state: _State, request: Request) -> Refusal | None:
    """413 when the declared body is larger than ``serve_max_body_bytes``."""
    length = request.headers.get("content-length")
    limit = state.settings.serve_max_body_bytes
    if length is not None and length.isdigit() and int(length) > limit:
        size = int(length)
        message = f"the request body has {size:,} bytes, the limit is {limit:,}; send fewer bars"
        return Refusal(413, message, {})
    return None


def _frame(state: _State, inner: Any, body: ForecastRequest) -> pd.DataFrame:
    """The raw bars of every series of ``body``, one frame with a ``symbol`` column."""
    from storage import read_bars

    pieces = []
    for series in body.series:
        if series.bars is not None:
            rows = pd.DataFrame([b.model_dump() for b in series.bars])
            if len(rows):
                rows["ts"] = pd.to_datetime(rows["ts"], utc=True)
        else:
            spec = inner.preprocess
            with state.engine().connect() as conn:
                stored = read_bars(conn, series.symbol, spec.timeframe)
            if stored.empty:
                raise _HTTPError(
                    404,
                    f"no stored {spec.timeframe} bars of {series.symbol!r}; ingest them (`fks ingest`) "
                    "or send the bars in the request",
                )
            rows = stored.iloc[-int(inner.min_bars) :].reset_index()
        if len(rows) == 0:
            raise _HTTPError(422, f"series {series.symbol!r} has no bars; send at least the model's min_bars")
        rows["symbol"] = series.symbol
        pieces.append(rows)
    return pd.concat(pieces, ignore_index=True)


async def _poll(state: _State, interval_s: float) -> None:
    """Load every slot now, then follow alias moves every ``interval_s`` seconds."""
    while True:
        for slot in state.slots.values():
            before = slot.swaps
            try:
                loaded = await asyncio.to_thread(slot.refresh)
            except Exception as exc:  # a registry hiccup must not stop the poller
                log.warning("could not refresh %s: %s", slot.label, exc)
                continue
            if slot.swaps > before:  # a version replaced another (the first load is not a swap)
                state.metrics.swaps.labels(slot.name).inc(slot.swaps - before)
            if loaded:
                current = slot.current
                if current is not None:
                    log.info("serving %s version %s (@%s)", slot.name, current.version, current.alias)
        await asyncio.sleep(interval_s)


def app_from_env() -> FastAPI:
    """The app for the current settings (``uvicorn --factory serving.app:app_from_env``)."""
    from config.settings import get_settings

    return create_app(get_settings())
