"""Prefect tasks of the data stage: plan an ingestion, then fetch and store one series at a time."""

from __future__ import annotations

import traceback
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from config.assets import DEFAULT_CALENDARS, AssetClass, AssetSpec, load_asset_specs
from config.flows import IngestConfig, InputError, Source
from config.settings import Settings
from market.calendars import get_calendar
from providers.base import DataFileError, NotSupported
from providers.corporate import fetch_and_store_splits
from providers.csv import CsvProvider
from providers.factory import build_provider, resolve_sample_path
from storage import (
    bar_gaps,
    bar_summary,
    finish_ingest_run,
    get_asset,
    list_assets,
    quarantine_counts,
    register_asset,
    start_ingest_run,
    upsert_assets,
    upsert_bars,
    watermark,
)
from tasks.providers import ONLINE_SOURCES, is_transient, manager_for
from tasks.store import store_for
from tasks.validation import (
    parse_rejects,
    record_screen,
    screen_incoming,
)

_INPUT_ERRORS = (InputError, DataFileError, NotSupported)


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
    return {
        "seed": config.seed,
        "symbols": list(config.symbols),
        "calendar": calendar,
        "origin": pd.Timestamp(config.start).isoformat(),
    }


def _explicit_targets(config: IngestConfig, settings: Settings, engine: Engine) -> list[IngestTarget]:
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
                start=config.start,
                end=config.end,
                full=config.full,
                batch_id=config.batch_id,
                new_asset=new_asset,
            )
        )
    return targets


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
        if asset.default_source == "csv":
            options["path"] = str(resolve_sample_path(options["path"], settings.samples_dir))
        targets.append(
            IngestTarget(
                symbol=asset.symbol,
                timeframe=config.timeframe or asset.timeframe,
                source=asset.default_source,
                options=options,
                calendar=asset.calendar,
                asset_class=asset.asset_class,
                start=config.start,
                end=config.end,
                full=config.full,
                batch_id=config.batch_id,
            )
        )
    return targets


def _online_targets(config: IngestConfig, engine: Engine) -> list[IngestTarget]:
    assert config.source is not None
    return [
        IngestTarget(
            symbol=asset.symbol,
            timeframe=config.timeframe or asset.timeframe,
            source=config.source.value,
            options={},
            calendar=asset.calendar,
            asset_class=asset.asset_class,
            start=config.start,
            end=config.end,
            full=config.full,
            batch_id=config.batch_id,
        )
        for asset in _registered(engine, config.symbols)
    ]


@task(name="plan-ingest", cache_policy=NONE)
def plan_ingest(config: IngestConfig, settings: Settings) -> list[IngestTarget]:
    """Sync the asset registry from its YAML file and list the series to ingest.

    Raises:
        InputError: an unknown symbol, or flags that contradict a registered asset.
    """
    engine = store_for(settings)
    with engine.begin() as conn:
        upsert_assets(conn, load_asset_specs(settings.assets_file))
    if config.source is None:
        return _registry_targets(config, settings, engine)
    if config.source.online:
        return _online_targets(config, engine)
    return _explicit_targets(config, settings, engine)


def _fetch_window(target: IngestTarget, engine: Engine) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
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
    problems: list[Any] = Field(default_factory=list)
    verification: str = ""
    failovers: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def _fetch(
    target: IngestTarget,
    settings: Settings,
    engine: Engine,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> _Fetched:
    if target.source in ONLINE_SOURCES:
        return _fetch_online(target, settings, engine, start, end)
    provider = build_provider(target.source, target.options, samples_dir=settings.samples_dir, strict=False)
    bars = provider.fetch_bars(target.symbol, target.timeframe, start, end)
    problems = []
    if isinstance(provider, CsvProvider):
        problems = parse_rejects(provider.parsed.problems, provider.path)
    return _Fetched(bars=bars, source=target.source, problems=problems)


def _fetch_online(
    target: IngestTarget,
    settings: Settings,
    engine: Engine,
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
    manager = manager_for(settings)
    result = manager.fetch(asset, target.timeframe, start, end, prefer=prefer, batch_id=target.batch_id)
    # the splits over the fetched range: a failure is a warning, never a failed ingestion
    splits = fetch_and_store_splits(
        manager, engine, asset.symbol, asset.asset_class, start, end, prefer=prefer
    )
    outcome = result.verification
    return _Fetched(
        bars=result.bars,
        source=result.provider,
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


@task(
    name="ingest-series",
    task_run_name="ingest-{target.symbol}-{target.timeframe}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=is_transient,
    cache_policy=NONE,
)
def ingest_series(target: IngestTarget, settings: Settings) -> IngestOutcome:
    """Fetch one series, validate it, and store it in one transaction; record the run.

    Rows that pass the ``bars`` suite are upserted; rows that fail it (or cannot be parsed) go to
    ``quarantine``. A failure leaves bars, assets and quarantine as they were and marks the
    ``ingest_runs`` row failed.
    """
    engine = store_for(settings)
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
        start, end = _fetch_window(target, engine)
        fetched = _fetch(target, settings, engine, start, end)
        screened = screen_incoming(
            engine,
            settings,
            fetched.bars,
            symbol=target.symbol,
            timeframe=target.timeframe,
            calendar=target.calendar,
            asset_class=target.asset_class,
            start=start,
        )
        with engine.begin() as conn:
            if target.new_asset is not None and get_asset(conn, target.symbol) is None:
                register_asset(conn, target.new_asset)
            upsert = upsert_bars(conn, target.symbol, target.timeframe, screened.good, source=fetched.source)
            quarantined = record_screen(
                conn,
                screened,
                symbol=target.symbol,
                timeframe=target.timeframe,
                source=fetched.source,
                batch_id=target.batch_id,
                trigger="ingest",
                extra_rejects=fetched.problems,
                ingest_run_id=run_id,
            )
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
        warnings=fetched.warnings,
        **_gap_fields(engine, target),
    )


def collect_outcomes(
    batch_id: str, targets: list[IngestTarget], futures: list[PrefectFuture[IngestOutcome]]
) -> IngestSummary:
    """Wait for every series and build the summary.

    Raises:
        IngestFailed: after all series finished, when any of them failed (the summary rides on it).
    """
    outcomes = []
    for target, future in zip(targets, futures, strict=True):
        future.wait()
        try:
            outcomes.append(future.result())
        except Exception as exc:
            outcomes.append(
                IngestOutcome(
                    symbol=target.symbol,
                    timeframe=target.timeframe,
                    source=target.source,
                    status="failed",
                    error=(str(exc) or "".join(traceback.format_exception_only(exc)).strip()).removeprefix(
                        f"{target.symbol} {target.timeframe}: "
                    ),
                    input_error=isinstance(exc, _INPUT_ERRORS),
                )
            )
    summary = IngestSummary(batch_id=batch_id, outcomes=outcomes)
    if summary.failed:
        raise IngestFailed(summary)
    return summary
