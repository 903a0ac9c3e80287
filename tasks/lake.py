"""Prefect tasks of the lake: plan which series to move, then export or import one series at a time.

Import obeys the store's rule that no bar reaches ``bars`` without passing the ``bars`` suite: a
lake can be edited by hand or written by another tool, so every imported series is screened
exactly as ``fks ingest`` screens a fetch (calendar and asset class from the asset registry,
return bounds against the stored history, releases remembered) and stored in one transaction:
good bars upserted with their lake ``source``, failing bars quarantined (trigger ``ingest``).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict, Field

from config.assets import load_asset_specs
from config.flows import InputError
from config.lake import LakeExportConfig, LakeImportConfig
from config.settings import Settings
from market.bars import BAR_COLUMNS
from storage import QuarantinedRow, bar_summary, list_assets, upsert_assets
from storage.lake import (
    DEFAULT_SOURCE,
    Lake,
    LakeUnreachable,
    export_series,
    open_lake,
    read_lake_series,
    upsert_lake_bars,
)
from tasks.store import store_for
from tasks.validation import Screened, record_screen, screen_incoming


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
    """The lake named by ``settings.lake_uri`` (S3 endpoint from ``settings.s3_endpoint_url``)."""
    return open_lake(settings.lake_uri, settings.s3_endpoint_url)


def _is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only when the lake's storage could not be reached."""
    try:
        state.result()
    except LakeUnreachable:
        return True
    except Exception:
        return False
    return False


def _check_known(wanted: list[str], known: set[str], where: str, hint: str) -> None:
    missing = [s for s in wanted if s not in known]
    if missing:
        have = ", ".join(sorted(known)) or "nothing"
        raise InputError(f"{where} has no bars of {', '.join(missing)} (it has {have}); {hint}")


@task(name="plan-lake-export", cache_policy=NONE)
def plan_lake_export(config: LakeExportConfig, settings: Settings) -> list[LakeTarget]:
    """The stored series to export, filtered by the config's symbols and timeframe.

    Raises:
        InputError: when a requested symbol has no stored bars (at that timeframe).
    """
    lake_for(settings)  # a bad FKS_LAKE_URI fails here, before any work
    with store_for(settings).connect() as conn:
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


@task(
    name="export-series",
    task_run_name="export-{target.symbol}-{target.timeframe}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_is_transient,
    cache_policy=NONE,
)
def export_lake_series(target: LakeTarget, settings: Settings) -> LakeExportOutcome:
    """Export one stored series to the lake (idempotent: unchanged partitions are not rewritten)."""
    with store_for(settings).connect() as conn:
        result = export_series(
            lake_for(settings), conn, target.symbol, target.timeframe, target.start, target.end
        )
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


@task(name="plan-lake-import", cache_policy=NONE)
def plan_lake_import(config: LakeImportConfig, settings: Settings) -> LakeImportPlan:
    """Sync the asset registry from its YAML file and list the lake's series to import.

    Series filtered by the config's symbols and timeframe; a series whose symbol is not registered
    is refused (listed in ``refused``, not imported) because it cannot be validated.

    Raises:
        InputError: when the lake is empty or a requested symbol is not in it (at that timeframe).
        LakeError: when the lake cannot be listed.
    """
    engine = store_for(settings)  # create and migrate the store once, before the series import in parallel
    with engine.begin() as conn:
        upsert_assets(conn, load_asset_specs(settings.assets_file))
    with engine.connect() as conn:
        assets = {a.symbol: a for a in list_assets(conn)}
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


def _screen_lake_bars(target: LakeTarget, bars: pd.DataFrame, settings: Settings) -> Screened:
    """Run the ``bars`` suite on the lake's bars, as ingestion does (history and releases from the store)."""
    return screen_incoming(
        store_for(settings),
        settings,
        bars[list(BAR_COLUMNS)],
        symbol=target.symbol,
        timeframe=target.timeframe,
        calendar=target.calendar,
        asset_class=target.asset_class,
        start=bars.index[0],
    )


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


@task(
    name="import-series",
    task_run_name="import-{target.symbol}-{target.timeframe}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_is_transient,
    cache_policy=NONE,
)
def import_lake_series(target: LakeTarget, settings: Settings) -> LakeImportOutcome:
    """Screen one series of the lake with the ``bars`` suite and store it in one transaction.

    Good bars are upserted keeping their lake ``source``; failing bars go to ``quarantine``
    (trigger ``ingest``) and the run to ``validation_results``. Importing the same lake twice
    changes no bar and quarantines no row twice.
    """
    bars, partitions = read_lake_series(
        lake_for(settings), target.symbol, target.timeframe, target.start, target.end
    )
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
    screened = _screen_lake_bars(target, bars, settings)
    rejected, quarantine_source = _with_sources(screened.rejected, bars["source"])
    screened = dataclasses.replace(screened, rejected=rejected)
    with store_for(settings).begin() as conn:
        upsert = upsert_lake_bars(conn, target.symbol, target.timeframe, bars.loc[screened.good.index])
        quarantined = record_screen(
            conn,
            screened,
            symbol=target.symbol,
            timeframe=target.timeframe,
            source=quarantine_source,
            batch_id=target.batch_id or uuid.uuid4().hex,
            trigger="ingest",
        )
    reasons: dict[str, int] = {}
    for row in rejected:
        for expectation in row.failed_expectations:
            reasons[expectation] = reasons.get(expectation, 0) + 1
    return outcome.model_copy(
        update={
            "inserted": upsert.inserted,
            "updated": upsert.updated,
            "unchanged": upsert.unchanged,
            "quarantined": quarantined,
            "quarantine_reasons": reasons,
            "warned": len(screened.report.warnings),
            "docs_path": str(screened.report.docs_path or ""),
            "first": bars.index[0].to_pydatetime(),
            "last": bars.index[-1].to_pydatetime(),
        }
    )
