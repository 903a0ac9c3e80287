"""Moving series between the store and the Parquet lake: plan which series, then export or import
one series at a time.

Import obeys the store's rule that no bar reaches ``bars`` without passing the ``bars`` suite: a
lake can be edited by hand or written by another tool, so every imported series is screened
exactly as ingestion screens a fetch (calendar and asset class from the asset registry, return
bounds against the stored history, releases remembered) and stored in one transaction: good bars
upserted with their lake ``source``, failing bars quarantined (trigger ``ingest``)::

    engine, lake = open_store(settings.db_url), lake_for(settings)
    plan = lake_import_targets(engine, settings, LakeImportConfig())
    outcomes = [import_series_from_lake(engine, settings, lake, t) for t in plan.targets]
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine

from config.assets import load_asset_specs
from config.flows import InputError
from config.lake import LakeExportConfig, LakeImportConfig
from config.settings import Settings
from expectations.screening import quarantine_reasons, screen_incoming, store_screened
from market.bars import BAR_COLUMNS
from storage.bars import UpsertResult, bar_summary
from storage.lake import DEFAULT_SOURCE, Lake, export_series, open_lake, read_lake_series, upsert_lake_bars
from storage.quarantine import QuarantinedRow
from storage.registry import sync_asset_registry


class LakeTarget(BaseModel):
    """One series to move between the store and the lake, and the window ``[start, end)`` (UTC)."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    start: datetime | None = None
    end: datetime | None = None
    calendar: str = ""
    asset_class: str = ""
    batch_id: str = ""


class LakeRefusal(BaseModel):
    """A lake series that was not imported, and why (bad input: the message says how to fix it)."""

    symbol: str
    timeframe: str
    error: str


class LakeImportPlan(BaseModel):
    """The lake's series to import (with their registry entry) and those refused up front."""

    batch_id: str
    targets: list[LakeTarget] = Field(default_factory=list)
    refused: list[LakeRefusal] = Field(default_factory=list)


class LakeExportOutcome(BaseModel):
    """What exporting one series did: bars exported and partitions written, unchanged, deleted."""

    symbol: str
    timeframe: str
    rows: int
    written: int
    unchanged: int
    deleted: int
    first: datetime | None = None
    last: datetime | None = None


class LakeImportOutcome(BaseModel):
    """What importing one series did: partitions and bars read, the store's upsert counts of the
    bars that passed the ``bars`` suite, and the bars quarantined (``rows`` = inserted + updated +
    unchanged + quarantined); ``docs_path`` is the screen's Data Docs page."""

    symbol: str
    timeframe: str
    partitions: int
    rows: int
    inserted: int
    updated: int
    unchanged: int
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    warned: int = 0
    docs_path: str = ""
    first: datetime | None = None
    last: datetime | None = None


def lake_for(settings: Settings) -> Lake:
    """The lake named by ``settings.lake_uri`` (S3 endpoint from ``settings.s3_endpoint_url``).

    Raises:
        LakeError: for a URI that names no lake this code can open.
    """
    return open_lake(settings.lake_uri, settings.s3_endpoint_url)


def _check_known(wanted: list[str], known: set[str], where: str, hint: str) -> None:
    missing = [s for s in wanted if s not in known]
    if missing:
        have = ", ".join(sorted(known)) or "nothing"
        raise InputError(f"{where} has no bars of {', '.join(missing)} (it has {have}); {hint}")


def lake_export_targets(engine: Engine, settings: Settings, config: LakeExportConfig) -> list[LakeTarget]:
    """The stored series to export, filtered by the config's symbols and timeframe.

    Raises:
        InputError: when a requested symbol has no stored bars (at that timeframe).
        LakeError: for a bad ``settings.lake_uri`` (checked before any work).
    """
    lake_for(settings)  # a bad FKS_LAKE_URI fails here, before any work
    with engine.connect() as conn:
        summary = bar_summary(conn)
    if config.timeframe is not None:
        summary = summary[summary["timeframe"] == config.timeframe]
    _check_known(config.symbols, set(summary["symbol"]), "the store", "ingest them first with `fks ingest`")
    if config.symbols:
        summary = summary[summary["symbol"].isin(config.symbols)]
    return [
        LakeTarget(symbol=str(s), timeframe=str(tf), start=config.start, end=config.end)
        for s, tf in zip(summary["symbol"], summary["timeframe"], strict=True)
    ]


def export_series_to_lake(engine: Engine, lake: Lake, target: LakeTarget) -> LakeExportOutcome:
    """Export one stored series to the lake (idempotent: unchanged partitions are not rewritten).

    Raises:
        LakeUnreachable: when the lake's storage cannot be reached (worth a retry).
    """
    with engine.connect() as conn:
        result = export_series(lake, conn, target.symbol, target.timeframe, target.start, target.end)
    return LakeExportOutcome(
        symbol=result.symbol,
        timeframe=result.timeframe,
        rows=result.rows,
        written=result.written,
        unchanged=result.unchanged,
        deleted=result.deleted,
        first=result.first,
        last=result.last,
    )


def _unregistered(symbol: str, timeframe: str) -> LakeRefusal:
    return LakeRefusal(
        symbol=symbol,
        timeframe=timeframe,
        error=(
            f"{symbol} is not a registered asset, so its bars cannot be validated (the calendar and "
            "asset class come from the registry); not imported. Register it by adding an entry to "
            "config/assets.yaml (or the file FKS_ASSETS_FILE names) with its asset_class (and calendar), "
            f"or ingest a file of it once with `fks ingest --source csv --path FILE --symbol {symbol} "
            "--asset-class CLASS`, then run `fks lake import` again"
        ),
    )


def lake_import_targets(engine: Engine, settings: Settings, config: LakeImportConfig) -> LakeImportPlan:
    """Sync the asset registry from its YAML file and list the lake's series to import.

    Series filtered by the config's symbols and timeframe; a series whose symbol is not registered
    is refused (listed in ``refused``, not imported) because it cannot be validated.

    Raises:
        InputError: when the lake is empty or a requested symbol is not in it (at that timeframe).
        LakeError: when the lake cannot be listed.
        ValueError: an unreadable asset registry file.
    """
    with engine.begin() as conn:
        assets = sync_asset_registry(conn, load_asset_specs(settings.assets_file))
    lake = lake_for(settings)
    series = lake.series(timeframe=config.timeframe)
    if not series and not config.symbols:
        raise InputError(
            f"the lake at {lake.uri} holds no bars{f' at {config.timeframe}' if config.timeframe else ''}; "
            "export some with `fks lake export`, or point FKS_LAKE_URI at another lake"
        )
    _check_known(config.symbols, {s for s, _ in series}, f"the lake at {lake.uri}", "check FKS_LAKE_URI")
    plan = LakeImportPlan(batch_id=uuid.uuid4().hex)
    for symbol, tf in series:
        if config.symbols and symbol not in config.symbols:
            continue
        asset = assets.get(symbol.strip().upper())
        if asset is None:
            plan.refused.append(_unregistered(symbol, tf))
            continue
        plan.targets.append(
            LakeTarget(
                symbol=symbol,
                timeframe=tf,
                start=config.start,
                end=config.end,
                calendar=asset.calendar,
                asset_class=asset.asset_class.value,
                batch_id=plan.batch_id,
            )
        )
    return plan


def _with_sources(rejected: list[QuarantinedRow], sources: pd.Series) -> tuple[list[QuarantinedRow], str]:
    """The rejected rows with their lake ``source`` in the row, and the source to quarantine them under.

    That is the rows' common source (a release then stores the bar with it), or ``lake`` when they
    came from several.
    """
    rows = [
        dataclasses.replace(r, row={**r.row, "source": str(sources.get(r.ts, DEFAULT_SOURCE))})
        for r in rejected
    ]
    found = {str(r.row["source"]) for r in rows}
    return rows, found.pop() if len(found) == 1 else DEFAULT_SOURCE


def import_series_from_lake(
    engine: Engine, settings: Settings, lake: Lake, target: LakeTarget
) -> LakeImportOutcome:
    """Screen one series of the lake with the ``bars`` suite and store it in one transaction.

    Good bars are upserted keeping their lake ``source``; failing bars go to ``quarantine``
    (trigger ``ingest``) and the run to ``validation_results``. Importing the same lake twice
    changes no bar and quarantines no row twice.

    Raises:
        LakeUnreachable: when the lake's storage cannot be reached (worth a retry).
        LakeError: a partition that cannot be read.
    """
    bars, partitions = read_lake_series(lake, target.symbol, target.timeframe, target.start, target.end)
    outcome = LakeImportOutcome(
        symbol=target.symbol,
        timeframe=target.timeframe,
        partitions=partitions,
        rows=len(bars),
        inserted=0,
        updated=0,
        unchanged=0,
    )
    if bars.empty:
        return outcome
    screened = screen_incoming(
        engine,
        settings,
        bars[list(BAR_COLUMNS)],
        symbol=target.symbol,
        timeframe=target.timeframe,
        calendar=target.calendar,
        asset_class=target.asset_class,
        start=bars.index[0],
    )
    rejected, quarantine_source = _with_sources(screened.rejected, bars["source"])
    screened = dataclasses.replace(screened, rejected=rejected)

    def write(conn: Connection, good: pd.DataFrame) -> UpsertResult:
        return upsert_lake_bars(conn, target.symbol, target.timeframe, bars.loc[good.index])

    with engine.begin() as conn:
        stored = store_screened(
            conn,
            screened,
            symbol=target.symbol,
            timeframe=target.timeframe,
            source=quarantine_source,
            batch_id=target.batch_id or uuid.uuid4().hex,
            trigger="ingest",
            write=write,
        )
    return outcome.model_copy(
        update={
            "inserted": stored.upsert.inserted,
            "updated": stored.upsert.updated,
            "unchanged": stored.upsert.unchanged,
            "quarantined": stored.quarantined,
            "quarantine_reasons": quarantine_reasons(rejected),
            "warned": len(screened.report.warnings),
            "docs_path": str(screened.report.docs_path or ""),
            "first": bars.index[0].to_pydatetime(),
            "last": bars.index[-1].to_pydatetime(),
        }
    )
