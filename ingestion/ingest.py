"""Ingestion of market data into the bar store: plan the series, then fetch, screen and store one
series at a time.

:func:`ingest_targets` syncs the asset registry and lists the series an :class:`IngestConfig`
asks for; :func:`ingest_target` loads one of them (what each ``ingest-series`` task runs)::

    engine = open_store(settings.db_url)
    config = IngestConfig(source=Source.CSV, path=Path("spx.csv"), symbols=["SPX"])
    outcomes = [ingest_target(engine, settings, t) for t in ingest_targets(engine, settings, config)]
    summary = ingest_summary(config.batch_id, outcomes)
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from config.assets import DEFAULT_CALENDARS, AssetClass, AssetSpec, load_asset_specs
from config.flows import IngestConfig, InputError, Source
from config.settings import Settings
from expectations.screening import parse_rejects, screen_incoming, store_screened
from ingestion.reconcile import (
    HealingWriter,
    hold_disputed,
    primary_provider,
    provisional_sources,
    reconcile_series,
)
from market.adjust import apply_splits
from market.bars import Timeframe
from market.calendars import get_calendar
from providers.base import DataFileError, NotSupported
from providers.corporate import fetch_and_store_splits
from providers.csv import CsvProvider
from providers.factory import build_provider, resolve_sample_path
from providers.shared import shared_manager
from providers.verify import VerificationOutcome
from storage.assets import get_asset, list_assets, register_asset
from storage.bars import bar_gaps, bar_summary, bars_from_sources, watermark
from storage.corporate_actions import list_corporate_actions
from storage.quarantine import QuarantinedRow, quarantine_counts
from storage.registry import sync_asset_registry
from storage.runs import finish_ingest_run, mark_interrupted_runs, start_ingest_run

if TYPE_CHECKING:
    from providers.manager import ProviderManager

ONLINE_SOURCES: frozenset[str] = frozenset(s.value for s in Source if s.online)
"""Source names fetched through the provider manager (``auto`` and each online provider)."""

INPUT_ERRORS: tuple[type[Exception], ...] = (InputError, DataFileError, NotSupported)
"""Errors that mean bad input (the CLI exits 2), not a failure of the system."""

ManagerFactory = Callable[[], "ProviderManager"]
"""Returns the provider manager to fetch online series with (called only when one is needed)."""


class IngestTarget(BaseModel):
    """One series to ingest: where from, which window, and the asset to register if it is new."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    source: str
    options: dict[str, Any]
    calendar: str
    asset_class: str = "equity"
    start: datetime | None = None
    end: datetime | None = None
    full: bool = False
    adjust_splits: bool = False
    batch_id: str
    new_asset: AssetSpec | None = None


class IngestOutcome(BaseModel):
    """What one series' ingestion did."""

    symbol: str
    timeframe: str
    source: str
    run_id: int | None = None
    status: str
    received: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    stored_rows: int = 0
    stored_first: datetime | None = None
    stored_last: datetime | None = None
    missing_bars: int = 0
    gap_count: int = 0
    longest_gap: str = ""
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    warned: int = 0
    docs_path: str = ""
    provider: str = ""
    verification: str = ""
    failovers: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    provisional: int = 0
    healed: int = 0
    held: int = 0
    error: str = ""
    input_error: bool = False


class IngestSummary(BaseModel):
    """The ingest flow's result: one outcome per series."""

    batch_id: str
    outcomes: list[IngestOutcome] = Field(default_factory=list)

    @property
    def failed(self) -> list[IngestOutcome]:
        """Outcomes whose status is ``failed``."""
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def quarantined(self) -> int:
        """Rows quarantined across every series."""
        return sum(o.quarantined for o in self.outcomes)


class IngestFailed(RuntimeError):
    """Some series failed. ``summary`` holds each outcome; ``input_error`` is True when all were bad input."""

    def __init__(self, summary: IngestSummary) -> None:
        self.summary = summary
        self.input_error = all(o.input_error for o in summary.failed)
        lines = [f"{o.symbol} {o.timeframe}: {o.error}" for o in summary.failed]
        super().__init__("ingestion failed for " + "; ".join(lines))


# -- planning ----------------------------------------------------------------------------------


def _check_registered(spec: AssetSpec, config: IngestConfig) -> None:
    if config.asset_class is not None and config.asset_class != spec.asset_class:
        raise InputError(
            f"{spec.symbol} is registered as {spec.asset_class.value}, not {config.asset_class.value}; "
            "drop --asset-class or use another symbol"
        )
    if config.calendar is not None and config.calendar != spec.calendar:
        raise InputError(
            f"{spec.symbol} is registered with calendar {spec.calendar}, not {config.calendar}; "
            "drop --calendar or use another symbol"
        )


def _source_options(config: IngestConfig, calendar: str) -> dict[str, Any]:
    if config.source is Source.CSV and config.path is not None:  # IngestConfig requires a path for csv
        options: dict[str, Any] = {"path": str(config.path.expanduser().resolve()), "adjust": config.adjust}
        if config.date_format:
            options["date_format"] = config.date_format
        return options
    if config.start is None:
        raise InputError("--source synthetic needs --start")
    options = {
        "seed": config.seed,
        "symbols": list(config.symbols),
        "calendar": calendar,
        "origin": pd.Timestamp(config.start).isoformat(),
    }
    if config.end is not None:  # where a later ingest of every enabled asset stops (_synthetic_end)
        options["end"] = pd.Timestamp(config.end).isoformat()
    return options


def _explicit_targets(config: IngestConfig, engine: Engine) -> list[IngestTarget]:
    if config.source is None:
        raise InputError("an explicit ingestion needs --source")
    if config.calendar is not None:
        try:
            get_calendar(config.calendar)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    asset_class = config.asset_class or AssetClass.EQUITY
    calendars: dict[str, str] = {}
    known: dict[str, AssetSpec | None] = {}
    with engine.connect() as conn:
        for symbol in config.symbols:
            spec = get_asset(conn, symbol)
            known[symbol] = spec
            if spec is not None:
                _check_registered(spec, config)
            calendars[symbol] = spec.calendar if spec else (config.calendar or DEFAULT_CALENDARS[asset_class])
    if config.source is Source.SYNTHETIC and len(set(calendars.values())) > 1:
        raise InputError(
            "a synthetic market runs on one calendar, but these symbols have "
            f"{sorted(set(calendars.values()))}; "
            "ingest them separately"
        )
    timeframe = config.timeframe or "1d"
    targets = []
    for symbol in config.symbols:
        options = _source_options(config, calendars[symbol])
        new_asset = None
        if known[symbol] is None:
            new_asset = AssetSpec(
                symbol=symbol,
                asset_class=asset_class,
                calendar=calendars[symbol],
                timeframe=timeframe,
                default_source=config.source.value,
                source_options=options,
            )
        targets.append(
            IngestTarget(
                symbol=symbol,
                timeframe=timeframe,
                source=config.source.value,
                options=options,
                calendar=calendars[symbol],
                asset_class=spec.asset_class if (spec := known[symbol]) else asset_class,
                **_run_fields(config),
                new_asset=new_asset,
            )
        )
    return targets


def _run_fields(config: IngestConfig) -> dict[str, Any]:
    """The fields every target of one ingest run shares (window, resume, adjustment, batch)."""
    return {
        "start": config.start,
        "end": config.end,
        "full": config.full,
        "adjust_splits": config.adjust_splits,
        "batch_id": config.batch_id,
    }


def _registered(engine: Engine, symbols: list[str]) -> list[AssetSpec]:
    """The registry entries of ``symbols`` (enabled or not).

    Raises:
        InputError: naming the symbols that are not registered and how to register them.
    """
    with engine.connect() as conn:
        by_symbol = {a.symbol: a for a in list_assets(conn)}
    unknown = [s for s in symbols if s not in by_symbol]
    if unknown:
        raise InputError(
            f"not registered: {', '.join(unknown)}; known: {', '.join(sorted(by_symbol)) or 'none'}. "
            "Register a symbol by adding an entry to config/assets.yaml (or the file FKS_ASSETS_FILE "
            "names) with its asset_class and provider_symbols (e.g. {binance: BTCUSDT, yahoo: BTC-USD}), "
            "or ingest a file with --source csv"
        )
    return [by_symbol[s] for s in symbols]


def _registry_targets(config: IngestConfig, settings: Settings, engine: Engine) -> list[IngestTarget]:
    if config.symbols:
        chosen = _registered(engine, config.symbols)
    else:
        with engine.connect() as conn:
            chosen = list_assets(conn, enabled_only=True)
    targets = []
    for asset in chosen:
        options = dict(asset.source_options)
        run = _run_fields(config)
        timeframe = config.timeframe or asset.timeframe
        if asset.default_source == "csv":
            options["path"] = str(resolve_sample_path(options["path"], settings.samples_dir))
        if asset.default_source == "synthetic":
            stored_end = options.pop("end", None)
            if config.end is None:
                run["end"] = _synthetic_end(engine, asset.symbol, timeframe, stored_end)
        targets.append(
            IngestTarget(
                symbol=asset.symbol,
                timeframe=timeframe,
                source=asset.default_source,
                options=options,
                calendar=asset.calendar,
                asset_class=asset.asset_class,
                **run,
            )
        )
    return targets


def _synthetic_end(engine: Engine, symbol: str, timeframe: str, stored_end: str | None) -> datetime | None:
    """Where a registered synthetic series stops when no ``--end`` is given (an ingest of every
    enabled asset, ``fks pipeline``'s first stage). A simulated market has no latest bars: the
    series goes to the end it was last generated to, the later of the end kept in its source
    options at registration (a run interrupted before it is completed) and one bar past its last
    stored bar (a later explicit ``--end``, or a registration from before ends were kept); nothing
    else is added. None when neither is known: the provider then says ``--end`` is needed."""
    with engine.connect() as conn:
        mark = watermark(conn, symbol, timeframe)
    ends = [pd.Timestamp(stored_end)] if stored_end is not None else []
    if mark is not None:
        ends.append(mark + Timeframe.parse(timeframe).delta)
    return max(ends).to_pydatetime() if ends else None


def _online_targets(config: IngestConfig, source: Source, engine: Engine) -> list[IngestTarget]:
    return [
        IngestTarget(
            symbol=asset.symbol,
            timeframe=config.timeframe or asset.timeframe,
            source=source.value,
            options={},
            calendar=asset.calendar,
            asset_class=asset.asset_class,
            **_run_fields(config),
        )
        for asset in _registered(engine, config.symbols)
    ]


def ingest_targets(engine: Engine, settings: Settings, config: IngestConfig) -> list[IngestTarget]:
    """Sync the asset registry from its YAML file and list the series to ingest.

    First the ``running`` runs of this host whose process is gone (a killed ingestion) are marked
    ``interrupted`` (:func:`storage.runs.mark_interrupted_runs`).

    Raises:
        InputError: an unknown symbol, or flags that contradict a registered asset.
        ValueError: an unreadable asset registry file.
    """
    with engine.begin() as conn:
        mark_interrupted_runs(conn)
    with engine.begin() as conn:
        sync_asset_registry(conn, load_asset_specs(settings.assets_file))
    if config.source is None:
        return _registry_targets(config, settings, engine)
    if config.source.online:
        return _online_targets(config, config.source, engine)
    return _explicit_targets(config, engine)


# -- one series --------------------------------------------------------------------------------


def fetch_window(engine: Engine, target: IngestTarget) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """The ``[start, end)`` to fetch: the target's window, starting at the series' watermark (its
    last stored bar, re-fetched so a revised value is updated) unless ``full`` or ``start`` is later."""
    start = pd.Timestamp(target.start) if target.start is not None else None
    end = pd.Timestamp(target.end) if target.end is not None else None
    if target.full:
        return start, end
    with engine.connect() as conn:
        mark = watermark(conn, target.symbol, target.timeframe)
    if mark is not None and (start is None or mark > start):
        start = mark  # re-fetch the last stored bar: a revised value is updated
    return start, end


class _Fetched(BaseModel):
    """Bars of one fetch, who delivered them, and what the fetch learnt on the way."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    bars: pd.DataFrame
    source: str
    primary: str | None = None
    verified: VerificationOutcome | None = None
    problems: list[QuarantinedRow] = Field(default_factory=list)
    verification: str = ""
    failovers: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def _fetch(
    target: IngestTarget,
    settings: Settings,
    engine: Engine,
    manager: ManagerFactory,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> _Fetched:
    if target.source in ONLINE_SOURCES:
        return _fetch_online(target, engine, manager, start, end)
    provider = build_provider(target.source, target.options, samples_dir=settings.samples_dir, strict=False)
    bars = provider.fetch_bars(target.symbol, target.timeframe, start, end)
    problems: list[QuarantinedRow] = []
    if isinstance(provider, CsvProvider):
        problems = parse_rejects(provider.parsed.problems, provider.path)
    return _Fetched(bars=bars, source=target.source, problems=problems)


def _fetch_online(
    target: IngestTarget,
    engine: Engine,
    manager: ManagerFactory,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> _Fetched:
    if start is None:
        raise InputError(
            f"{target.symbol} {target.timeframe} has no stored bars: the first online ingestion needs "
            "--start (or page through history with fks backfill)"
        )
    with engine.connect() as conn:
        asset = get_asset(conn, target.symbol)
    if asset is None:  # planned from the registry, so only a concurrent edit gets here
        raise InputError(f"{target.symbol} is not registered; add it to config/assets.yaml")
    prefer = None if target.source in ("auto", "") else target.source
    providers = manager()
    result = providers.fetch(asset, target.timeframe, start, end, prefer=prefer, batch_id=target.batch_id)
    # the splits over the fetched range: a failure is a warning, never a failed ingestion
    splits = fetch_and_store_splits(
        providers, engine, asset.symbol, asset.asset_class, start, end, prefer=prefer
    )
    outcome = result.verification
    return _Fetched(
        bars=result.bars,
        source=result.provider,
        primary=primary_provider(providers, asset, target.timeframe),
        verified=outcome,
        verification=outcome.status if outcome is not None else "",
        failovers=[str(a) for a in result.attempts],
        warnings=splits.warnings,
    )


def _gap_fields(engine: Engine, target: IngestTarget) -> dict[str, Any]:
    with engine.connect() as conn:
        report = bar_gaps(conn, target.symbol, target.timeframe, get_calendar(target.calendar))
        summary = bar_summary(conn)
    mine = summary[(summary["symbol"] == target.symbol) & (summary["timeframe"] == target.timeframe)]
    longest = report.longest
    return {
        "stored_rows": report.present + report.off_calendar,
        "stored_first": mine["first"].iloc[0].to_pydatetime() if len(mine) else None,
        "stored_last": mine["last"].iloc[0].to_pydatetime() if len(mine) else None,
        "missing_bars": report.missing,
        "gap_count": len(report.gaps),
        "longest_gap": f"{longest.bars} bars from {longest.start:%Y-%m-%d %H:%M}" if longest else "",
    }


def _split_adjusted(engine: Engine, symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
    """``bars`` back-adjusted by the splits of ``symbol`` recorded in ``corporate_actions``."""
    with engine.connect() as conn:
        actions = list_corporate_actions(conn, symbol)
    return apply_splits(bars, actions) if actions and len(bars) else bars


def ingest_target(
    engine: Engine, settings: Settings, target: IngestTarget, *, manager: ManagerFactory | None = None
) -> IngestOutcome:
    """Fetch one series, validate it, and store it in one transaction; record the run.

    Rows that pass the ``bars`` suite are upserted; rows that fail it (or cannot be parsed) go to
    ``quarantine``. A failure leaves bars, assets and quarantine as they were, marks the
    ``ingest_runs`` row failed and is raised. ``manager`` returns the provider manager for online
    sources (default: :func:`providers.shared.shared_manager` of ``settings`` and ``engine``).

    Raises:
        InputError, DataFileError, NotSupported: bad input (see :data:`INPUT_ERRORS`).
        ProviderError: no provider could deliver (``Unavailable`` and ``RateLimited`` are transient).
    """
    managers = manager or (lambda: shared_manager(settings, engine))
    requested = {
        "source": target.source,
        "start": target.start.isoformat() if target.start else None,
        "end": target.end.isoformat() if target.end else None,
        "full": target.full,
        "options": target.options,
    }
    with engine.begin() as conn:
        run_id = start_ingest_run(
            conn,
            batch_id=target.batch_id,
            symbol=target.symbol,
            timeframe=target.timeframe,
            source=target.source,
            requested=requested,
        )
    try:
        start, end = fetch_window(engine, target)
        fetched = _fetch(target, settings, engine, managers, start, end)
        if target.adjust_splits:
            adjusted = _split_adjusted(engine, target.symbol, fetched.bars)
            fetched = fetched.model_copy(update={"bars": adjusted})
        online = target.source in ONLINE_SOURCES
        held = pd.DatetimeIndex([])
        if online:
            kept, held = hold_disputed(
                engine,
                target.symbol,
                target.timeframe,
                fetched.bars,
                fetched.source,
                fetched.primary,
                fetched.verified,
            )
            fetched = fetched.model_copy(update={"bars": kept})
        writer = (
            HealingWriter(
                target.symbol, target.timeframe, fetched.source, trigger="ingest", batch_id=target.batch_id
            )
            if online
            else None
        )
        screened = screen_incoming(
            engine,
            settings,
            fetched.bars,
            symbol=target.symbol,
            timeframe=target.timeframe,
            calendar=target.calendar,
            asset_class=target.asset_class,
            start=start,
            run=f"ingest run {run_id}",
        )
        with engine.begin() as conn:
            if target.new_asset is not None and get_asset(conn, target.symbol) is None:
                register_asset(conn, target.new_asset)
            stored = store_screened(
                conn,
                screened,
                symbol=target.symbol,
                timeframe=target.timeframe,
                source=fetched.source,
                batch_id=target.batch_id,
                trigger="ingest",
                extra_rejects=fetched.problems,
                ingest_run_id=run_id,
                write=writer,
            )
        upsert, quarantined = stored.upsert, stored.quarantined
        healing = _heal(engine, settings, target, fetched, managers)
        good = screened.good
        first = good.index[0].to_pydatetime() if len(good) else None
        last = good.index[-1].to_pydatetime() if len(good) else None
        with engine.begin() as conn:
            finish_ingest_run(conn, run_id, status="success", result=upsert, first_ts=first, last_ts=last)
            reasons = quarantine_counts(conn, ingest_run_ids=[run_id]) if quarantined else {}
    except Exception as exc:
        with engine.begin() as conn:
            finish_ingest_run(conn, run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    return IngestOutcome(
        symbol=target.symbol,
        timeframe=target.timeframe,
        source=target.source,
        run_id=run_id,
        status="success",
        received=upsert.received + quarantined,
        inserted=upsert.inserted,
        updated=upsert.updated,
        unchanged=upsert.unchanged,
        first_ts=first,
        last_ts=last,
        quarantined=quarantined,
        quarantine_reasons=reasons,
        warned=len(screened.report.warnings),
        docs_path=str(screened.report.docs_path or ""),
        provider=fetched.source if target.source != fetched.source else "",
        verification=fetched.verification,
        failovers=fetched.failovers,
        warnings=[*fetched.warnings, *_held_warnings(held, fetched.source), *healing.warnings],
        provisional=healing.provisional,
        healed=(writer.replaced if writer is not None else 0) + healing.healed,
        held=len(held),
        **_gap_fields(engine, target),
    )


class _Healing(BaseModel):
    """What reconciling a series after its ingest did: bars healed, bars still provisional."""

    healed: int = 0
    provisional: int = 0
    warnings: list[str] = Field(default_factory=list)


def _heal(
    engine: Engine, settings: Settings, target: IngestTarget, fetched: _Fetched, managers: ManagerFactory
) -> _Healing:
    """After an online ingest: when the primary answered, re-read the series' provisional bars from
    it (:func:`ingestion.reconcile.reconcile_series`); otherwise count the provisional bars."""
    if fetched.primary is None:
        return _Healing()
    if fetched.source != fetched.primary:
        with engine.connect() as conn:
            count = len(
                bars_from_sources(conn, target.symbol, target.timeframe, provisional_sources(fetched.primary))
            )
        return _Healing(provisional=count)
    done = reconcile_series(
        engine, settings, target.symbol, target.timeframe, manager=managers, batch_id=target.batch_id
    )
    warnings = [f"{done.remaining} provisional bar(s) stay: {done.error}"] if done.error else []
    return _Healing(healed=done.healed, provisional=done.remaining, warnings=warnings)


def _held_warnings(held: pd.DatetimeIndex, source: str) -> list[str]:
    if not len(held):
        return []
    return [
        f"{len(held)} stored bar(s) kept: {source} is on record as disagreeing with them "
        f"(provider_discrepancies), first {held[0]:%Y-%m-%d %H:%M} UTC"
    ]


# -- the run's result --------------------------------------------------------------------------


def failed_outcome(target: IngestTarget, exc: BaseException) -> IngestOutcome:
    """The outcome of a series whose ingestion raised ``exc`` (``input_error`` for bad input)."""
    return IngestOutcome(
        symbol=target.symbol,
        timeframe=target.timeframe,
        source=target.source,
        status="failed",
        error=(str(exc) or "".join(traceback.format_exception_only(exc)).strip()).removeprefix(
            f"{target.symbol} {target.timeframe}: "
        ),
        input_error=isinstance(exc, INPUT_ERRORS),
    )


def ingest_summary(batch_id: str, outcomes: list[IngestOutcome]) -> IngestSummary:
    """The summary of a run.

    Raises:
        IngestFailed: when any series failed (the summary rides on it).
    """
    summary = IngestSummary(batch_id=batch_id, outcomes=outcomes)
    if summary.failed:
        raise IngestFailed(summary)
    return summary
