"""``fks quarantine``: the rows that failed validation; list them, release or drop them.

Every decision is kept in the audit log with who made it. Exit codes: 0 ok, 2 bad input (an
unknown status or id).
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli._ui import EXIT_BAD_INPUT, actor, fail, fmt_ts, out, run_guarded, table

quarantine_app = typer.Typer(
    help="Rows that failed validation: list them, release or drop them.", no_args_is_help=True
)

IdsArgument = Annotated[list[int], typer.Argument(help="Quarantine ids (see `fks quarantine list`).")]
NoteOption = Annotated[str, typer.Option(help="Why: kept in the audit log.")]


@quarantine_app.command("list")
def list_command(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    status: Annotated[str, typer.Option(help="quarantined, released, dropped or all.")] = "quarantined",
) -> None:
    """Rows held back by validation, with the expectations they failed."""
    from config.settings import get_settings
    from storage import list_quarantine
    from tasks.store import store_for

    def run() -> None:
        if status not in {"quarantined", "released", "dropped", "all"}:
            raise fail(
                f"unknown status {status!r}: use quarantined, released, dropped or all", EXIT_BAD_INPUT
            )
        with store_for(get_settings()).connect() as conn:
            entries = list_quarantine(
                conn, status=None if status == "all" else status, symbol=symbol.upper() if symbol else None
            )
        if not entries:
            out.print(f"No {'' if status == 'all' else status + ' '}rows.")
            return
        rows = [
            [
                str(e.id),
                e.symbol,
                e.timeframe,
                fmt_ts(e.ts),
                ", ".join(e.failed_expectations),
                e.reasons,
                e.status,
            ]
            for e in entries
        ]
        out.print(
            table("Quarantine", ["id", "symbol", "tf", "ts", "failed", "reasons", "status"], rows, {"id"})
        )

    run_guarded(run)


@quarantine_app.command("release")
def release_command(ids: IdsArgument, note: NoteOption = "") -> None:
    """Accept rows a person judged good: re-validate, their failed expectations waived, and store them."""
    from config.settings import get_settings
    from expectations.quarantine import release_quarantined
    from tasks.store import store_for

    def run() -> None:
        settings = get_settings()
        released = release_quarantined(store_for(settings), ids, settings=settings, actor=actor(), note=note)
        for r in released:
            out.print(f"released {r.id}: {r.symbol} {r.timeframe} {fmt_ts(r.ts)} is now stored")

    run_guarded(run)


@quarantine_app.command("drop")
def drop_command(ids: IdsArgument, note: NoteOption = "") -> None:
    """Reject rows for good: they never reach the bars table (the decision is logged)."""
    from config.settings import get_settings
    from expectations.quarantine import drop_quarantined
    from tasks.store import store_for

    def run() -> None:
        drop_quarantined(store_for(get_settings()), ids, actor=actor(), note=note)
        out.print(f"dropped {', '.join(map(str, ids))}")

    run_guarded(run)
