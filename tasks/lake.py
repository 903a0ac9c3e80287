"""Prefect tasks of the lake: plan which series to move, then export or import one series at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from pydantic import BaseModel, ConfigDict

from config.flows import InputError
from config.lake import LakeExportConfig, LakeImportConfig
from config.settings import Settings
from storage import bar_summary
from storage.lake import Lake, LakeUnreachable, export_series, import_series, open_lake
from tasks.store import store_for


class LakeTarget(BaseModel):
    """One series to move between the store and the lake, and the window ``[start, end)`` (UTC)."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    start: datetime | None = None
    end: datetime | None = None


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
    """What importing one series did: partitions and bars read, and the store's upsert counts."""

    symbol: str
    timeframe: str
    partitions: int
    rows: int
    inserted: int
    updated: int
    unchanged: int
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


@task(name="plan-lake-import", cache_policy=NONE)
def plan_lake_import(config: LakeImportConfig, settings: Settings) -> list[LakeTarget]:
    """The lake's series to import, filtered by the config's symbols and timeframe.

    Raises:
        InputError: when the lake is empty or a requested symbol is not in it (at that timeframe).
        LakeError: when the lake cannot be listed.
    """
    store_for(settings)  # create and migrate the store once, before the series import in parallel
    lake = lake_for(settings)
    series = lake.series(timeframe=config.timeframe)
    if not series and not config.symbols:
        raise InputError(
            f"the lake at {lake.uri} holds no bars{f' at {config.timeframe}' if config.timeframe else ''}; "
            "export some with `fks lake export`, or point FKS_LAKE_URI at another lake"
        )
    _check_known(config.symbols, {s for s, _ in series}, f"the lake at {lake.uri}", "check FKS_LAKE_URI")
    return [
        LakeTarget(symbol=s, timeframe=tf, start=config.start, end=config.end)
        for s, tf in series
        if not config.symbols or s in config.symbols
    ]


@task(
    name="import-series",
    task_run_name="import-{target.symbol}-{target.timeframe}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_is_transient,
    cache_policy=NONE,
)
def import_lake_series(target: LakeTarget, settings: Settings) -> LakeImportOutcome:
    """Upsert one series of the lake into the store in one transaction (idempotent)."""
    lake = lake_for(settings)
    with store_for(settings).begin() as conn:
        result = import_series(lake, conn, target.symbol, target.timeframe, target.start, target.end)
    return LakeImportOutcome(
        symbol=result.symbol,
        timeframe=result.timeframe,
        partitions=result.partitions,
        rows=result.rows,
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        first=result.first,
        last=result.last,
    )
