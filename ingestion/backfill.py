"""Backfill: plan the chunks of each series, then work through them in order.

A chunk is fetched through the provider manager (failover, rate limits, breakers, verification),
screened with the ``bars`` suite exactly as ingestion does, and stored in one transaction with
its ``done`` mark (:func:`storage.backfill.mark_done`): a crash leaves it ``pending`` and its bars
absent, so a rerun fetches it again and skips every chunk already done. A chunk that no provider
can deliver is marked ``failed`` with the error and the run goes on with the others.

With ``derive_from="1m"`` hour and day bars are built from stored minute bars instead
(:func:`market.derive.derive_complete`): only periods whose every minute of the calendar's grid
is stored are built, so a derived bar never silently covers a partial hour or day::

    engine = open_store(settings.db_url)
    plan = backfill_targets(engine, settings, BackfillConfig(symbols=["BTC-USD"], start="2024-01-01"))
    outcomes = [backfill_target(engine, settings, t) for t in plan.targets]
    summary = backfill_summary(plan.batch_id, outcomes)   # raises BackfillIncomplete on failed chunks
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from config.assets import AssetSpec, load_asset_specs
from config.backfill import BackfillConfig
from config.flows import InputError
from config.providers import load_providers_config
from config.settings import Settings
from expectations.screening import screen_incoming, store_screened
from ingestion.reconcile import HealingWriter, hold_disputed, primary_provider, reconcile_series
from market.bars import Timeframe, as_utc
from market.calendars import get_calendar
from market.derive import derive_complete
from market.ranges import clip_ranges, closed_until, subtract_ranges
from providers.base import ProviderError
from providers.shared import shared_manager
from storage.backfill import (
    BackfillChunk,
    chunk_ranges,
    claim_chunks,
    group_into_chunks,
    list_chunks,
    mark_done,
    mark_failed,
    pending_chunks,
    plan_chunks,
)
from storage.bars import read_bars
from storage.gaps import gap_ranges, missing_bars, series_to_mend
from storage.registry import sync_asset_registry

if TYPE_CHECKING:
    from providers.manager import ProviderManager

DERIVED_SOURCE = "derived:1m"
JOIN_BARS = 1000  # holes closer than this many bars in one chunk are fetched as one window (one request)
_REGISTER_HINT = (
    "register it in config/assets.yaml (or the registry file FKS_ASSETS_FILE names) with its "
    "asset_class and provider_symbols naming it at each provider, e.g. "
    "`{symbol: SOL-USD, asset_class: crypto, provider_symbols: {binance: SOLUSDT, yahoo: SOL-USD}}`"
)

ManagerFactory = Callable[[], "ProviderManager"]
"""Returns the provider manager to fetch chunks with (called only when a chunk is to be fetched)."""


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
    reconcile: bool = False
    batch_id: str

    @property
    def symbol(self) -> str:
        """The asset's symbol."""
        return self.asset.symbol


class BackfillPlan(BaseModel):
    """The series to backfill, and the series left alone (offline series in gaps mode)."""

    batch_id: str
    targets: list[BackfillTarget] = Field(default_factory=list)
    left_alone: list[tuple[str, str]] = Field(default_factory=list)


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
    held: int = 0
    healed: int = 0
    provisional: int = 0
    reconcile_error: str = ""


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


# -- planning ----------------------------------------------------------------------------------


def _sync_registry(engine: Engine, settings: Settings) -> dict[str, AssetSpec]:
    try:
        specs = load_asset_specs(settings.assets_file)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    with engine.begin() as conn:
        return sync_asset_registry(conn, specs)


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
    start = as_utc(config.start)
    cap = closed_until(timeframe)
    end = min(as_utc(config.end), cap) if config.end is not None else cap
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
        reconcile=config.reconcile,
        batch_id=config.batch_id,
    )


def _asset_of(symbol: str, assets: dict[str, AssetSpec]) -> AssetSpec:
    asset = assets.get(symbol)
    if asset is None:
        raise InputError(f"{symbol} has stored bars but is not a registered asset: {_REGISTER_HINT}")
    return asset


def _gap_target(
    conn: Connection, config: BackfillConfig, asset: AssetSpec, timeframe: str, chunk: str
) -> BackfillTarget:
    start = as_utc(config.start) if config.start is not None else None
    end = as_utc(config.end) if config.end is not None else None
    failed = list_chunks(conn, asset.symbol, timeframe, status="failed", start=start, end=end)
    holes = clip_ranges([r for r, _ in gap_ranges(conn, asset, timeframe)], start, end)
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
        reconcile=config.reconcile,
        batch_id=config.batch_id,
    )


def backfill_targets(engine: Engine, settings: Settings, config: BackfillConfig) -> BackfillPlan:
    """Sync the asset registry, then record each series' chunks and list those still to fetch.

    Without ``gaps``: ``[start, end)`` of every symbol, cut into aligned chunks; ``done`` chunks
    are skipped (counted in ``skipped``), ``pending`` and ``failed`` ones are returned. ``end`` is
    capped so that every bar asked for has closed. With ``gaps``: the holes of stored series
    (grouped into chunks) and the failed chunks, whatever their status; series of offline assets
    (no ``provider_symbols``) are left out unless named or derived (listed in ``left_alone``).
    The chunks returned are claimed for ``config.batch_id``.

    Raises:
        InputError: an unknown symbol (the message says how to register it), a symbol without
            provider symbols, or an unreadable registry or providers file.
    """
    assets = _sync_registry(engine, settings)
    _check_symbols(config, assets)
    plan = BackfillPlan(batch_id=config.batch_id)
    with engine.begin() as conn:
        if config.gaps:
            for symbol, timeframe in series_to_mend(conn, config.symbols, config.timeframe):
                asset = _asset_of(symbol, assets)
                if config.derive_from is None and not asset.provider_symbols:
                    plan.left_alone.append((symbol, timeframe))
                    continue
                chunk = _chunk_length(config, settings, timeframe)
                plan.targets.append(_gap_target(conn, config, asset, timeframe, chunk))
        else:
            for symbol in config.symbols:
                asset = assets[symbol]
                timeframe = config.timeframe or asset.timeframe
                chunk = _chunk_length(config, settings, timeframe)
                plan.targets.append(_range_target(conn, config, asset, timeframe, chunk))
        claim_chunks(conn, [c.id for t in plan.targets for c in t.chunks], config.batch_id)
    return plan


# -- one series --------------------------------------------------------------------------------


class _Series:
    """One series' backfill under way: the store, the target and the outcome being counted."""

    def __init__(self, engine: Engine, settings: Settings, target: BackfillTarget) -> None:
        self.engine = engine
        self.settings = settings
        self.target = target
        self.outcome = BackfillOutcome(
            symbol=target.symbol,
            timeframe=target.timeframe,
            chunks=len(target.chunks),
            skipped=target.skipped,
        )

    def store(
        self,
        chunk: ChunkRef,
        bars: pd.DataFrame,
        source: str,
        failure: str | None = None,
        write: HealingWriter | None = None,
    ) -> None:
        """Screen ``bars`` and store them with the chunk's mark (done, or failed with ``failure``);
        ``write`` writes them (fetched bars: a :class:`HealingWriter` recording replacements)."""
        target, out = self.target, self.outcome
        screened = screen_incoming(
            self.engine,
            self.settings,
            bars,
            symbol=target.symbol,
            timeframe=target.timeframe,
            calendar=target.asset.calendar,
            asset_class=target.asset.asset_class.value,
            start=as_utc(chunk.start),
        )
        with self.engine.begin() as conn:
            stored = store_screened(
                conn,
                screened,
                symbol=target.symbol,
                timeframe=target.timeframe,
                source=source,
                batch_id=target.batch_id,
                trigger="ingest",
                write=write,
            )
            if failure is None:
                mark_done(conn, chunk.id, source, len(screened.good), batch_id=target.batch_id)
            else:
                mark_failed(conn, chunk.id, failure, batch_id=target.batch_id)
        out.received += len(bars)
        out.inserted += stored.upsert.inserted
        out.updated += stored.upsert.updated
        out.quarantined += stored.quarantined
        if failure is None:
            out.done += 1
            out.providers[source] = out.providers.get(source, 0) + 1

    def missing(self, chunk: ChunkRef, error: str) -> None:
        """Count ``chunk`` failed and list it in ``missing`` with the bars it still lacks."""
        target = self.target
        with self.engine.connect() as conn:
            bars = missing_bars(
                conn,
                target.symbol,
                target.timeframe,
                get_calendar(target.asset.calendar),
                as_utc(chunk.start),
                as_utc(chunk.end),
            )
        self.outcome.failed += 1
        self.outcome.missing.append(
            MissingRange(
                symbol=target.symbol,
                timeframe=target.timeframe,
                start=chunk.start,
                end=chunk.end,
                kind="failed",
                bars=bars,
                error=error,
            )
        )

    def fetch(self, chunk: ChunkRef, manager: ProviderManager) -> None:
        """Fetch ``chunk`` through ``manager`` and store it; mark it failed when no provider delivers."""
        target = self.target
        start, end = as_utc(chunk.start), as_utc(chunk.end)
        try:
            result = manager.fetch(
                target.asset, target.timeframe, start, end, verify=target.verify, batch_id=target.batch_id
            )
        except ProviderError as exc:
            error = f"{type(exc).__name__}: {exc}"
            with self.engine.begin() as conn:
                mark_failed(conn, chunk.id, error, batch_id=target.batch_id)
            self.missing(chunk, error)
            return
        bars = result.bars
        index = pd.DatetimeIndex(bars.index)
        bars = bars[(index >= start) & (index < end)]
        source = str(result.provider)
        primary = primary_provider(manager, target.asset, target.timeframe)
        bars, held = hold_disputed(
            self.engine, target.symbol, target.timeframe, bars, source, primary, result.verification
        )
        self.outcome.held += len(held)
        writer = HealingWriter(
            target.symbol, target.timeframe, source, trigger="backfill", batch_id=target.batch_id
        )
        self.store(chunk, bars, source, write=writer)
        self.outcome.healed += writer.replaced

    def derive(self, chunk: ChunkRef) -> None:
        """Build ``chunk``'s bars from stored minute bars; mark it failed where minutes are missing."""
        target = self.target
        start, end = as_utc(chunk.start), as_utc(chunk.end)
        pad = pd.Timedelta(days=2)
        with self.engine.connect() as conn:
            minutes = read_bars(conn, target.symbol, "1m", start - pad, end + pad)
        calendar = get_calendar(target.asset.calendar)
        derived, incomplete = derive_complete(minutes, calendar, target.timeframe, start, end)
        failure = None
        if len(incomplete):
            unit = "hour" if target.timeframe == "1h" else "day"
            failure = (
                f"{len(incomplete)} {unit}(s) lack stored minute bars "
                f"(first {incomplete[0]:%Y-%m-%d %H:%M}): "
                f"backfill {target.symbol} at 1m over that range first, or fetch {target.timeframe} from the "
                "providers without --derive-from"
            )
        self.store(chunk, derived, DERIVED_SOURCE, failure=failure)
        if failure is not None:
            self.missing(chunk, failure)


def backfill_target(
    engine: Engine, settings: Settings, target: BackfillTarget, *, manager: ManagerFactory | None = None
) -> BackfillOutcome:
    """Work through one series' chunks in time order; each chunk is stored with its mark atomically.

    ``manager`` returns the provider manager to fetch with (default:
    :func:`providers.shared.shared_manager` of ``settings`` and ``engine``); it is not asked for
    when deriving or when there is no chunk. A chunk no provider can deliver is marked failed and
    listed in ``missing``; other errors (the database, a bug) stop the series with the current
    chunk still pending.
    """
    series = _Series(engine, settings, target)
    managers = manager or (lambda: shared_manager(settings, engine))
    fetching = target.derive_from is None and bool(target.chunks)
    providers = managers() if fetching else None
    for chunk in target.chunks:
        if providers is None:
            series.derive(chunk)
        else:
            series.fetch(chunk, providers)
    if target.reconcile and target.derive_from is None:
        done = reconcile_series(
            engine, settings, target.symbol, target.timeframe, manager=managers, batch_id=target.batch_id
        )
        series.outcome.healed += done.healed
        series.outcome.provisional = done.remaining
        series.outcome.reconcile_error = done.error
    return series.outcome


def backfill_summary(batch_id: str, outcomes: list[BackfillOutcome]) -> BackfillSummary:
    """The summary of a run.

    Raises:
        BackfillIncomplete: when some chunk could not be fetched (the summary rides on it).
    """
    summary = BackfillSummary(batch_id=batch_id, outcomes=outcomes)
    if summary.missing:
        raise BackfillIncomplete(summary)
    return summary


# -- what is missing ---------------------------------------------------------------------------


def _series_missing(conn: Connection, asset: AssetSpec, timeframe: str) -> list[MissingRange]:
    """Failed chunks of one series, and its calendar holes outside them."""
    calendar = get_calendar(asset.calendar)
    found = []
    failed = list_chunks(conn, asset.symbol, timeframe, status="failed")
    for c in failed:
        found.append(
            MissingRange(
                symbol=asset.symbol,
                timeframe=timeframe,
                start=c.start.to_pydatetime(),
                end=c.end.to_pydatetime(),
                kind="failed",
                bars=missing_bars(conn, asset.symbol, timeframe, calendar, c.start, c.end),
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
    engine: Engine, settings: Settings, symbols: Sequence[str] = (), timeframe: str | None = None
) -> list[MissingRange]:
    """Failed backfill chunks, and holes of stored series against their calendars outside them (what
    ``fks gaps`` shows and ``fks backfill --gaps`` fetches), by series then time. Syncs the asset
    registry first.

    Raises:
        InputError: for an unknown symbol, a stored series whose asset is not registered, or an
            unreadable registry file.
    """
    assets = _sync_registry(engine, settings)
    wanted = [s.strip().upper() for s in symbols if s.strip()]
    unknown = [s for s in wanted if s not in assets]
    if unknown:
        raise InputError(f"unknown symbol(s) {', '.join(unknown)}: {_REGISTER_HINT}")
    tf = Timeframe.parse(timeframe).value if timeframe is not None else None
    found: list[MissingRange] = []
    with engine.connect() as conn:
        for symbol, series_tf in series_to_mend(conn, wanted, tf):
            found += _series_missing(conn, _asset_of(symbol, assets), series_tf)
    return sorted(found, key=lambda m: (m.symbol, m.timeframe, m.start, m.kind))
