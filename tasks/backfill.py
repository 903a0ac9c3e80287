"""Prefect tasks of the backfill: plan the chunks of each series, then work through them in order.

A chunk is fetched through the provider manager (failover, rate limits, breakers, verification),
screened with the ``bars`` suite exactly as ``fks ingest`` does, and stored in one transaction
with its ``done`` mark (:func:`storage.backfill.mark_done`): a crash leaves it ``pending`` and
its bars absent, so a rerun fetches it again and skips every chunk already done. A chunk that no
provider can deliver is marked ``failed`` with the error and the run goes on with the others.

With ``derive_from="1m"`` hour and day bars are built from stored minute bars instead
(:func:`derive_complete`): only periods whose every minute of the calendar's grid is stored are
built, so a derived bar never silently covers a partial hour or day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from config.assets import AssetSpec, load_asset_specs
from config.backfill import BackfillConfig
from config.flows import InputError
from config.providers import load_providers_config
from config.settings import Settings
from market.bars import Timeframe, empty_bars
from market.calendars import Calendar, find_gaps, get_calendar
from market.resample import resample_bars
from providers.base import ProviderError
from providers.online import utc
from storage import bar_gaps, bar_summary, list_assets, read_bars, upsert_assets, upsert_bars
from storage.backfill import (
    BackfillChunk,
    Range,
    chunk_ranges,
    claim_chunks,
    group_into_chunks,
    list_chunks,
    mark_done,
    mark_failed,
    pending_chunks,
    plan_chunks,
)
from tasks.providers import api_keys_for
from tasks.store import store_for
from tasks.validation import record_screen, screen_incoming

DERIVED_SOURCE = "derived:1m"
JOIN_BARS = 1000  # holes closer than this many bars in one chunk are fetched as one window (one request)
_REGISTER_HINT = (
    "register it in config/assets.yaml (or the registry file FKS_ASSETS_FILE names) with its "
    "asset_class and provider_symbols naming it at each provider, e.g. "
    "`{symbol: SOL-USD, asset_class: crypto, provider_symbols: {binance: SOLUSDT, yahoo: SOL-USD}}`"
)


class ChunkRef(BaseModel):
    """One chunk to work on: its id in ``backfill_chunks`` and its range ``[start, end)`` (UTC)."""

    model_config = ConfigDict(frozen=True)

    id: int
    start: datetime
    end: datetime


class BackfillTarget(BaseModel):
    """One series to backfill and the chunks to work on, in time order."""

    model_config = ConfigDict(frozen=True)

    asset: AssetSpec
    timeframe: str
    chunks: list[ChunkRef] = Field(default_factory=list)
    skipped: int = 0
    derive_from: str | None = None
    verify: bool = True
    batch_id: str

    @property
    def symbol(self) -> str:
        """The asset's symbol."""
        return self.asset.symbol


class MissingRange(BaseModel):
    """A range ``[start, end)`` (UTC) of a series that the store lacks.

    ``kind`` is ``gap`` (bars missing against the calendar inside a stored series) or ``failed``
    (a backfill chunk no provider could deliver; ``error`` says why). ``bars`` counts the bars the
    calendar expects there that are not stored.
    """

    symbol: str
    timeframe: str
    start: datetime
    end: datetime
    kind: str = "failed"
    bars: int = 0
    error: str = ""


class BackfillOutcome(BaseModel):
    """What backfilling one series did."""

    symbol: str
    timeframe: str
    chunks: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    received: int = 0
    inserted: int = 0
    updated: int = 0
    quarantined: int = 0
    providers: dict[str, int] = Field(default_factory=dict)
    missing: list[MissingRange] = Field(default_factory=list)


class BackfillSummary(BaseModel):
    """The backfill flow's result: one outcome per series."""

    batch_id: str
    outcomes: list[BackfillOutcome] = Field(default_factory=list)

    @property
    def missing(self) -> list[MissingRange]:
        """Every range this run could not get, in series then time order."""
        return [m for o in self.outcomes for m in o.missing]


class BackfillIncomplete(RuntimeError):
    """Some chunks could not be fetched from any provider; ``summary`` holds every outcome.

    Everything else was stored; the failed chunks are recorded in ``backfill_chunks`` and a rerun
    (or ``fks backfill --gaps``) retries them.
    """

    def __init__(self, summary: BackfillSummary) -> None:
        self.summary = summary
        missing = summary.missing
        lines = [
            f"{m.symbol} {m.timeframe} {m.start:%Y-%m-%d %H:%M}..{m.end:%Y-%m-%d %H:%M}" for m in missing
        ]
        super().__init__(f"{len(missing)} range(s) could not be fetched: " + "; ".join(lines))


def open_manager(settings: Settings) -> Any:
    """The provider manager of ``settings`` (one per flow run; close it when done)."""
    from providers.manager import ProviderManager

    return ProviderManager(settings, store_for(settings), api_keys=api_keys_for(settings))


def closed_until(timeframe: str, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The latest end a backfill may ask for: every bar that opens before it has closed by ``now``.

    A bar opening at ``ts`` has closed when ``ts + one bar <= now`` (a day bar of any calendar
    closes within a day of its date), so the end is the minute after ``now - one bar`` floored.
    """
    current = pd.Timestamp.now(tz="UTC") if now is None else utc(now)
    return (current - Timeframe.parse(timeframe).delta).floor("min") + pd.Timedelta(minutes=1)


def _sync_registry(engine: Engine, settings: Settings) -> dict[str, AssetSpec]:
    try:
        specs = load_asset_specs(settings.assets_file)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    with engine.begin() as conn:
        upsert_assets(conn, specs)
        return {a.symbol: a for a in list_assets(conn)}


def _chunk_length(config: BackfillConfig, settings: Settings, timeframe: str) -> str:
    if config.chunk is not None:
        return config.chunk
    try:
        chunks = load_providers_config(settings.providers_file).backfill_chunk
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return chunks.get(timeframe, {"1m": "1D", "1h": "30D", "1d": "365D"}[timeframe])


def _check_symbols(config: BackfillConfig, assets: dict[str, AssetSpec]) -> None:
    unknown = [s for s in config.symbols if s not in assets]
    if unknown:
        raise InputError(
            f"unknown symbol(s) {', '.join(unknown)}: {_REGISTER_HINT}. "
            f"Registered: {', '.join(sorted(assets)) or 'none'}"
        )
    if config.derive_from is None:
        blind = [s for s in config.symbols if not assets[s].provider_symbols]
        if blind:
            raise InputError(
                f"{', '.join(blind)} has no provider_symbols, so no online provider can be asked for it: "
                "add provider_symbols to its entry in config/assets.yaml (or FKS_ASSETS_FILE)"
            )


def _refs(chunks: Iterable[BackfillChunk]) -> list[ChunkRef]:
    unique = {c.id: c for c in chunks}
    ordered = sorted(unique.values(), key=lambda c: (c.start, c.end, c.id))
    return [ChunkRef(id=c.id, start=c.start.to_pydatetime(), end=c.end.to_pydatetime()) for c in ordered]


def _range_target(
    conn: Connection, config: BackfillConfig, asset: AssetSpec, timeframe: str, chunk: str
) -> BackfillTarget:
    if config.start is None:  # BackfillConfig requires a start outside gaps mode
        raise InputError("backfill needs --start")
    start = utc(config.start)
    cap = closed_until(timeframe)
    end = min(utc(config.end), cap) if config.end is not None else cap
    refs: list[ChunkRef] = []
    skipped = 0
    if end > start:
        planned = plan_chunks(
            conn, asset.symbol, timeframe, chunk_ranges(start, end, chunk), batch_id=config.batch_id
        )
        skipped = sum(c.status == "done" for c in planned)
        refs = _refs(pending_chunks(conn, asset.symbol, timeframe, start, end))
    return BackfillTarget(
        asset=asset,
        timeframe=timeframe,
        chunks=refs,
        skipped=skipped,
        derive_from=config.derive_from,
        verify=config.verify,
        batch_id=config.batch_id,
    )


def _clip(ranges: Iterable[Range], start: pd.Timestamp | None, end: pd.Timestamp | None) -> list[Range]:
    out = []
    for lo, hi in ranges:
        lo = max(lo, start) if start is not None else lo
        hi = min(hi, end) if end is not None else hi
        if hi > lo:
            out.append((lo, hi))
    return out


def subtract_ranges(ranges: Iterable[Range], covered: Sequence[Range]) -> list[Range]:
    """The parts of ``ranges`` that no range of ``covered`` contains (all ``[start, end)``)."""
    out: list[Range] = []
    for lo, hi in ranges:
        pieces = [(lo, hi)]
        for c_lo, c_hi in covered:
            nxt: list[Range] = []
            for p_lo, p_hi in pieces:
                if c_hi <= p_lo or c_lo >= p_hi:
                    nxt.append((p_lo, p_hi))
                    continue
                if p_lo < c_lo:
                    nxt.append((p_lo, c_lo))
                if c_hi < p_hi:
                    nxt.append((c_hi, p_hi))
            pieces = nxt
        out.extend(pieces)
    return out


def gap_ranges(conn: Connection, asset: AssetSpec, timeframe: str) -> list[tuple[Range, int]]:
    """Holes of the stored series against its calendar: ``([first missing, last missing + 1 bar),
    bars missing)`` for each gap between its first and last stored bar."""
    step = Timeframe.parse(timeframe).delta
    report = bar_gaps(conn, asset.symbol, timeframe, get_calendar(asset.calendar))
    return [((g.start, g.end + step), g.bars) for g in report.gaps]


def _series_to_mend(conn: Connection, symbols: Sequence[str], timeframe: str | None) -> list[tuple[str, str]]:
    """Stored series and series with failed chunks, filtered by symbols and timeframe."""
    summary = bar_summary(conn)
    series = {(str(s), str(tf)) for s, tf in zip(summary["symbol"], summary["timeframe"], strict=True)}
    series |= {(c.symbol, c.timeframe) for c in list_chunks(conn, status="failed")}
    wanted = set(symbols)
    return sorted(
        (s, tf) for s, tf in series if (not wanted or s in wanted) and (timeframe is None or tf == timeframe)
    )


def _asset_of(symbol: str, assets: dict[str, AssetSpec]) -> AssetSpec:
    asset = assets.get(symbol)
    if asset is None:
        raise InputError(f"{symbol} has stored bars but is not a registered asset: {_REGISTER_HINT}")
    return asset


def _gap_target(
    conn: Connection, config: BackfillConfig, asset: AssetSpec, timeframe: str, chunk: str
) -> BackfillTarget:
    start = utc(config.start) if config.start is not None else None
    end = utc(config.end) if config.end is not None else None
    failed = list_chunks(conn, asset.symbol, timeframe, status="failed", start=start, end=end)
    holes = _clip([r for r, _ in gap_ranges(conn, asset, timeframe)], start, end)
    holes = subtract_ranges(holes, [(c.start, c.end) for c in failed])
    join = Timeframe.parse(timeframe).delta * JOIN_BARS
    planned = plan_chunks(
        conn, asset.symbol, timeframe, group_into_chunks(holes, chunk, join), batch_id=config.batch_id
    )
    return BackfillTarget(
        asset=asset,
        timeframe=timeframe,
        chunks=_refs([*planned, *failed]),
        derive_from=config.derive_from,
        verify=config.verify,
        batch_id=config.batch_id,
    )


@task(name="plan-backfill", cache_policy=NONE)
def plan_backfill(config: BackfillConfig, settings: Settings) -> list[BackfillTarget]:
    """Sync the asset registry, then record each series' chunks and list those still to fetch.

    Without ``gaps``: ``[start, end)`` of every symbol, cut into aligned chunks; ``done`` chunks
    are skipped (counted in ``skipped``), ``pending`` and ``failed`` ones are returned. ``end`` is
    capped so that every bar asked for has closed. With ``gaps``: the holes of stored series
    (grouped into chunks) and the failed chunks, whatever their status; series of offline assets
    (no ``provider_symbols``) are left out unless named or derived.

    Raises:
        InputError: an unknown symbol (the message says how to register it), a symbol without
            provider symbols, or an unreadable registry or providers file.
    """
    engine = store_for(settings)
    assets = _sync_registry(engine, settings)
    _check_symbols(config, assets)
    targets = []
    with engine.begin() as conn:
        if config.gaps:
            for symbol, timeframe in _series_to_mend(conn, config.symbols, config.timeframe):
                asset = _asset_of(symbol, assets)
                if config.derive_from is None and not asset.provider_symbols:
                    get_run_logger().info(
                        "%s %s: no provider_symbols (an offline series), its holes are left alone",
                        symbol,
                        timeframe,
                    )
                    continue
                chunk = _chunk_length(config, settings, timeframe)
                targets.append(_gap_target(conn, config, asset, timeframe, chunk))
        else:
            for symbol in config.symbols:
                asset = assets[symbol]
                timeframe = config.timeframe or asset.timeframe
                chunk = _chunk_length(config, settings, timeframe)
                targets.append(_range_target(conn, config, asset, timeframe, chunk))
        claim_chunks(conn, [c.id for t in targets for c in t.chunks], config.batch_id)
    return targets


def derive_complete(
    minutes: pd.DataFrame,
    calendar: Calendar,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """Build ``timeframe`` bars opening in ``[start, end)`` from canonical minute bars.

    A period (an hour bin or a session of ``calendar``) is built only when every minute the
    calendar expects in it is present in ``minutes``; minutes off the calendar's grid are ignored.
    Returns the derived bars and the open times of the periods that could not be completed
    (missing minutes), both in time order.
    """
    tf = Timeframe.parse(timeframe)
    lo, hi = utc(start), utc(end)
    pad = pd.Timedelta(days=2)  # a session may open the day before its date (FX)
    grid = calendar.bar_grid(Timeframe.M1, lo - pad, hi + pad)
    expected_bins = calendar.bar_bins(grid, tf)
    keep = np.asarray((expected_bins >= lo) & (expected_bins < hi))
    expected = pd.Series(1, index=expected_bins[keep]).groupby(level=0).size()
    if expected.empty:
        return empty_bars(), pd.DatetimeIndex([], tz="UTC", name="ts")
    on_grid = minutes[np.isin(pd.DatetimeIndex(minutes.index).as_unit("ns").asi8, grid.asi8)]
    bins = calendar.bar_bins(pd.DatetimeIndex(on_grid.index), tf)
    inside = np.asarray((bins >= lo) & (bins < hi))
    present = pd.Series(1, index=bins[inside]).groupby(level=0).size()
    present = present.reindex(expected.index, fill_value=0)
    complete = expected.index[(present == expected).to_numpy()]
    chosen = on_grid[inside & np.isin(bins.asi8, pd.DatetimeIndex(complete).asi8)]
    incomplete = pd.DatetimeIndex(expected.index.difference(complete), name="ts")
    derived = resample_bars(chosen, tf, calendar) if len(chosen) else empty_bars()
    return derived, incomplete


def _screen(target: BackfillTarget, bars: pd.DataFrame, start: pd.Timestamp, settings: Settings) -> Any:
    return screen_incoming(
        store_for(settings),
        settings,
        bars,
        symbol=target.symbol,
        timeframe=target.timeframe,
        calendar=target.asset.calendar,
        asset_class=target.asset.asset_class.value,
        start=start,
    )


def _store(
    target: BackfillTarget,
    chunk: ChunkRef,
    bars: pd.DataFrame,
    source: str,
    settings: Settings,
    outcome: BackfillOutcome,
    failure: str | None = None,
) -> None:
    """Screen ``bars`` and store them with the chunk's mark (done, or failed with ``failure``)."""
    screened = _screen(target, bars, utc(chunk.start), settings)
    with store_for(settings).begin() as conn:
        upsert = upsert_bars(conn, target.symbol, target.timeframe, screened.good, source=source)
        quarantined = record_screen(
            conn,
            screened,
            symbol=target.symbol,
            timeframe=target.timeframe,
            source=source,
            batch_id=target.batch_id,
            trigger="ingest",
        )
        if failure is None:
            mark_done(conn, chunk.id, source, len(screened.good), batch_id=target.batch_id)
        else:
            mark_failed(conn, chunk.id, failure, batch_id=target.batch_id)
    outcome.received += len(bars)
    outcome.inserted += upsert.inserted
    outcome.updated += upsert.updated
    outcome.quarantined += quarantined
    if failure is None:
        outcome.done += 1
        outcome.providers[source] = outcome.providers.get(source, 0) + 1


def _missing(target: BackfillTarget, chunk: ChunkRef, error: str, settings: Settings) -> MissingRange:
    with store_for(settings).connect() as conn:
        stored = read_bars(conn, target.symbol, target.timeframe, utc(chunk.start), utc(chunk.end)).index
    report = find_gaps(
        pd.DatetimeIndex(stored),
        get_calendar(target.asset.calendar),
        target.timeframe,
        utc(chunk.start),
        utc(chunk.end),
    )
    return MissingRange(
        symbol=target.symbol,
        timeframe=target.timeframe,
        start=chunk.start,
        end=chunk.end,
        kind="failed",
        bars=report.missing,
        error=error,
    )


def _fail(
    target: BackfillTarget, chunk: ChunkRef, error: str, settings: Settings, out: BackfillOutcome
) -> None:
    with store_for(settings).begin() as conn:
        mark_failed(conn, chunk.id, error, batch_id=target.batch_id)
    out.failed += 1
    out.missing.append(_missing(target, chunk, error, settings))


def _fetch_chunk(
    target: BackfillTarget, chunk: ChunkRef, manager: Any, settings: Settings, out: BackfillOutcome
) -> None:
    start, end = utc(chunk.start), utc(chunk.end)
    try:
        result = manager.fetch(
            target.asset, target.timeframe, start, end, verify=target.verify, batch_id=target.batch_id
        )
    except ProviderError as exc:
        _fail(target, chunk, f"{type(exc).__name__}: {exc}", settings, out)
        return
    bars = result.bars
    index = pd.DatetimeIndex(bars.index)
    bars = bars[(index >= start) & (index < end)]
    _store(target, chunk, bars, str(result.provider), settings, out)


def _derive_chunk(target: BackfillTarget, chunk: ChunkRef, settings: Settings, out: BackfillOutcome) -> None:
    start, end = utc(chunk.start), utc(chunk.end)
    pad = pd.Timedelta(days=2)
    with store_for(settings).connect() as conn:
        minutes = read_bars(conn, target.symbol, "1m", start - pad, end + pad)
    calendar = get_calendar(target.asset.calendar)
    derived, incomplete = derive_complete(minutes, calendar, target.timeframe, start, end)
    failure = None
    if len(incomplete):
        unit = "hour" if target.timeframe == "1h" else "day"
        failure = (
            f"{len(incomplete)} {unit}(s) lack stored minute bars (first {incomplete[0]:%Y-%m-%d %H:%M}): "
            f"backfill {target.symbol} at 1m over that range first, or fetch {target.timeframe} from the "
            "providers without --derive-from"
        )
    _store(target, chunk, derived, DERIVED_SOURCE, settings, out, failure=failure)
    if failure is not None:
        out.failed += 1
        out.missing.append(_missing(target, chunk, failure, settings))


@task(
    name="backfill-series",
    task_run_name="backfill-{target.asset.symbol}-{target.timeframe}",
    cache_policy=NONE,
)
def backfill_series(target: BackfillTarget, manager: Any, settings: Settings) -> BackfillOutcome:
    """Work through one series' chunks in time order; each chunk is stored with its mark atomically.

    ``manager`` is the flow run's :class:`providers.manager.ProviderManager` (None when deriving).
    A chunk no provider can deliver is marked failed and listed in ``missing``; other errors
    (the database, a bug) stop the series with the current chunk still pending.
    """
    outcome = BackfillOutcome(
        symbol=target.symbol, timeframe=target.timeframe, chunks=len(target.chunks), skipped=target.skipped
    )
    for chunk in target.chunks:
        if target.derive_from is not None:
            _derive_chunk(target, chunk, settings, outcome)
        else:
            _fetch_chunk(target, chunk, manager, settings, outcome)
    return outcome


def finish_backfill(batch_id: str, outcomes: list[BackfillOutcome]) -> BackfillSummary:
    """The summary of a run.

    Raises:
        BackfillIncomplete: when some chunk could not be fetched (the summary rides on it).
    """
    summary = BackfillSummary(batch_id=batch_id, outcomes=outcomes)
    if summary.missing:
        raise BackfillIncomplete(summary)
    return summary


def _series_missing(conn: Connection, asset: AssetSpec, timeframe: str) -> list[MissingRange]:
    """Failed chunks of one series, and its calendar holes outside them."""
    calendar = get_calendar(asset.calendar)
    found = []
    failed = list_chunks(conn, asset.symbol, timeframe, status="failed")
    for c in failed:
        stored = read_bars(conn, asset.symbol, timeframe, c.start, c.end).index
        report = find_gaps(pd.DatetimeIndex(stored), calendar, timeframe, c.start, c.end)
        found.append(
            MissingRange(
                symbol=asset.symbol,
                timeframe=timeframe,
                start=c.start.to_pydatetime(),
                end=c.end.to_pydatetime(),
                kind="failed",
                bars=report.missing,
                error=c.error or "",
            )
        )
    holes = subtract_ranges(
        [r for r, _ in gap_ranges(conn, asset, timeframe)], [(c.start, c.end) for c in failed]
    )
    for lo, hi in holes:
        found.append(
            MissingRange(
                symbol=asset.symbol,
                timeframe=timeframe,
                start=lo.to_pydatetime(),
                end=hi.to_pydatetime(),
                kind="gap",
                bars=len(calendar.bar_grid(timeframe, lo, hi)),
            )
        )
    return found


def list_missing(
    settings: Settings, symbols: Sequence[str] = (), timeframe: str | None = None
) -> list[MissingRange]:
    """Failed backfill chunks, and holes of stored series against their calendars outside them (what
    ``fks gaps`` shows and ``fks backfill --gaps`` fetches), by series then time.

    Raises:
        InputError: for an unknown symbol or a stored series whose asset is not registered.
    """
    engine = store_for(settings)
    assets = _sync_registry(engine, settings)
    wanted = [s.strip().upper() for s in symbols if s.strip()]
    unknown = [s for s in wanted if s not in assets]
    if unknown:
        raise InputError(f"unknown symbol(s) {', '.join(unknown)}: {_REGISTER_HINT}")
    tf = Timeframe.parse(timeframe).value if timeframe is not None else None
    found: list[MissingRange] = []
    with engine.connect() as conn:
        for symbol, series_tf in _series_to_mend(conn, wanted, tf):
            found += _series_missing(conn, _asset_of(symbol, assets), series_tf)
    return sorted(found, key=lambda m: (m.symbol, m.timeframe, m.start, m.kind))
