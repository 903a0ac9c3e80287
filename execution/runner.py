"""Running the paper desk: open it on the store (:func:`open_desk`), run one live cycle on the
latest stored bars (:func:`run_once`), or replay stored history bar by bar as if live
(:func:`run_replay`). The ``execute`` flow's tasks are these calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Engine

from config.assets import DEFAULT_CALENDARS
from config.flows import InputError
from config.risk import DEFAULT_ACCOUNT, load_risk_configs
from config.settings import Settings
from config.trading import TradeConfig
from execution.desk import Advisor, CycleReport, Desk, Notify, decision_time
from storage import get_asset, read_bars

__all__ = ["DeskRun", "open_desk", "run_once", "run_replay"]


@dataclass(frozen=True)
class DeskRun:
    """What a run of the desk did: its cycles (skipped ones, already run before a restart,
    counted apart), the last equity and whether the account ended halted."""

    account: str
    cycles: int
    skipped: int
    fills: int
    orders: int
    refusals: int
    equity: float
    halted: bool
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    reports: tuple[CycleReport, ...] = field(default_factory=tuple, repr=False)

    @staticmethod
    def of(account: str, reports: list[CycleReport], halted: bool) -> DeskRun:
        """Sum up ``reports``."""
        ran = [r for r in reports if not r.skipped]
        return DeskRun(
            account=account,
            cycles=len(ran),
            skipped=len(reports) - len(ran),
            fills=sum(r.fills for r in ran),
            orders=sum(r.orders for r in ran),
            refusals=sum(r.refusals for r in ran),
            equity=ran[-1].equity if ran else math.nan,
            halted=halted,
            first=ran[0].ts if ran else None,
            last=ran[-1].ts if ran else None,
            reports=tuple(reports),
        )


def _assets(engine: Engine, symbols: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    calendars: dict[str, str] = {}
    timeframes: dict[str, str] = {}
    with engine.connect() as conn:
        for symbol in symbols:
            asset = get_asset(conn, symbol)
            if asset is None:
                raise InputError(
                    f"{symbol} is not a registered asset; add it to config/assets.yaml and `fks ingest` it"
                )
            calendars[symbol] = asset.calendar or DEFAULT_CALENDARS[asset.asset_class]
            timeframes[symbol] = asset.timeframe
    return calendars, timeframes


def _currencies(settings: Settings, config: TradeConfig) -> dict[str, str]:
    """The quote currency of each symbol of ``config`` that ``settings.assets_file`` lists."""
    from config.assets import load_asset_specs

    try:
        specs = load_asset_specs(settings.assets_file)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    return {spec.symbol: spec.currency for spec in specs if spec.symbol in config.symbols}


def open_desk(
    engine: Engine,
    config: TradeConfig,
    advisor: Advisor,
    notify: Notify | None = None,
    currencies: Mapping[str, str] | None = None,
) -> Desk:
    """The account's desk on ``engine``: its limits from ``config.risk_file`` (default
    ``config/risk.yaml``; an account the file does not list has the ``default`` account's
    limits), each symbol's calendar and timeframe from the asset registry, each symbol's quote
    currency from ``currencies`` (``config/assets.yaml``'s ``currency:``; a symbol not named is
    in the account's currency).

    Raises:
        InputError: an unregistered symbol, or an account with another initial cash.
    """
    calendars, timeframes = _assets(engine, config.symbols)
    try:
        limits = load_risk_configs(config.risk_file)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    risk = limits.get(config.account) or limits[DEFAULT_ACCOUNT].model_copy(
        update={"account": config.account}
    )
    try:
        return Desk(engine, config, risk, advisor, calendars=calendars, timeframes=timeframes, notify=notify,
                    currencies=currencies)  # fmt: skip
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def _series(desk: Desk, engine: Engine) -> dict[str, pd.DataFrame]:
    frames = {}
    for symbol in desk.config.symbols:
        bars = read_bars(engine, symbol, desk.timeframe(symbol))
        if bars.empty:
            raise InputError(
                f"no stored {desk.timeframe(symbol)} bars of {symbol}; run `fks ingest --symbols {symbol}`"
            )
        frames[symbol] = bars
    return frames


def _history(frame: pd.DataFrame, ts: pd.Timestamp, keep: int) -> pd.DataFrame:
    end = int(frame.index.searchsorted(ts, side="right"))
    return frame.iloc[max(0, end - keep) : end]


def run_replay(
    desk: Desk,
    engine: Engine,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    on_cycle: Callable[[CycleReport], None] | None = None,
) -> DeskRun:
    """Replay the stored bars of the desk's universe over ``[start, end]`` bar by bar, as if live:
    at each bar time, the cycle sees the bars up to it, sizes at the next bars' opens and sends
    its orders at the next bar's open (the session's open for daily bars); the broker fills them
    on the next bars. Cycles at or before the account's cursor are skipped, so running the same
    replay again after a crash goes on where it stopped.

    Raises:
        InputError: ``start`` after ``end``, no stored bars of a symbol, or fewer than the
            served model's history before ``start``.
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if start > end:
        raise InputError(f"the replay starts at {start} after it ends at {end}; swap them")
    frames = _series(desk, engine)
    keep = desk.advisor.history + 1
    for symbol, frame in frames.items():
        before = int((frame.index <= start).sum())
        if before < desk.advisor.history:
            raise InputError(
                f"{symbol} has {before} stored bars up to {start}, the served model needs "
                f"{desk.advisor.history}; ingest earlier history or start the replay later"
            )
    steps = sorted({t for f in frames.values() for t in f.index if start <= t <= end})
    if not steps:
        raise InputError(f"no stored bars of {', '.join(frames)} between {start} and {end}")
    reports = []
    with desk.oms.session():  # one connection for the OMS's transactions of the whole replay
        for ts in steps:
            if desk.cursor is not None and ts <= desk.cursor:
                reports.append(CycleReport(ts, skipped=True))
                continue
            history = {s: _history(f, ts, keep) for s, f in frames.items()}
            quotes, now = _next_opens(desk, frames, ts)
            report = desk.cycle(ts, history, quotes, now if now is not None else ts)
            reports.append(report)
            if on_cycle is not None:
                on_cycle(report)
    return DeskRun.of(desk.config.account, reports, desk.halted())


def _next_opens(
    desk: Desk, frames: Mapping[str, pd.DataFrame], ts: pd.Timestamp
) -> tuple[dict[str, float] | None, pd.Timestamp | None]:
    """The opens of each symbol's first bar after ``ts`` and when the earliest of them opens (the
    session open for daily bars); (None, None) when a symbol has no later bar."""
    quotes: dict[str, float] = {}
    times = []
    for symbol, frame in frames.items():
        later = int(frame.index.searchsorted(ts, side="right"))
        if later >= len(frame):
            return None, None
        quotes[symbol] = float(frame["open"].iloc[later])
        times.append(decision_time(desk.calendar(symbol), frame.index[later]))
    return quotes, min(times)


def run_once(desk: Desk, engine: Engine, now: pd.Timestamp | None = None) -> DeskRun:
    """One live cycle on the latest stored bars: decided on the last bar of the universe, sized
    at the last closes, sent ``now`` (default: the clock). Nothing happens when no new bar has
    come since the last cycle.

    Raises:
        InputError: no stored bars of a symbol.
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    frames = _series(desk, engine)
    ts = max(f.index[-1] for f in frames.values())
    quotes = {s: float(f["close"].iloc[-1]) for s, f in frames.items()}
    report = desk.cycle(ts, frames, quotes, now)
    return DeskRun.of(desk.config.account, [report], desk.halted())


def trade(
    engine: Engine,
    settings: Settings,
    config: TradeConfig,
    *,
    replay: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    on_cycle: Callable[[CycleReport], None] | None = None,
) -> DeskRun:
    """Open the account's desk on ``engine`` with the REST service of ``settings``
    (``FKS_SERVICE_URL``, ``FKS_SERVICE_API_KEY``) as its advisor and the webhooks of
    ``settings`` (``FKS_WEBHOOK_URLS``) as its notifier, then replay ``replay = (start, end)`` or
    run one live cycle.

    Raises:
        InputError: bad input (see :func:`open_desk`, :func:`run_replay`).
        execution.client.ServiceError: the service cannot be reached or refuses (with a hint).
    """
    from execution.advisor import ServiceAdvisor
    from execution.client import ServiceClient
    from execution.notify import Notifier

    with Notifier.from_settings(settings) as notifier, ServiceClient.from_settings(settings) as client:
        advisor = ServiceAdvisor(client, model=config.model, allocator=config.allocator)
        currencies = _currencies(settings, config)
        desk = open_desk(engine, config, advisor, notify=notifier.callback, currencies=currencies)
        try:
            if replay is not None:
                return run_replay(desk, engine, replay[0], replay[1], on_cycle=on_cycle)
            return run_once(desk, engine)
        except Exception as exc:
            notifier.callback("error", {"account": config.account, "error": str(exc)})
            raise
