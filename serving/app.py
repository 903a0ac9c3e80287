"""The REST service over registered models: ``create_app(settings)`` builds it, nothing at import.

Routes (OpenAPI at ``/docs`` and ``/openapi.json``):

=========================  ==================================================================
``GET /health``            liveness
``GET /ready``             200 once every slot has a loaded, warmed model; 503 until then
``GET /ping``, ``/version`` MLflow's scoring-server checks (for MLflow's own clients)
``GET /v1/models``         the loaded versions: alias, run, data window, metrics, load time
``POST /v1/forecast``      forecasts for one or many series (raw bars, or the stored bars)
``POST /v1/allocate``      target weights for a universe from the served allocator
``POST /v1/explain``       SHAP attributions of one forecast to its features (top k, signed)
``GET /v1/drift``          PSI and Kolmogorov-Smirnov per feature: served inputs vs training
``POST /invocations``      MLflow's scoring protocol, answered as ``mlflow models serve`` does
``GET /metrics``           Prometheus: requests by route and status, latency, versions, swaps,
                           batch sizes
``GET /``, ``/assets/X``   the overview page and asset pages (:mod:`serving.pages`)
=========================  ==================================================================

The forecaster's fast path skips Keras's ``predict``: each request's windows are built by the
model's own preprocessing and concurrent requests share one compiled forward pass
(:class:`serving.batching.MicroBatcher`); a symbol's windows are cached by its bars' checksum.
A configured share of requests is answered by the model's ``@challenger``, or every request is
also scored by it in shadow mode (logged, never returned). Every answer is written to table
``predictions`` by a background writer (:mod:`serving.recorder`), never on the response path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from config.settings import Settings
from serving import scoring
from serving.auth import HEADER
from serving.limits import BodyLimit
from serving.middleware import Gate
from serving.pages import add_pages, warm_overview
from serving.schemas import (
    AllocateRequest,
    AllocateResponse,
    DriftResponse,
    Error,
    ExplainRequest,
    ExplainResponse,
    Forecast,
    ForecastRequest,
    ForecastResponse,
    ModelInfo,
    Weight,
)
from serving.slots import ModelSlot
from serving.state import Problem, ServiceState
from storage.predictions import Prediction

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0005
"""The interpreter's thread switch interval while the service runs (Python's default: 0.005 s)."""


def default_slots(settings: Settings) -> list[ModelSlot]:
    """Each of ``serve_models`` at @champion (@challenger while no champion exists), and each of
    ``serve_optional_models`` at @champion once it exists."""
    required = [ModelSlot(name=name, aliases=("champion", "challenger")) for name in settings.serve_models]
    optional = [
        ModelSlot(name=name, aliases=("champion",), optional=True)
        for name in settings.serve_optional_models
        if name not in settings.serve_models
    ]
    return required + optional


def create_app(settings: Settings, slots: Sequence[ModelSlot] | None = None) -> FastAPI:
    """The FastAPI app serving ``slots`` (default :func:`default_slots`).

    Models load in the background at start (``/ready`` says when); the registry is polled every
    ``settings.serve_poll_interval_s`` seconds and a moved alias is swapped in without a failed
    or waiting request.
    """
    state = ServiceState(settings, list(slots) if slots is not None else default_slots(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import mlflow

        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        # Threads take turns every 0.5 ms instead of 5: the event loop keeps answering while
        # features and forward passes run on worker threads (measured: +15-20% requests/s).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        poller = asyncio.get_running_loop().create_task(_poll(state, settings.serve_poll_interval_s))
        # the overview page's first figures (calendars, gaps, the registry) are computed now, in
        # the background, so that its first visitor does not wait for them
        warm = asyncio.get_running_loop().create_task(asyncio.to_thread(warm_overview, state))
        try:
            yield
        finally:
            sys.setswitchinterval(switch)
            warm.cancel()
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await state.close()

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

    app.add_middleware(Gate, state=state)

    def _refused(route: str) -> None:
        state.metrics.requests.labels(route, "413").inc()

    # outermost: an oversized body is refused before a key is looked up or a byte is parsed
    app.add_middleware(BodyLimit, limit=settings.serve_max_body_bytes, on_refuse=_refused)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return JSONResponse(Error(error=exc.message, detail=exc.detail).model_dump(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problem = _invalid_body(exc.errors(), strip="body")
        return JSONResponse(Error(error=problem.message, detail=problem.detail).model_dump(), status_code=422)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": Error}})
    async def ready() -> JSONResponse:
        """200 once every served model is loaded and warmed, 503 (naming the missing ones) until then."""
        missing = [name for name, slot in state.slots.items() if _waiting(slot)]
        if missing:
            return JSONResponse(
                Error(error=f"not loaded yet: {', '.join(missing)}").model_dump(), status_code=503
            )
        loaded = sorted(name for name, slot in state.slots.items() if slot.current is not None)
        return JSONResponse({"status": "ready", "models": loaded})

    @app.get("/ping", responses={503: {"model": Error}})
    async def ping() -> Response:
        """MLflow's scoring-server readiness check (what ``ScoringServerClient`` polls): 200 once
        the required models are loaded, as ``GET /ready``."""
        if any(_waiting(slot) for slot in state.slots.values()):
            return JSONResponse(
                Error(error="models are loading; retry shortly").model_dump(), status_code=503
            )
        return Response("\n", media_type="application/json")

    @app.get("/version")
    async def version() -> Response:
        """The MLflow version behind ``/invocations`` (as MLflow's scoring server answers)."""
        import mlflow

        return Response(mlflow.__version__, media_type="text/plain")

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
                    registered_at=None if loaded.registered_at is None else loaded.registered_at.isoformat(),
                )
            )
        return out

    @app.post(
        "/v1/forecast",
        response_model=ForecastResponse,
        responses={404: {"model": Error}, 422: {"model": Error}, 503: {"model": Error}},
        openapi_extra=_json_body(ForecastRequest),
    )
    async def forecast(request: Request) -> ForecastResponse:
        """Forecast each series' last bar with the served version of ``body.model``.

        A series with ``bars`` is forecast from them (at least the model's ``min_bars``, see
        ``GET /v1/models``); one without is forecast from the latest bars stored in FKS. With
        ``serve_challenger_share`` set, that share of requests is answered by the model's
        ``@challenger`` (the answer names the version and alias that answered).
        """
        started = time.perf_counter()
        body = await _parse(request, ForecastRequest)
        request_id = uuid.uuid4().hex
        key_id = request.state.key_id
        loaded = scoring.pick(state, body.model, request_id)
        series = await asyncio.to_thread(scoring.request_series, state, body.series, body.model)
        scored = await scoring.score(state, loaded, series)
        scoring.record(state, scored, request_id=request_id, key_id=key_id, started=started, shadow=False)
        if state.settings.serve_shadow:
            task = asyncio.get_running_loop().create_task(
                scoring.shadow(state, loaded, series, request_id=request_id, key_id=key_id)
            )
            state.background.add(task)
            task.add_done_callback(state.background.discard)
        return ForecastResponse(
            request_id=request_id,
            model=loaded.name,
            version=loaded.version,
            alias=loaded.alias,
            forecasts=[
                Forecast(
                    symbol=s,
                    ts=t.isoformat(),
                    forecast_log_return=float(r),
                    prob_up=float(p),
                    horizon=scored.horizon,
                )
                for s, t, r, p in zip(
                    scored.symbols, scored.last_ts, scored.forecast, scored.prob_up, strict=True
                )
            ],
        )

    @app.post(
        "/v1/explain",
        response_model=ExplainResponse,
        responses={status: {"model": Error} for status in (404, 409, 422, 503)},
    )
    async def explain(body: ExplainRequest) -> ExplainResponse:
        """SHAP attributions (expected gradients, the model's own network) of one series' forecast
        to its features: the ``top_k`` largest, signed, in log-return units, summed over the window."""
        loaded = state.forecaster(body.model)
        series = await asyncio.to_thread(scoring.request_series, state, [body.series], body.model)
        scored = await scoring.score(state, loaded, series)
        return await scoring.explained(state, scored, 0, body.top_k)

    @app.post(
        "/v1/allocate",
        response_model=AllocateResponse,
        responses={status: {"model": Error} for status in (404, 422, 503)},
    )
    async def allocate(body: AllocateRequest, request: Request) -> AllocateResponse:
        """Target weights for the universe from the served allocator (``fks-allocator@champion``):
        each asset's bars (or the latest stored ones) and the current weights in, the weights
        decided at the close of the last bar out (assets and ``CASH``)."""
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        loaded = state.loaded(body.model)
        frame = await asyncio.to_thread(scoring.allocation_frame, state, loaded, body)
        ts, weights = await asyncio.to_thread(scoring.allocate, loaded, frame)
        rows = [
            Prediction(request_id=request_id, model=loaded.name, version=loaded.version, alias=loaded.alias,
                       symbol=symbol, bar_ts=ts, output={"weight": weight},
                       latency_ms=(time.perf_counter() - started) * 1000.0, key_id=request.state.key_id)
            for symbol, weight in weights
        ]  # fmt: skip
        state.writer.offer(rows)
        return AllocateResponse(
            request_id=request_id,
            model=loaded.name,
            version=loaded.version,
            alias=loaded.alias,
            ts=None if ts is None else ts.isoformat(),
            weights=[Weight(symbol=s, weight=w) for s, w in weights],
        )

    @app.get(
        "/v1/drift",
        response_model=DriftResponse,
        responses={404: {"model": Error}, 409: {"model": Error}, 422: {"model": Error}},
    )
    async def drift(
        model: str = "fks-forecaster", version: str | None = None, hours: float | None = None
    ) -> DriftResponse:
        """Input drift of ``model`` (its default version unless ``version``): PSI and
        Kolmogorov-Smirnov per feature of the inputs served in the last ``hours`` (default
        ``drift_window_hours``) against the version's training span, with a verdict per feature."""
        from models.drift import model_drift

        if hours is not None and not (0 < hours < 1e6):
            raise Problem(422, f"hours must be a positive number of hours, got {hours}")
        try:
            report = await asyncio.to_thread(
                model_drift, state.settings, state.engine(), model, version=version, hours=hours
            )
        except LookupError as exc:
            raise Problem(404, str(exc)) from None
        except ValueError as exc:
            raise Problem(409, str(exc)) from None
        return DriftResponse.model_validate(report.to_dict())

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

    add_pages(app, state)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format."""
        for slot in (*state.slots.values(), *state.challengers.values()):
            if slot.current is not None:
                state.metrics.version.labels(slot.name, slot.current.alias).set(float(slot.current.version))
        hits, misses = state.cache_counts()
        state.metrics.cache.labels("hit").set(hits)
        state.metrics.cache.labels("miss").set(misses)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _waiting(slot: ModelSlot) -> bool:
    """A slot ``/ready`` waits for: a required model not loaded yet, or an optional one whose
    registry entry was not looked up yet."""
    return slot.current is None and (not slot.optional or not slot.checked)


Body = TypeVar("Body", bound=BaseModel)


async def _parse(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as ``model``, parsed and validated off the event loop (a forecast
    body carries thousands of bars: parsing them on the loop would stall every other request).

    Raises:
        Problem: 422 naming what is wrong.
    """
    raw = await request.body()
    try:
        return await asyncio.to_thread(model.model_validate_json, raw)
    except ValidationError as exc:
        raise _invalid_body(exc.errors(include_url=False)) from None


def _invalid_body(errors: Sequence[Any], strip: str | None = None) -> Problem:
    """422 listing the first five problems of a body (``where: what``)."""
    problems = []
    for e in errors:
        loc = list(e["loc"])
        if strip is not None and loc[:1] == [strip]:
            loc = loc[1:]
        where = ".".join(str(p) for p in loc) or "body"
        problems.append(f"{where}: {str(e['msg']).removeprefix('Value error, ')}")
    message = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    return Problem(422, message, problems)


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses ``model`` itself (see :func:`_parse`);
    the models it refers to are in the document's components (other routes use them)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _poll(state: ServiceState, interval_s: float) -> None:
    """Load every slot now, then follow alias moves every ``interval_s`` seconds; versions no
    longer served are let go once idle (:meth:`ServiceState.retire`)."""
    while True:
        for slot in (*state.slots.values(), *state.challengers.values()):
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
        for batcher in state.retire():
            await batcher.close()
        await asyncio.sleep(interval_s)


def app_from_env() -> FastAPI:
    """The app for the current settings (``uvicorn --factory serving.app:app_from_env``)."""
    from config.settings import get_settings

    return create_app(get_settings())
