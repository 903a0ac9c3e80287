"""``fks lake``: export stored bars to the Parquet lake (``FKS_LAKE_URI``) and import them back.

Exit codes: 0 ok, 2 bad input or a lake problem (a refused series, a bad file), 1 the lake is
unreachable, 3 imported rows were quarantined.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated

import typer

from flows.cli._ui import (
    EXIT_BAD_INPUT,
    EXIT_UNEXPECTED,
    Handler,
    err,
    exit_if_quarantined,
    out,
    run_guarded,
    span,
    symbol_list,
    table,
)
from flows.cli.render import print_docs

lake_app = typer.Typer(
    help="The Parquet lake (FKS_LAKE_URI: a folder or s3://bucket/prefix): export bars, import them back.",
    no_args_is_help=True,
)

SymbolOption = Annotated[list[str] | None, typer.Option(help="Symbol (repeatable).")]
SymbolsOption = Annotated[str | None, typer.Option(help="Comma-separated symbols (default: every series).")]
TimeframeOption = Annotated[str | None, typer.Option(help="Only this timeframe: 1m, 1h or 1d.")]
StartOption = Annotated[datetime | None, typer.Option(help="First bar (UTC), inclusive.")]
EndOption = Annotated[datetime | None, typer.Option(help="End (UTC), exclusive.")]


def _lake_failures() -> tuple[tuple[type[Exception], Handler], ...]:
    """The lake's failures for ``run_guarded``: unreachable exits 1, any other lake problem 2."""
    from storage.lake import LakeError, LakeUnreachable

    return (LakeUnreachable, EXIT_UNEXPECTED), (LakeError, EXIT_BAD_INPUT)


def _selection(
    symbol: list[str] | None,
    symbols: str | None,
    timeframe: str | None,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, object]:
    return {"symbols": symbol_list(symbol, symbols), "timeframe": timeframe, "start": start, "end": end}


@lake_app.command("export")
def export_command(
    symbol: SymbolOption = None,
    symbols: SymbolsOption = None,
    timeframe: TimeframeOption = None,
    start: StartOption = None,
    end: EndOption = None,
) -> None:
    """Write stored bars to the lake as Parquet, partitioned by symbol, timeframe and date.

    Re-running it rewrites nothing that is unchanged; exporting part of a series keeps the rest of
    what the lake holds.
    """
    from config.lake import LakeExportConfig
    from config.settings import get_settings
    from flows.lake import lake_export

    def run() -> None:
        config = LakeExportConfig.model_validate(_selection(symbol, symbols, timeframe, start, end))
        with err.status("exporting to the lake"):
            summary = lake_export(config, get_settings())
        if not summary.outcomes:
            which = f" at {config.timeframe}" if config.timeframe else ""
            out.print(f"Nothing to export: the store holds no bars{which}. Run `fks ingest` first.")
            return
        columns = ["series", "rows", "partitions written", "unchanged", "deleted", "span"]
        rows = [
            [
                f"{o.symbol} {o.timeframe}",
                str(o.rows),
                str(o.written),
                str(o.unchanged),
                str(o.deleted),
                span(o.first, o.last),
            ]
            for o in summary.outcomes
        ]
        numeric = {"rows", "partitions written", "unchanged", "deleted"}
        out.print(table(f"Exported to {summary.lake_uri}", columns, rows, numeric))

    run_guarded(run, *_lake_failures())


@lake_app.command("import")
def import_command(
    symbol: SymbolOption = None,
    symbols: SymbolsOption = None,
    timeframe: TimeframeOption = None,
    start: StartOption = None,
    end: EndOption = None,
) -> None:
    """Read bars back from the lake into the store, validated like `fks ingest` (one transaction per series).

    Bars that fail the bars suite go to quarantine (exit 3); a series whose symbol is not a
    registered asset is not imported (exit 2) while the others are.
    """
    from config.lake import LakeImportConfig
    from config.settings import get_settings
    from flows.lake import lake_import

    def run() -> None:
        config = LakeImportConfig.model_validate(_selection(symbol, symbols, timeframe, start, end))
        with err.status("importing from the lake"):
            summary = lake_import(config, get_settings())
        columns = ["series", "partitions", "rows", "new", "updated", "unchanged", "quarantined", "span"]
        rows = [
            [
                f"{o.symbol} {o.timeframe}",
                str(o.partitions),
                str(o.rows),
                str(o.inserted),
                str(o.updated),
                str(o.unchanged),
                str(o.quarantined),
                span(o.first, o.last),
            ]
            for o in summary.outcomes
        ]
        numeric = {"partitions", "rows", "new", "updated", "unchanged", "quarantined"}
        if rows:
            out.print(table(f"Imported from {summary.lake_uri}", columns, rows, numeric))
        print_docs(summary.outcomes)
        for refusal in summary.refused:
            err.print(
                f"[bold red]error:[/] {refusal.symbol} {refusal.timeframe}: {refusal.error}",
                highlight=False,
                soft_wrap=True,
            )
        if not summary.refused:
            exit_if_quarantined(summary.outcomes)
            return
        with contextlib.suppress(typer.Exit):  # print the quarantine summary too; bad input wins
            exit_if_quarantined(summary.outcomes)
        raise typer.Exit(EXIT_BAD_INPUT)

    run_guarded(run, *_lake_failures())
