"""The overview page a researcher keeps open: ``GET /`` and ``GET /assets/{symbol}``, server-rendered
with Jinja2 (templates in ``serving/templates/``), charts drawn in the browser by the vendored
TradingView Lightweight Charts (``serving/static/vendor/``: no CDN, the page works offline).

The pages themselves carry no data when auth is on: the browser asks for an API key once, keeps it
in the tab's session storage and sends it as ``X-API-Key`` to the data routes below, which answer
only with a valid key (as every ``/v1`` route). With ``FKS_SERVE_AUTH=false`` (loopback) the first
answer already holds the figures. The page then refreshes every ``FKS_OVERVIEW_REFRESH_S`` seconds.

=====================================  =============================================================
``GET /``                              the overview page (listings, models, paper book)
``GET /assets/{symbol}``               one asset: candles, volume, overlays, quarantine, forecasts
``GET /v1/overview``                   the overview's figures as JSON (for programs)
``GET /v1/overview/html``              the same, as the page's HTML fragment (what it polls)
``GET /v1/overview/predictions``       latest forecasts with SHAP features and the allocator's
                                       weights, as JSON (``/html``: the fragment)
``GET /v1/overview/assets/{symbol}``   an asset page's chart data as JSON
=====================================  =============================================================
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response

from market.display import is_missing, money_text, price_text
from serving import overview as data
from serving.state import ServiceState

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_PREFIX = "/static/"
CACHE_CONTROL = "public, max-age=31536000, immutable"


@functools.cache
def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """Every file under :data:`STATIC` (a few hundred kB): relative path -> (content, media type,
    content hash). Read once; served from memory without a thread hop."""
    import hashlib
    import mimetypes

    out = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            body = path.read_bytes()
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if media_type.startswith("text/") or media_type.endswith("javascript"):
                media_type += "; charset=utf-8"
            out[path.relative_to(STATIC).as_posix()] = (
                body,
                media_type,
                hashlib.sha256(body).hexdigest()[:16],
            )
    return out


def static_url(name: str) -> str:
    """The URL of static file ``name`` with its content hash (so it may be cached for good)."""
    found = _static_files().get(name)
    if found is None:
        raise LookupError(f"no static file {name!r} under {STATIC}")
    return f"{STATIC_PREFIX}{name}?v={found[2]}"


@functools.cache
def _environment() -> Any:
    """The page's Jinja2 environment (built on first use; templates compile once)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["price"] = _price
    env.filters["pct"] = _pct
    env.filters["money"] = _money
    env.filters["age"] = _age
    env.filters["ts"] = _ts
    env.filters["num"] = _num
    env.filters["sign"] = _sign
    env.globals["static"] = static_url
    return env


def _missing(value: Any) -> bool:
    return is_missing(value)


def _price(value: Any) -> str:
    """As ``fks market overview`` writes a price (:func:`market.display.price_text`)."""
    return price_text(value, "–")


def _pct(value: Any) -> str:
    return "–" if _missing(value) else f"{value * 100:+.2f}%"


def _money(value: Any) -> str:
    return money_text(value, "–", smallest=1e3)


def _num(value: Any, digits: int = 4) -> str:
    return "–" if _missing(value) else f"{value:.{digits}g}"


def _sign(value: Any) -> str:
    """``up``, ``down`` or ``flat``: the CSS class of a change."""
    if _missing(value) or value == 0:
        return "flat"
    return "up" if value > 0 else "down"


def _age(seconds: Any) -> str:
    if _missing(seconds):
        return "–"
    for size, unit in ((86400 * 365, "y"), (86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _ts(value: Any) -> str:
    if value is None:
        return "–"
    stamp = pd.Timestamp(value)
    if stamp.hour == 0 and stamp.minute == 0 and stamp.second == 0:
        return f"{stamp:%Y-%m-%d}"
    return f"{stamp:%Y-%m-%d %H:%M}"


def _curves(book: data.Book, width: float = 600.0, height: float = 120.0) -> dict[str, Any]:
    """A book's equity and buy-and-hold curves as SVG polyline points on one time and value scale
    (``width`` x ``height``), with the range they span, for the page's inline chart."""
    lines = {"equity": book.equity_curve, "hold": book.buy_and_hold}
    stamps = [t.value for pts in lines.values() for t, _ in pts]
    values = [v for pts in lines.values() for _, v in pts]
    if len(stamps) < 2:
        return {}
    t0, t1 = min(stamps), max(stamps)
    lo, hi = min(values), max(values)
    span_t, span_v = (t1 - t0) or 1, (hi - lo) or 1.0
    out: dict[str, Any] = {
        "lo": lo,
        "hi": hi,
        "start": pd.Timestamp(t0, tz="UTC"),
        "end": pd.Timestamp(t1, tz="UTC"),
    }
    for name, pts in lines.items():
        out[name] = " ".join(
            f"{(t.value - t0) / span_t * width:.1f},{height - (v - lo) / span_v * height:.1f}" for t, v in pts
        )
    return out


def _chart_json(chart: data.AssetChart) -> dict[str, Any]:
    bars = chart.bars
    seconds = [int(t.timestamp()) for t in bars.index]
    rows = zip(seconds, bars["open"], bars["high"], bars["low"], bars["close"], bars["volume"], strict=True)
    forecasts = chart.forecasts
    return {
        "symbol": chart.symbol,
        "timeframe": chart.timeframe,
        "feature_set": chart.feature_set,
        "bars": [[t, o, h, lo, c, v] for t, o, h, lo, c, v in rows],
        "overlays": {k: [[int(t.timestamp()), v] for t, v in pts] for k, pts in chart.overlays.items()},
        "quarantined": [int(t.timestamp()) for t in chart.quarantined],
        "forecasts": [
            {
                "ts": int(pd.Timestamp(t).timestamp()),
                "forecast": data.to_jsonable(float(f)),
                "realised": data.to_jsonable(float(r)),
                "source": str(s),
            }
            for t, f, r, s in zip(
                forecasts.index,
                forecasts["forecast"],
                forecasts["realised"],
                forecasts["source"],
                strict=True,
            )
        ],
    }


def _asset(state: ServiceState, symbol: str) -> Any:
    """The registered asset ``symbol`` (None when unknown): its name and timeframe are no secret."""
    from storage import get_asset

    with state.engine().connect() as conn:
        return get_asset(conn, symbol)


def warm_overview(state: ServiceState) -> None:
    """Compute and render the overview once (its caches: gaps per series, the registry's answer,
    the compiled templates), logging rather than raising: a store or registry not there yet only
    makes the first page slower."""
    try:
        view = data.overview(state)
        env = _environment()
        env.get_template("overview.html").render(view=view, curves=_curves, refresh_s=1.0, auth=False)
        env.get_template("asset.html")
        env.get_template("_predictions.html")
    except Exception as exc:  # the page computes again on its first request
        log.info("overview warm-up skipped: %s", exc)


def add_pages(app: FastAPI, state: ServiceState) -> None:
    """Mount the pages, their data routes and the static files on ``app``."""
    env = _environment()
    router = APIRouter()
    settings = state.settings

    def page(name: str, **context: Any) -> HTMLResponse:
        context.setdefault("refresh_s", settings.overview_refresh_s)
        context.setdefault("auth", settings.serve_auth)
        return HTMLResponse(env.get_template(name).render(**context))

    async def snapshot() -> data.Overview:
        return await asyncio.to_thread(data.overview, state)

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        """The overview page (figures included when auth is off; else fetched with the key)."""
        view = None if settings.serve_auth else await snapshot()
        return page("overview.html", view=view, curves=_curves)

    @router.get("/assets/{symbol}", response_class=HTMLResponse, include_in_schema=False)
    async def asset(symbol: str) -> HTMLResponse:
        """One asset's page (its chart data come from ``/v1/overview/assets/{symbol}``)."""
        name = symbol.strip().upper()
        spec = await asyncio.to_thread(_asset, state, name)
        return page("asset.html", symbol=name, timeframe="" if spec is None else spec.timeframe)

    @router.get("/v1/overview")
    async def overview_json() -> JSONResponse:
        """The overview's figures: listings with data health, movers, dominance, models, books."""
        return JSONResponse(data.to_jsonable(await snapshot()))

    @router.get("/v1/overview/html", response_class=HTMLResponse)
    async def overview_html() -> HTMLResponse:
        """The overview's live part as the page's HTML fragment."""
        return page("_overview.html", view=await snapshot(), curves=_curves)

    async def forecasts() -> data.Predictions:
        symbols = await asyncio.to_thread(data.asset_symbols, state)
        return await data.predictions(state, symbols)

    @router.get("/v1/overview/predictions")
    async def predictions_json() -> JSONResponse:
        """The served forecaster's latest forecast per stored asset with its top SHAP features
        (as ``/v1/forecast`` and ``/v1/explain`` answer), and the served allocator's weights."""
        return JSONResponse(data.to_jsonable(await forecasts()))

    @router.get("/v1/overview/predictions/html", response_class=HTMLResponse)
    async def predictions_html() -> HTMLResponse:
        """The forecasts as the page's HTML fragment."""
        return page("_predictions.html", predictions=await forecasts())

    @router.get("/v1/overview/assets/{symbol}")
    async def asset_json(symbol: str) -> JSONResponse:
        """An asset page's chart data: bars (epoch seconds, OHLCV), overlays, quarantined bar
        times, out-of-sample forecasts beside realised log returns."""
        chart = await asyncio.to_thread(data.asset_chart, state, symbol.strip().upper())
        return JSONResponse(_chart_json(chart))

    @router.get(STATIC_PREFIX + "{name:path}", include_in_schema=False)
    async def static(name: str) -> Response:
        """A file of ``serving/static/`` from memory, cacheable for a year: its URL carries a
        hash of its content (``?v=``), so a changed file is a new URL."""
        found = _static_files().get(name)
        if found is None:
            return JSONResponse({"error": f"no static file {name!r}", "detail": None}, status_code=404)
        body, media_type, digest = found
        return Response(body, media_type=media_type, headers={"Cache-Control": CACHE_CONTROL, "ETag": digest})

    app.include_router(router)
