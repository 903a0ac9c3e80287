"""``fks backfill`` and ``fks gaps``: page through history in chunks, and list what the store lacks.

Exit codes of ``fks backfill``: 0 everything stored, 1 some ranges could not be fetched from any
provider (they are printed, recorded and retried by a rerun), 2 bad input (nothing fetched).
``fks gaps`` exits 0 when nothing is missing and 3 when it lists missing ranges (as ``fks validate``
does when it finds failing bars), so a script or a scheduled check can act on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli._ui import (
    EXIT_QUARANTINED,
    EXIT_UNEXPECTED,
    fail,
    out,
    polled_progress,
    run_guarded,
    symbol_list,
    table,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from config.settings import Settings
    from ingestion.backfill import BackfillOutcome, MissingRange

EXIT_MISSING = EXIT_QUARANTINED
"""``fks gaps``'s exit code when it lists missing ranges: 3, the code of ``fks validate`` finding bad bars."""

SymbolOption = Annotated[list[str] | None, typer.Option(help="Symbol (repeatable).")]
SymbolsOption = Annotated[str | None, typer.Option(help="Comma-separated symbols, e.g. BTC-USD,ETH-USD.")]


def _fmt(value: datetime) -> str:
    """A UTC time to the minute (to the second when it has seconds)."""
    return value.strftime("%Y-%m-%d %H:%M:%S" if value.second else "%Y-%m-%d %H:%M")


def _chunk_progress(settings: Settings, batch_id: str) -> AbstractContextManager[None]:
    """A progress bar of the run's chunks (done or failed / claimed), fed by ``backfill_chunks``."""
    import pandas as pd

    from storage.backfill import chunk_progress

    since = pd.Timestamp.now(tz="UTC").floor("ms")

    def read(conn: Connection) -> tuple[int, int, str]:
        finished, total = chunk_progress(conn, batch_id, since)
        return finished, total, ""

    return polled_progress(settings, "backfilling chunks", read)


def _print_outcomes(outcomes: Sequence[BackfillOutcome]) -> None:
    if not outcomes:
        out.print(
            "Nothing to backfill: no series with an online provider (provider_symbols in the asset "
            "registry) has holes or failed chunks. Series without one (CSV and synthetic ones) are "
            "left alone: give a series its provider_symbols in config/assets.yaml (FKS_ASSETS_FILE) "
            "to backfill it."
        )
        return
    columns = ["series", "chunks", "skipped (done)", "done", "failed", "bars", "new", "quarantined", "from"]
    rows = [
        [
            f"{o.symbol} {o.timeframe}",
            str(o.chunks),
            str(o.skipped),
            str(o.done),
            str(o.failed),
            str(o.received),
            str(o.inserted),
            str(o.quarantined),
            ", ".join(f"{p} ({n})" for p, n in sorted(o.providers.items())) or "-",
        ]
        for o in outcomes
    ]
    numeric = {"chunks", "skipped (done)", "done", "failed", "bars", "new", "quarantined"}
    out.print(table("Backfill", columns, rows, numeric))


def _print_missing(missing: Sequence[MissingRange]) -> None:
    """One line per range: ``missing: SYMBOL TF START .. END (UTC, end exclusive): ERROR``."""
    for m in missing:
        out.print(
            f"missing: {m.symbol} {m.timeframe} {_fmt(m.start)} .. {_fmt(m.end)} UTC "
            f"({m.bars} bars): {m.error}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def backfill_command(
    symbol: SymbolOption = None,
    symbols: SymbolsOption = None,
    timeframe: Annotated[
        str | None, typer.Option(help="1m, 1h or 1d (default: each asset's own timeframe).")
    ] = None,
    start: Annotated[datetime | None, typer.Option(help="First bar (UTC), inclusive.")] = None,
    end: Annotated[
        datetime | None, typer.Option(help="End (UTC), exclusive; default now (bars that have closed).")
    ] = None,
    gaps: Annotated[
        bool,
        typer.Option(
            "--gaps", help="Fetch only what `fks gaps` lists: holes in stored series and failed chunks."
        ),
    ] = False,
    derive_from: Annotated[
        str | None,
        typer.Option(help="1m: build 1h/1d bars from stored minute bars (complete periods only), no calls."),
    ] = None,
    chunk: Annotated[
        str | None,
        typer.Option(
            help="Chunk length (pandas offset: 1D, 6h, 30D, MS); default backfill_chunk in providers.yaml."
        ),
    ] = None,
    verify: Annotated[
        bool, typer.Option(help="Cross-check each chunk's last bars against a second provider.")
    ] = True,
    reconcile: Annotated[
        bool,
        typer.Option(
            help="Then re-read the series' provisional bars (from a fallback provider) from its primary."
        ),
    ] = False,
) -> None:
    """Page through history in chunks from the online providers; a rerun resumes where it stopped.

    Each chunk is validated and stored with its progress mark in one transaction: after a crash, rerun it.
    Ranges no provider can deliver are printed and recorded (exit 1); rerunning retries them.
    """
    from config.backfill import BackfillConfig
    from config.settings import get_settings
    from flows.backfill import backfill as backfill_flow
    from ingestion.backfill import BackfillIncomplete
    from tasks.runners import fanned_out

    def run() -> None:
        config = BackfillConfig.model_validate(
            {
                "symbols": symbol_list(symbol, symbols),
                "timeframe": timeframe,
                "start": start,
                "end": end,
                "gaps": gaps,
                "derive_from": derive_from,
                "chunk": chunk,
                "verify": verify,
                "reconcile": reconcile,
            }
        )
        settings = get_settings()
        try:
            with _chunk_progress(settings, config.batch_id):
                summary = fanned_out(backfill_flow, settings)(config, settings)
        except BackfillIncomplete as exc:
            _print_outcomes(exc.summary.outcomes)
            _print_missing(exc.summary.missing)
            raise fail(
                f"{len(exc.summary.missing)} range(s) could not be fetched from any provider (listed above; "
                "everything else is stored). Rerun the same command, or `fks backfill --gaps`, to retry them",
                EXIT_UNEXPECTED,
            ) from None
        _print_outcomes(summary.outcomes)

    run_guarded(run)


def gaps_command(
    symbol: SymbolOption = None,
    symbols: SymbolsOption = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe: 1m, 1h or 1d.")] = None,
) -> None:
    """List what the store lacks: holes against each series' calendar, and failed backfill chunks.

    Fetch them with `fks backfill --gaps` (same filters). Exits 3 when it lists missing ranges, 0 when
    none.
    """
    from config.settings import get_settings
    from ingestion.backfill import list_missing
    from tasks.store import store_for

    def run() -> None:
        settings = get_settings()
        found = list_missing(store_for(settings), settings, symbol_list(symbol, symbols), timeframe)
        if not found:
            out.print("No missing ranges: every stored series is complete against its calendar.")
            return
        columns = ["symbol", "tf", "start (UTC)", "end (UTC, excl.)", "bars", "kind", "error"]
        rows = [
            [m.symbol, m.timeframe, _fmt(m.start), _fmt(m.end), str(m.bars), m.kind, m.error or "-"]
            for m in found
        ]
        out.print(table("Missing ranges", columns, rows, {"bars"}))
        total = sum(m.bars for m in found)
        out.print(f"{len(found)} range(s), {total} bar(s) missing. Fetch them with `fks backfill --gaps`.")
        raise typer.Exit(EXIT_MISSING)

    run_guarded(run)


def reconcile_command(
    symbol: SymbolOption = None,
    symbols: SymbolsOption = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe: 1m, 1h or 1d.")] = None,
) -> None:
    """Heal provisional bars: re-read from each asset's primary the bars a fallback provider wrote.

    Bars that differ are replaced and each replacement is recorded (bar_replacements). Exits 0 when
    every series was reconciled, 1 when a primary could not be reached (its bars stay provisional;
    run it again later, or schedule it).
    """
    from config.backfill import ReconcileConfig
    from config.settings import get_settings
    from flows.reconcile import reconcile as reconcile_flow

    def run() -> None:
        config = ReconcileConfig.model_validate(
            {"symbols": symbol_list(symbol, symbols), "timeframe": timeframe}
        )
        outcomes = reconcile_flow(config, get_settings())
        if not outcomes:
            out.print("No stored series of an online asset: nothing to reconcile.")
            return
        columns = ["symbol", "tf", "primary", "provisional", "healed", "confirmed", "remaining", "error"]
        rows = [
            [o.symbol, o.timeframe, o.primary or "-", str(o.provisional), str(o.healed), str(o.confirmed),
             str(o.remaining), o.error or "-"]
            for o in outcomes
        ]  # fmt: skip
        out.print(table("Reconciled", columns, rows, {"provisional", "healed", "confirmed", "remaining"}))
        healed = sum(o.healed for o in outcomes)
        remaining = sum(o.remaining for o in outcomes)
        out.print(
            f"{healed} bar(s) replaced by the primary's values (recorded in bar_replacements); "
            f"{remaining} stay provisional."
        )
        failed = [o for o in outcomes if o.error]
        if failed:
            series = ", ".join(f"{o.symbol} {o.timeframe}" for o in failed)
            raise fail(
                f"the primary of {series} could not be reached (listed above); its bars stay provisional. "
                "Run `fks reconcile` again later",
                EXIT_UNEXPECTED,
            )

    run_guarded(run)
