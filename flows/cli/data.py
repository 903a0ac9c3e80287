"""``fks ingest``, ``fks validate``, ``fks data list`` and ``fks data runs``: load bars, re-validate
them, see what is stored and how the recent ingestions went.

Exit codes: 0 ok, 2 bad input (nothing written), 3 some rows were quarantined (every good row was
stored), 1 a series failed for another reason.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol, cast

import typer

from flows.cli._ui import (
    err,
    exit_if_quarantined,
    fmt_ts,
    out,
    progress_from_runs,
    run_guarded,
    symbol_list,
    table,
)
from flows.cli.render import print_docs, print_ingest, report_ingest_failure

if TYPE_CHECKING:
    from flows.cli.providers import VerificationRow
    from market.calendars import GapReport
    from storage.runs import IngestRun

data_app = typer.Typer(help="Inspect the bar store.", no_args_is_help=True)


class SeriesRow(Protocol):
    """A row of :func:`storage.bar_summary` (``itertuples``): one stored series."""

    symbol: str
    timeframe: str
    first: datetime
    last: datetime
    rows: int


def ingest_command(
    source: Annotated[
        str | None,
        typer.Option(
            help="csv, synthetic, auto (online providers by priority) or a provider asked first "
            "(binance, yahoo, polygon, alphavantage, coingecko); omit to load every enabled asset."
        ),
    ] = None,
    path: Annotated[Path | None, typer.Option(help="CSV file (with --source csv).")] = None,
    symbol: Annotated[list[str] | None, typer.Option(help="Symbol to load (repeatable).")] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="1m, 1h or 1d.")] = None,
    date_format: Annotated[
        str | None, typer.Option(help="strftime format of the CSV dates, or epoch_s / epoch_ms.")
    ] = None,
    adjust: Annotated[bool, typer.Option(help="Scale OHLC by the file's Adj Close column.")] = False,
    adjust_splits: Annotated[
        bool, typer.Option(help="Back-adjust by the splits recorded in corporate_actions (fks actions).")
    ] = False,
    asset_class: Annotated[
        str | None, typer.Option(help="equity, etf, index, fx or crypto (new symbols).")
    ] = None,
    calendar: Annotated[
        str | None, typer.Option(help="XNYS or another exchange, 24/5, 24/7 (new symbols).")
    ] = None,
    start: Annotated[datetime | None, typer.Option(help="First bar (UTC), inclusive.")] = None,
    end: Annotated[datetime | None, typer.Option(help="End (UTC), exclusive.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic market.")] = 7,
    full: Annotated[
        bool, typer.Option(help="Re-read everything instead of resuming from the watermark.")
    ] = False,
) -> None:
    """Load bars into the store: a CSV file, a synthetic market, or every enabled asset's default source."""
    from config.flows import IngestConfig
    from config.settings import get_settings
    from flows.ingest import ingest as ingest_flow
    from ingestion.ingest import IngestFailed
    from tasks.runners import fanned_out

    def run() -> None:
        config = IngestConfig.model_validate(
            {
                "source": source,
                "path": path,
                "symbols": symbol_list(symbol, symbols),
                "timeframe": timeframe,
                "date_format": date_format,
                "adjust": adjust,
                "adjust_splits": adjust_splits,
                "asset_class": asset_class,
                "calendar": calendar,
                "start": start,
                "end": end,
                "seed": seed,
                "full": full,
            }
        )
        settings = get_settings()
        with progress_from_runs(settings, config.batch_id, "ingesting"):
            summary = fanned_out(ingest_flow, settings)(config, settings)
        print_ingest(summary.outcomes)
        exit_if_quarantined(summary.outcomes)

    run_guarded(run, (IngestFailed, report_ingest_failure))


def validate_command(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: every stored series).")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe: 1m, 1h or 1d.")] = None,
    warnings: Annotated[
        bool,
        typer.Option(
            "--warnings",
            help="List the stored bars flagged by warnings (large moves, stale prices...) instead.",
        ),
    ] = False,
) -> None:
    """Re-validate stored bars with the bars suite; failing bars move to quarantine (exit 3).

    With --warnings, list the bars that were kept but flagged (a one-way move beyond the robust
    bound, a stale close, an unadjusted recorded split), with the reason, and validate nothing."""
    from config.flows import ValidateConfig
    from config.settings import get_settings
    from flows.validate import validate as validate_flow
    from tasks.runners import fanned_out

    if warnings:
        run_guarded(lambda: _print_warnings(symbol_list(None, symbols), timeframe))
        return

    def run() -> None:
        config = ValidateConfig(symbols=symbol_list(None, symbols), timeframe=timeframe)
        settings = get_settings()
        with err.status("validating stored bars"):
            summary = fanned_out(validate_flow, settings)(config, settings)
        columns = ["symbol", "tf", "rows checked", "quarantined", "warnings", "missing bars (gaps)"]
        rows = [
            [
                o.symbol,
                o.timeframe,
                str(o.rows_checked),
                str(o.quarantined),
                str(o.warned),
                f"{o.missing_bars} ({o.gap_count}; longest {o.longest_gap})" if o.gap_count else "0",
            ]
            for o in summary.outcomes
        ]
        out.print(table("Validated", columns, rows, {"rows checked", "quarantined", "warnings"}))
        print_docs(summary.outcomes)
        exit_if_quarantined(summary.outcomes)

    run_guarded(run)


def _print_warnings(symbols: list[str] | None, timeframe: str | None) -> None:
    from config.settings import get_settings
    from storage import list_warnings
    from tasks.store import store_for

    with store_for(get_settings()).connect() as conn:
        found = [w for w in list_warnings(conn, timeframe=timeframe) if not symbols or w.symbol in symbols]
    if not found:
        out.print("No stored bar is flagged by a warning.")
        return
    rows = [
        [w.symbol, w.timeframe, w.ts.isoformat(), w.expectation, w.reason, f"{w.flagged_at:%Y-%m-%d %H:%M}"]
        for w in found
    ]
    columns = ["symbol", "tf", "ts", "warning", "reason", "flagged at"]
    out.print(table(f"Warnings ({len(found)} bars kept and flagged)", columns, rows, set()))


@data_app.command("list")
def list_command(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the series as JSON instead of a table.")
    ] = False,
) -> None:
    """Every stored series: symbol, timeframe, first and last bar, rows and gaps against its calendar."""
    import json

    from config.settings import get_settings
    from market.calendars import get_calendar
    from storage import bar_gaps, bar_summary, get_asset
    from storage.verifications import latest_verifications
    from tasks.store import store_for

    engine = store_for(get_settings())
    listed: list[tuple[SeriesRow, GapReport | None, VerificationRow | None]] = []
    with engine.connect() as conn:
        summary = bar_summary(conn)
        verified = cast("list[VerificationRow]", list(latest_verifications(conn).itertuples(index=False)))
        checks = {(c.symbol, c.timeframe): c for c in verified}
        for row in cast("list[SeriesRow]", list(summary.itertuples(index=False))):
            asset = get_asset(conn, row.symbol)
            gaps = bar_gaps(conn, row.symbol, row.timeframe, get_calendar(asset.calendar)) if asset else None
            listed.append((row, gaps, checks.get((row.symbol, row.timeframe))))
    if as_json:
        print(json.dumps([_series_json(*series) for series in listed], indent=2))
        return
    if not listed:
        out.print("The store is empty: run `fks ingest` or `fks pipeline`.")
        return
    columns = ["symbol", "tf", "first", "last", "rows", "missing bars", "gaps", "longest gap", "cross-check"]
    rows = [_series_cells(*series) for series in listed]
    out.print(table("Stored bars", columns, rows, {"rows", "missing bars", "gaps"}))


def _series_cells(row: SeriesRow, gaps: GapReport | None, check: VerificationRow | None) -> list[str]:
    """One row of ``fks data list``'s table (``?``: the series' asset is not registered)."""
    longest = gaps.longest if gaps else None
    return [
        row.symbol,
        row.timeframe,
        fmt_ts(row.first),
        fmt_ts(row.last),
        str(row.rows),
        str(gaps.missing) if gaps else "?",
        str(len(gaps.gaps)) if gaps else "?",
        f"{longest.bars} bars from {longest.start:%Y-%m-%d %H:%M}" if longest else "-",
        f"{check.status} ({check.primary_provider} vs {check.secondary_provider or '-'})" if check else "-",
    ]


def _series_json(row: SeriesRow, gaps: GapReport | None, check: VerificationRow | None) -> dict[str, object]:
    """One series of ``fks data list --json`` (gap fields None: the series' asset is not registered)."""
    longest = gaps.longest if gaps else None
    return {
        "symbol": row.symbol,
        "timeframe": row.timeframe,
        "first": row.first.isoformat(),
        "last": row.last.isoformat(),
        "rows": int(row.rows),
        "missing_bars": int(gaps.missing) if gaps else None,
        "gaps": len(gaps.gaps) if gaps else None,
        "longest_gap": {"bars": int(longest.bars), "start": longest.start.isoformat()} if longest else None,
        "cross_check": {
            "status": check.status,
            "primary_provider": check.primary_provider,
            "secondary_provider": check.secondary_provider or None,
        }
        if check
        else None,
    }


@data_app.command("runs")
def runs_command(
    limit: Annotated[int, typer.Option(min=1, help="How many of the most recent runs to list.")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the runs as JSON instead of a table.")
    ] = False,
) -> None:
    """The most recent ingest runs, newest first, with their state (running, success, failed or
    interrupted: its process was killed). Runs of this host whose process is gone are marked
    interrupted first."""
    import json

    from config.settings import get_settings
    from storage.runs import mark_interrupted_runs, recent_ingest_runs
    from tasks.store import store_for

    engine = store_for(get_settings())
    with engine.begin() as conn:
        mark_interrupted_runs(conn)
    with engine.connect() as conn:
        runs = recent_ingest_runs(conn, limit)
    if as_json:
        print(json.dumps([_run_json(r) for r in runs], indent=2))
        return
    if not runs:
        out.print("No ingest run is recorded: run `fks ingest` or `fks pipeline`.")
        return
    columns = ["id", "batch", "symbol", "tf", "source", "status", "started", "took", "rows", "process"]
    columns.append("error")
    rows = [
        [
            str(r.id),
            r.batch_id,
            r.symbol,
            r.timeframe,
            r.source,
            _status(r.status),
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            f"{(r.finished_at - r.started_at).total_seconds():.1f} s" if r.finished_at is not None else "-",
            "-" if r.rows_received is None else f"{r.rows_inserted} new, {r.rows_updated} updated",
            f"{r.pid}@{r.host}" if r.pid is not None else "-",
            (r.error or "")[:80],
        ]
        for r in runs
    ]
    out.print(table(f"Ingest runs (the {len(runs)} most recent)", columns, rows, {"id", "took"}))


_STATUS_STYLES = {"success": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}


def _status(status: str) -> str:
    style = _STATUS_STYLES.get(status)
    return f"[{style}]{status}[/]" if style else status


def _run_json(run: IngestRun) -> dict[str, object]:
    from dataclasses import asdict

    import pandas as pd

    return {k: v.isoformat() if isinstance(v, pd.Timestamp) else v for k, v in asdict(run).items()}
