"""What the overview page shows, as typed data: listings with data health, the registered models,
the latest forecasts with their SHAP features, the allocator's weights, the paper book, and one
asset's chart data.

Every figure comes from the code that answers the same question elsewhere: forecasts and
explanations from :mod:`serving.scoring` (as ``POST /v1/forecast`` and ``/v1/explain`` answer),
versions from :func:`models.registry.list_versions` (as ``fks models list``), the book from
:func:`execution.portfolio.value_account` (as ``fks pnl``), gaps from
:func:`storage.bars.bar_gaps` (as ``fks data list``), cross-checks from
:func:`storage.verifications.latest_verifications` (as ``fks providers discrepancies``).
Nothing here renders HTML (:mod:`serving.pages` does); every function is usable without a browser.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from config.assets import AssetSpec
from serving.state import Problem, ServiceState

SPARK_POINTS = 60
"""Most points of a listing's 7-day sparkline."""
TOP_FEATURES = 3
"""SHAP features shown per forecast."""
MOVERS = 3
"""Gainers and losers shown."""
CHART_BARS = 500
"""Bars drawn on an asset page."""
OVERLAY_PREFIXES = ("sma_", "ema_", "bb_upper_", "bb_middle_", "bb_lower_")
"""Feature columns that are price levels (or ratios to the close) and so overlay the candles."""
OVERLAY_KINDS = frozenset({"sma", "ema", "bollinger"})
"""Indicator kinds with such columns; a served feature set without any (``minimal``) gives way
to :data:`DEFAULT_FEATURE_SET` on the chart."""
DEFAULT_FEATURE_SET = "default"

QUOTE_SOURCE = "coinmarketcap"
"""Where market caps and ranks come from (stored by ``fks market overview``)."""
QUOTE_CURRENCY = "USD"
DOMINANCE_COINS = ("BTC", "ETH")
HOLD_LOOKBACK = pd.Timedelta(days=31)
"""How far before an account's first mark a traded symbol's last bar is looked for."""
REGISTRY_TTL_S = 30.0
"""The registry is read again after this long (or at once when a served version changes)."""

_T = TypeVar("_T")


# -- data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """The data health of one stored series: ``last_bar_age_s`` seconds since its last bar opened,
    ``gaps`` holes against its calendar (``missing_bars`` bars in all), ``quarantined`` rows
    still pending a decision, and the latest cross-check against a second source
    (``verified``, ``discrepant``, ``skipped``; None when never checked)."""

    last_bar_age_s: float
    gaps: int
    missing_bars: int
    quarantined: int
    cross_check: str | None
    cross_check_at: pd.Timestamp | None


@dataclass(frozen=True)
class Listing:
    """One registered asset with stored bars: its last close and changes (fractions: 0.01 is
    +1 %) over one bar, 24 hours and 7 days (None when the series is shorter), the volume of the
    last 24 hours, market cap and rank of a crypto asset in the stored CoinMarketCap listing
    (matched by its ``provider_symbols.coinmarketcap``; None when not listed), the closes of the
    last 7 days (at most :data:`SPARK_POINTS`, for the sparkline) and its :class:`Health`."""

    symbol: str
    asset_class: str
    timeframe: str
    description: str
    last_price: float
    last_ts: pd.Timestamp
    change_1bar: float | None
    change_24h: float | None
    change_7d: float | None
    volume_24h: float
    spark: tuple[float, ...]
    health: Health
    market_cap: float | None = None
    rank: int | None = None

    @property
    def spark_points(self) -> str:
        """The sparkline as SVG polyline points in a 100 x 24 box (empty with fewer than 2 closes)."""
        return spark_points(self.spark)


@dataclass(frozen=True)
class ModelVersionStatus:
    """One registered version at one alias: when it was registered and promoted, its gate verdict
    (``promoted``, ``refused``, ``forced``; None when no gate ran) and the gate's reasons."""

    alias: str
    version: str
    registered_at: pd.Timestamp
    promoted_at: pd.Timestamp | None
    gate: str | None
    gate_reasons: str | None
    metrics: dict[str, float]


@dataclass(frozen=True)
class ModelStatus:
    """A registered model's champion and challenger (None when no version holds the alias) and
    which version the service answers with (None when it does not serve the model)."""

    name: str
    champion: ModelVersionStatus | None
    challenger: ModelVersionStatus | None
    serving: str | None


@dataclass(frozen=True)
class Feature:
    """One SHAP attribution: the feature and its signed share of the forecast (log-return units)."""

    feature: str
    shap: float


@dataclass(frozen=True)
class AssetForecast:
    """The served forecaster's latest forecast of one asset, as ``POST /v1/forecast`` answers it,
    with its top SHAP features as ``POST /v1/explain`` answers them (empty when the version
    cannot be explained)."""

    symbol: str
    model: str
    version: str
    alias: str
    ts: pd.Timestamp
    forecast_log_return: float
    prob_up: float
    horizon: int
    top_features: tuple[Feature, ...]


@dataclass(frozen=True)
class Allocation:
    """The served allocator's current target weights (``CASH`` included), as ``POST
    /v1/allocate`` answers them for its universe from the stored bars and no current weights."""

    model: str
    version: str
    ts: pd.Timestamp | None
    weights: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Predictions:
    """The model section: latest forecasts, the allocator's weights, and why parts are missing."""

    forecasts: tuple[AssetForecast, ...]
    allocation: Allocation | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class PositionRow:
    """One position of the paper book, valued as ``fks pnl`` values it (base currency)."""

    symbol: str
    quantity: float
    avg_cost: float
    price: float | None
    market_value: float
    unrealised_pnl: float
    realised_pnl: float


@dataclass(frozen=True)
class OpenOrder:
    """One open order of the paper book."""

    id: str
    symbol: str
    side: str
    type: str
    quantity: float
    filled_quantity: float
    limit_price: float | None
    status: str
    created_at: pd.Timestamp


@dataclass(frozen=True)
class LimitUse:
    """How much of one risk limit is used: ``used`` against ``limit`` (same units), ``share``
    = used / limit."""

    name: str
    used: float
    limit: float

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit > 0 else math.nan


@dataclass(frozen=True)
class Book:
    """A paper account: its valued positions, open orders, equity marks against buy and hold of
    what it traded (equal weights, priced at each mark's time, both starting at the first mark's
    equity), today's P&L (equity now minus the
    last mark before today, UTC), and its risk state (halted or not, limits used)."""

    account: str
    base: str
    cash: float
    equity: float
    total_pnl: float
    today_pnl: float | None
    positions: tuple[PositionRow, ...]
    orders: tuple[OpenOrder, ...]
    equity_curve: tuple[tuple[pd.Timestamp, float], ...]
    buy_and_hold: tuple[tuple[pd.Timestamp, float], ...]
    halted: bool
    halt_reason: str | None
    limits: tuple[LimitUse, ...]
    note: str | None = None


@dataclass(frozen=True)
class Overview:
    """The whole page: listings, movers, crypto dominance (BTC's and ETH's shares of the stored
    listing's market caps), models and books."""

    at: pd.Timestamp
    listings: tuple[Listing, ...]
    gainers: tuple[Listing, ...]
    losers: tuple[Listing, ...]
    dominance: dict[str, float]
    models: tuple[ModelStatus, ...]
    books: tuple[Book, ...]
    refresh_s: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AssetChart:
    """One asset page: its last :data:`CHART_BARS` bars, the feature set's price overlays
    (``name -> [(ts, value)]``), the quarantined bar times, and out-of-sample forecasts beside
    the realised log returns (``ts, forecast, realised, source``; realised None while unknown)."""

    symbol: str
    timeframe: str
    bars: pd.DataFrame
    overlays: dict[str, list[tuple[pd.Timestamp, float]]]
    quarantined: tuple[pd.Timestamp, ...]
    forecasts: pd.DataFrame
    feature_set: str | None


def to_jsonable(value: Any) -> Any:
    """Dataclasses, timestamps, frames and floats as plain JSON data (NaN and infinities as None;
    timestamps ISO 8601)."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: to_jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def spark_points(values: Sequence[float], width: float = 100.0, height: float = 24.0) -> str:
    """``values`` as SVG polyline points scaled into ``width`` x ``height`` (high values up)."""
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - (v - lo) / span * height:.1f}" for i, v in enumerate(values))


# -- caching --------------------------------------------------------------------------------------


class PageCache:
    """Values the page recomputes only when their key changes (gaps of a series until a new bar,
    explanations of a forecast) or after ``ttl_s`` (the registry). Thread-safe; bounded."""

    def __init__(self, max_items: int = 4096) -> None:
        self._lock = threading.Lock()
        self._items: dict[Any, tuple[float, Any]] = {}
        self._max = max_items

    def get(self, key: Any, compute: Callable[[], _T], ttl_s: float | None = None) -> _T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and (ttl_s is None or now - hit[0] < ttl_s):
            return hit[1]
        value = compute()
        self.put(key, value)
        return value

    def peek(self, key: Any) -> Any:
        with self._lock:
            hit = self._items.get(key)
        return None if hit is None else hit[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if len(self._items) >= self._max:
                self._items.clear()
            self._items[key] = (time.monotonic(), value)


def page_cache(state: ServiceState) -> PageCache:
    """The page cache of a running service (one per :class:`ServiceState`)."""
    cache = state.extras.get(("overview", "", "cache"))
    if cache is None:
        cache = state.extras[("overview", "", "cache")] = PageCache()
    return cache


# -- listings -------------------------------------------------------------------------------------


def _change(closes: pd.Series, last: float, back: pd.Timestamp) -> float | None:
    """``last`` over the close at or before ``back`` minus 1; None when no bar is that old."""
    older = closes.loc[:back]
    if older.empty:
        return None
    return float(last / float(older.iloc[-1]) - 1.0)


def _health(
    conn: Connection,
    spec: AssetSpec,
    timeframe: str,
    last_ts: pd.Timestamp,
    now: pd.Timestamp,
    quarantined: int,
    checks: dict[tuple[str, str], tuple[str, pd.Timestamp]],
    cache: PageCache,
) -> Health:
    from market.calendars import get_calendar
    from storage.bars import bar_gaps

    def gaps() -> tuple[int, int]:
        report = bar_gaps(conn, spec.symbol, timeframe, get_calendar(spec.calendar))
        return len(report.gaps), int(report.missing)

    count, missing = cache.get(("gaps", spec.symbol, timeframe, last_ts), gaps)
    check = checks.get((spec.symbol, timeframe))
    return Health(
        last_bar_age_s=max((now - last_ts).total_seconds(), 0.0),
        gaps=count,
        missing_bars=missing,
        quarantined=quarantined,
        cross_check=None if check is None else check[0],
        cross_check_at=None if check is None else check[1],
    )


def listings(
    conn: Connection, now: pd.Timestamp | None = None, cache: PageCache | None = None
) -> list[Listing]:
    """Every registered asset with stored bars of its timeframe, by symbol.

    ``now`` (default the current time) is what bar ages are measured against.
    """
    from storage import list_assets, read_bars, watermark
    from storage.market_quotes import list_market_quotes
    from storage.quarantine import list_quarantine
    from storage.verifications import latest_verifications

    at = pd.Timestamp.now(tz="UTC") if now is None else now
    quotes = list_market_quotes(conn, source=QUOTE_SOURCE, currency=QUOTE_CURRENCY)
    by_coin = {str(r["symbol"]): r for r in quotes.to_dict("records")}
    memo = cache or PageCache()
    pending: dict[tuple[str, str], int] = {}
    for entry in list_quarantine(conn):
        pending[(entry.symbol, entry.timeframe)] = pending.get((entry.symbol, entry.timeframe), 0) + 1
    checks = {
        (str(r["symbol"]), str(r["timeframe"])): (str(r["status"]), pd.Timestamp(r["checked_at"]))
        for r in latest_verifications(conn).to_dict("records")
    }
    out: list[Listing] = []
    for spec in list_assets(conn):
        timeframe = spec.timeframe
        last_ts = watermark(conn, spec.symbol, timeframe)
        if last_ts is None:
            continue
        bars = read_bars(conn, spec.symbol, timeframe, start=last_ts - pd.Timedelta(days=8))
        closes = bars["close"]
        last = float(closes.iloc[-1])
        week = closes.loc[last_ts - pd.Timedelta(days=7) :]
        step = max(1, math.ceil(len(week) / SPARK_POINTS))
        coin = (
            by_coin.get(spec.provider_symbols.get(QUOTE_SOURCE, "").upper())
            if spec.asset_class == "crypto"
            else None
        )
        spark = week.iloc[::-1][::step][::-1]  # always ends on the last close
        out.append(
            Listing(
                symbol=spec.symbol,
                asset_class=spec.asset_class,
                timeframe=timeframe,
                description=spec.description or "",
                last_price=last,
                last_ts=last_ts,
                change_1bar=float(last / float(closes.iloc[-2]) - 1.0) if len(closes) > 1 else None,
                change_24h=_change(closes, last, last_ts - pd.Timedelta(hours=24)),
                change_7d=_change(closes, last, last_ts - pd.Timedelta(days=7)),
                volume_24h=float(
                    bars["volume"].loc[last_ts - pd.Timedelta(hours=24) + pd.Timedelta(1) :].sum()
                ),
                spark=tuple(float(v) for v in spark),
                health=_health(
                    conn, spec, timeframe, last_ts, at, pending.get((spec.symbol, timeframe), 0), checks, memo
                ),
                market_cap=None if coin is None or pd.isna(coin["market_cap"]) else float(coin["market_cap"]),
                rank=None if coin is None or pd.isna(coin["rank"]) else int(coin["rank"]),
            )
        )
    return out


def movers(rows: Sequence[Listing], n: int = MOVERS) -> tuple[list[Listing], list[Listing]]:
    """The ``n`` best and ``n`` worst 24-hour changes (gainers only above 0, losers below)."""
    ranked = sorted((r for r in rows if r.change_24h is not None), key=lambda r: r.change_24h or 0.0)
    gainers = [r for r in reversed(ranked) if (r.change_24h or 0.0) > 0][:n]
    losers = [r for r in ranked if (r.change_24h or 0.0) < 0][:n]
    return gainers, losers


def dominance(quotes: pd.DataFrame, coins: Sequence[str] = DOMINANCE_COINS) -> dict[str, float]:
    """Each of ``coins``' share (0..1) of the market caps in the stored listing ``quotes``
    (:func:`storage.market_quotes.list_market_quotes`); empty when no market cap is stored."""
    caps = quotes.dropna(subset=["market_cap"])
    total = float(caps["market_cap"].sum()) if len(caps) else 0.0
    if total <= 0:
        return {}
    return {coin: float(caps.loc[caps["symbol"] == coin, "market_cap"].sum()) / total for coin in coins}


# -- models ---------------------------------------------------------------------------------------


def model_statuses(served: dict[str, str]) -> list[ModelStatus]:
    """Champion and challenger of every registered model (current MLflow tracking URI), with the
    version the service answers with (``served``: name -> version)."""
    from models.registry import CHALLENGER, CHAMPION, VersionInfo, list_versions

    def status(info: VersionInfo, alias: str) -> ModelVersionStatus:
        return ModelVersionStatus(
            alias=alias,
            version=info.version,
            registered_at=info.created,
            promoted_at=info.promoted_at,
            gate=info.gate,
            gate_reasons=info.gate_reasons,
            metrics=info.metrics,
        )

    by_name: dict[str, list[VersionInfo]] = {}
    for info in list_versions():
        by_name.setdefault(info.name, []).append(info)
    out = []
    for name, versions in sorted(by_name.items()):
        champion = next((status(v, CHAMPION) for v in versions if CHAMPION in v.aliases), None)
        challenger = next((status(v, CHALLENGER) for v in versions if CHALLENGER in v.aliases), None)
        out.append(ModelStatus(name, champion, challenger, served.get(name)))
    return out


def served_versions(state: ServiceState) -> dict[str, str]:
    """name -> the version each served model answers with by default."""
    return {name: slot.current.version for name, slot in state.slots.items() if slot.current is not None}


# -- forecasts ------------------------------------------------------------------------------------


def asset_symbols(state: ServiceState) -> list[str]:
    """Every registered asset's symbol, sorted."""
    from storage import list_assets

    with state.engine().connect() as conn:
        return sorted(spec.symbol for spec in list_assets(conn))


async def predictions(state: ServiceState, symbols: Sequence[str], top_k: int = TOP_FEATURES) -> Predictions:
    """The latest forecast of every symbol the served forecaster can score from the stored bars
    (its timeframe, at least ``min_bars`` bars), with the top ``top_k`` SHAP features, and the
    served allocator's weights. Explanations are cached per version, symbol and bar."""
    import asyncio

    from serving import scoring
    from serving.schemas import AllocateRequest, SeriesRequest

    notes: list[str] = []
    forecasts: list[AssetForecast] = []
    cache = page_cache(state)
    for name, slot in state.slots.items():
        loaded = slot.current
        if loaded is None or not hasattr(loaded.python_model, "prepare"):
            continue
        timeframe = loaded.python_model.preprocess.timeframe
        need = scoring.bars_needed(state, name)
        usable = await asyncio.to_thread(_with_bars, state, symbols, timeframe, need)
        if not usable:
            notes.append(f"{name} v{loaded.version}: no asset has {need} stored {timeframe} bars")
            continue
        requests = [SeriesRequest(symbol=s) for s in usable]
        try:
            series = await asyncio.to_thread(scoring.request_series, state, requests, name)
            scored = await scoring.score(state, loaded, series)
        except Problem as exc:  # the stored bars refused by the model: said, not raised
            notes.append(f"{name} v{loaded.version}: {exc.message}")
            continue
        for i, symbol in enumerate(scored.symbols):
            key = ("explain", loaded.name, loaded.version, symbol, scored.last_ts[i], top_k)
            explained = cache.peek(key)
            if explained is None:
                try:
                    answer = await scoring.explained(state, scored, i, top_k)
                    explained = (tuple(Feature(a.feature, a.shap) for a in answer.attributions), None)
                except Problem as exc:  # a version without its training reference
                    explained = ((), exc.message)
                cache.put(key, explained)
            top, why = explained
            if why is not None and why not in notes:
                notes.append(why)
            forecasts.append(
                AssetForecast(
                    symbol=symbol,
                    model=loaded.name,
                    version=loaded.version,
                    alias=loaded.alias,
                    ts=scored.last_ts[i],
                    forecast_log_return=float(scored.forecast[i]),
                    prob_up=float(scored.prob_up[i]),
                    horizon=scored.horizon,
                    top_features=top,
                )
            )
    allocation = None
    for name, slot in state.slots.items():
        loaded = slot.current
        universe = getattr(loaded.python_model, "universe", None) if loaded is not None else None
        if loaded is None or not universe:
            continue
        body = AllocateRequest(model=name, universe=[SeriesRequest(symbol=s) for s in universe])
        try:
            frame = await asyncio.to_thread(scoring.allocation_frame, state, loaded, body)
            ts, weights = await asyncio.to_thread(scoring.allocate, loaded, frame)
        except Problem as exc:
            notes.append(f"{name} v{loaded.version}: {exc.message}")
            continue
        allocation = Allocation(name, loaded.version, ts, tuple(weights))
    if allocation is None:
        notes.append("no allocator is served (it appears once fks-allocator has a @champion)")
    return Predictions(tuple(forecasts), allocation, tuple(notes))


def _with_bars(state: ServiceState, symbols: Sequence[str], timeframe: str, need: int) -> list[str]:
    from storage import count_bars

    with state.engine().connect() as conn:
        return [s for s in symbols if count_bars(conn, s, timeframe) >= need]


# -- the paper book -------------------------------------------------------------------------------


def books(
    conn: Connection, settings: Any, now: pd.Timestamp | None = None, cache: PageCache | None = None
) -> list[Book]:
    """Every paper account's book (see :class:`Book`); risk limits from the shipped
    ``config/risk.yaml`` (what ``fks trade`` uses without ``--risk-file``)."""
    from storage.execution import list_accounts

    return [book(conn, a.name, settings, now, cache) for a in list_accounts(conn)]


def _file(cache: PageCache, path: Any, load: Callable[[Any], _T]) -> _T:
    """``load(path)``, read again only when the file's modification time changes."""
    from pathlib import Path

    try:
        stamp = Path(path).stat().st_mtime_ns if path is not None else None
    except OSError:
        stamp = None
    return cache.get(("file", str(path), stamp, load), lambda: load(path))


def book(
    conn: Connection,
    account: str,
    settings: Any,
    now: pd.Timestamp | None = None,
    cache: PageCache | None = None,
) -> Book:
    """One paper account's :class:`Book`, valued at ``now`` (default the current time).

    Raises:
        execution.portfolio.UnknownAccount: no such account.
    """
    from config.assets import load_asset_specs
    from config.risk import DEFAULT_RISK_FILE, load_risk_configs
    from execution.oms import OPEN_STATES
    from execution.portfolio import MissingFxRate, MissingPrice, drawdown, value_account
    from storage import get_asset, read_bars
    from storage.execution import get_trading_state, list_equity, list_fills, list_orders

    at = pd.Timestamp.now(tz="UTC") if now is None else now
    memo = cache or PageCache()
    specs = {s.symbol: s for s in _file(memo, settings.assets_file, load_asset_specs)}
    note = None
    try:
        valuation = value_account(conn, account, at=at, currencies={s: v.currency for s, v in specs.items()})
    except (MissingPrice, MissingFxRate) as exc:
        return Book(
            account, "", math.nan, math.nan, math.nan, None, (), (), (), (), False, None, (), str(exc)
        )
    equity = list_equity(conn, account)
    curve = tuple(zip(equity.index, equity["equity"].to_numpy(dtype=float).tolist(), strict=True))
    midnight = at.normalize()
    before = equity["equity"].loc[: midnight - pd.Timedelta(1)]
    today = None if before.empty else valuation.equity - float(before.iloc[-1])
    hold: tuple[tuple[pd.Timestamp, float], ...] = ()
    traded = sorted({f.symbol for f in list_fills(conn, account)})
    if curve and traded:
        marks = equity.index
        legs = []
        for symbol in traded:
            asset = get_asset(conn, symbol)
            bars = read_bars(conn, symbol, asset.timeframe if asset else "1d", start=marks[0] - HOLD_LOOKBACK)
            # each mark's price: the close of the last bar opened by then, as the marks were made
            at_marks = bars["close"].reindex(marks, method="ffill").dropna()
            if not at_marks.empty:
                legs.append(at_marks / float(at_marks.iloc[0]))
        if legs:
            mean = pd.concat(legs, axis=1).ffill().mean(axis=1)
            hold = tuple(zip(mean.index, (curve[0][1] * mean.to_numpy(dtype=float)).tolist(), strict=True))
    state = get_trading_state(conn, account)
    orders = tuple(
        OpenOrder(o.id, o.symbol, o.side, o.type, o.quantity, o.filled_quantity, o.limit_price, o.status,
                  o.created_at)
        for o in list_orders(conn, account, statuses=[s.value for s in OPEN_STATES])
    )  # fmt: skip
    limits: list[LimitUse] = []
    risk = _file(memo, DEFAULT_RISK_FILE, load_risk_configs).get(account)
    if risk is not None:
        limits.append(LimitUse("gross exposure", valuation.gross_exposure, risk.max_gross_exposure))
        limits.append(LimitUse("net exposure", abs(valuation.net_exposure), risk.max_net_exposure))
        dd = drawdown(equity["equity"])
        if dd is not None and math.isfinite(dd.current):
            limits.append(LimitUse("drawdown", -dd.current, risk.max_drawdown))
        if today is not None and not before.empty and float(before.iloc[-1]) > 0:
            limits.append(
                LimitUse("daily loss", max(0.0, -today / float(before.iloc[-1])), risk.max_daily_loss)
            )
    positions = tuple(
        PositionRow(r.symbol, r.quantity, r.avg_cost, r.price, r.market_value_base, r.unrealised_pnl_base,
                    r.realised_pnl_base)
        for r in valuation.rows
    )  # fmt: skip
    return Book(
        account=account,
        base=valuation.base,
        cash=valuation.cash,
        equity=valuation.equity,
        total_pnl=valuation.total_pnl,
        today_pnl=today,
        positions=positions,
        orders=orders,
        equity_curve=curve,
        buy_and_hold=hold,
        halted=state.halted,
        halt_reason=state.reason,
        limits=tuple(limits),
        note=note,
    )


# -- the whole page -------------------------------------------------------------------------------


def overview(state: ServiceState, now: pd.Timestamp | None = None) -> Overview:
    """The page's data from the store and the registry (the registry is read again after
    :data:`REGISTRY_TTL_S`, or when the service swaps a version in)."""
    at = pd.Timestamp.now(tz="UTC") if now is None else now
    cache = page_cache(state)
    notes: list[str] = []
    from storage.market_quotes import list_market_quotes

    with state.engine().connect() as conn:
        rows = listings(conn, at, cache)
        accounts = books(conn, state.settings, at, cache)
        quotes = list_market_quotes(conn, source=QUOTE_SOURCE, currency=QUOTE_CURRENCY)
    gainers, losers = movers(rows)
    served = served_versions(state)
    try:
        models = cache.get(
            ("models", tuple(sorted(served.items()))), lambda: model_statuses(served),
            ttl_s=max(state.settings.overview_refresh_s, REGISTRY_TTL_S),
        )  # fmt: skip
    except Exception as exc:  # the registry unreachable must not take the page down
        models = []
        notes.append(f"the model registry could not be read: {exc}")
    if quotes.empty:
        notes.append(
            "no CoinMarketCap listing is stored: market cap, rank and dominance fill in after "
            "`fks market overview` (needs FKS_COINMARKETCAP_API_KEY)"
        )
    return Overview(
        at=at,
        listings=tuple(rows),
        gainers=tuple(gainers),
        losers=tuple(losers),
        dominance=dominance(quotes),
        models=tuple(models),
        books=tuple(accounts),
        refresh_s=state.settings.overview_refresh_s,
        notes=tuple(notes),
    )


# -- one asset ------------------------------------------------------------------------------------


def asset_chart(state: ServiceState, symbol: str, bars: int = CHART_BARS) -> AssetChart:
    """The chart data of ``symbol``'s page: overlays from the served forecaster's feature set (of
    the asset's timeframe), or from :data:`DEFAULT_FEATURE_SET` when that one has no price level.

    Raises:
        Problem: 404 for a symbol that is not registered or has no stored bars.
    """
    from features import build_features, get_feature_set
    from storage import get_asset, read_bars
    from storage.quarantine import list_quarantine

    with state.engine().connect() as conn:
        spec = get_asset(conn, symbol)
        if spec is None:
            raise Problem(404, f"no registered asset {symbol!r}; see GET / for the stored assets")
        frame = read_bars(conn, spec.symbol, spec.timeframe)
        if frame.empty:
            raise Problem(
                404, f"no stored {spec.timeframe} bars of {spec.symbol!r}; ingest them (`fks ingest`)"
            )
        quarantined = tuple(
            e.ts
            for e in list_quarantine(conn, symbol=spec.symbol, timeframe=spec.timeframe)
            if e.ts is not None
        )
    shown = frame.iloc[-bars:]
    feature_set = _served_feature_set(state, spec.timeframe)
    if feature_set is None or not any(i.kind in OVERLAY_KINDS for i in feature_set.indicators):
        feature_set = get_feature_set(DEFAULT_FEATURE_SET)
    overlays: dict[str, list[tuple[pd.Timestamp, float]]] = {}
    history = frame.iloc[-(bars + feature_set.min_history) :]
    try:
        built = build_features(history, feature_set, timeframe=spec.timeframe).reindex(shown.index)
    except ValueError:
        built = pd.DataFrame(index=shown.index)
    for column in built.columns:
        if not str(column).startswith(OVERLAY_PREFIXES):
            continue
        values = built[column] * shown["close"] if "_ratio_" in str(column) else built[column]
        values = values.dropna()
        overlays[str(column).replace("_ratio", "")] = list(
            zip(values.index, values.to_numpy(dtype=float).tolist(), strict=True)
        )
    return AssetChart(
        symbol=spec.symbol,
        timeframe=spec.timeframe,
        bars=shown,
        overlays=overlays,
        quarantined=tuple(t for t in quarantined if t >= shown.index[0]),
        forecasts=_out_of_sample(state, spec.symbol, frame),
        feature_set=feature_set.name,
    )


def _served_feature_set(state: ServiceState, timeframe: str) -> Any:
    for slot in state.slots.values():
        loaded = slot.current
        preprocess = getattr(loaded.python_model, "preprocess", None) if loaded is not None else None
        if preprocess is not None and getattr(preprocess, "timeframe", None) == timeframe:
            return getattr(preprocess, "feature_set", None)
    return None


def _out_of_sample(state: ServiceState, symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
    """Forecasts of ``symbol`` no model was trained on, beside the realised log return over the
    same horizon: the served versions' test forecasts (their training run's
    ``predictions/test_predictions.csv``, when trained on ``symbol``) and the forecasts the
    service answered (table ``predictions``, shadow rows left out). Columns ``ts``,
    ``forecast``, ``realised`` (NaN while unknown), ``source``."""
    from storage.predictions import list_predictions

    log_close = np.log(bars["close"])
    pieces = []
    cache = page_cache(state)
    for slot in state.slots.values():
        loaded = slot.current
        if loaded is None or not hasattr(loaded.python_model, "prepare"):
            continue
        horizon = int(loaded.python_model.preprocess.horizon)
        realised = (log_close.shift(-horizon) - log_close).rename("realised")
        test = cache.get(
            ("test-predictions", loaded.run_id, symbol), partial(_test_predictions, loaded, symbol)
        )
        if test is not None and not test.empty:
            piece = pd.DataFrame({"forecast": test}).join(realised, how="left")
            piece["source"] = f"{loaded.name} v{loaded.version} test"
            pieces.append(piece)
        with state.engine().connect() as conn:
            served = list_predictions(conn, model=loaded.name)
        if not served.empty:
            served = served[(served["symbol"] == symbol) & ~served["shadow"]]
        if not served.empty:
            values = served.drop_duplicates("bar_ts", keep="last")
            forecast = pd.Series(
                [float(o.get("forecast_log_return", math.nan)) for o in values["output"]],
                index=pd.DatetimeIndex(values["bar_ts"], name="ts"),
            )
            piece = pd.DataFrame({"forecast": forecast}).join(realised, how="left")
            piece["source"] = f"{loaded.name} served"
            pieces.append(piece)
    if not pieces:
        return pd.DataFrame(
            {"forecast": [], "realised": [], "source": []}, index=pd.DatetimeIndex([], name="ts")
        )
    return pd.concat(pieces).sort_index()


def _test_predictions(loaded: Any, symbol: str) -> pd.Series | None:
    """The test forecasts logged with ``loaded``'s training run when it was trained on ``symbol``."""
    import mlflow

    try:
        run = mlflow.get_run(loaded.run_id)
    except Exception:  # a run that is gone, or another store: the served forecasts still show
        return None
    if run.data.params.get("symbol") != symbol:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=loaded.run_id, artifact_path="predictions/test_predictions.csv"
        )
    except Exception:  # no test forecasts were logged with this run
        return None
    frame = pd.read_csv(path, index_col=0)
    column = "lstm" if "lstm" in frame.columns else frame.columns[1] if len(frame.columns) > 1 else None
    if column is None:
        return None
    index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True), name="ts")
    return pd.Series(frame[column].to_numpy(dtype=float), index=index)


__all__ = [
    "AssetChart",
    "AssetForecast",
    "Book",
    "Health",
    "Listing",
    "ModelStatus",
    "Overview",
    "PageCache",
    "Predictions",
    "asset_chart",
    "book",
    "dominance",
    "listings",
    "model_statuses",
    "movers",
    "overview",
    "predictions",
    "spark_points",
    "to_jsonable",
]
