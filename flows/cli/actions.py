"""``fks actions``: the corporate actions (splits) recorded in the store.

Splits are recorded by ``fks ingest`` of an equity or ETF from an online provider (Yahoo,
Polygon), or by hand with ``fks actions add``.

Exit codes: 0 ok (also when nothing is recorded), 2 bad input (a date that is not a date).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated

import typer

from flows.cli._ui import EXIT_BAD_INPUT, fail, out, run_guarded, table

actions_app = typer.Typer(
    help="Corporate actions (splits) recorded from the online providers.", no_args_is_help=True
)


def split_words(ratio: float) -> str:
    """A split ratio in words: ``2-for-1`` for 2.0, ``1-for-10`` for 0.1, ``3-for-2`` for 1.5."""
    fraction = Fraction(ratio).limit_denominator(10_000)
    return f"{fraction.numerator}-for-{fraction.denominator}"


@actions_app.command("list")
def list_command(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol (any case).")] = None,
    start: Annotated[str | None, typer.Option(help="Ex-dates from this date on (UTC, inclusive).")] = None,
    end: Annotated[str | None, typer.Option(help="Ex-dates before this date (UTC, exclusive).")] = None,
) -> None:
    """The recorded splits, by symbol and ex-date: the ratio (new shares per old share; prices
    before the ex-date divide by it) and the provider that reported it."""
    from config.settings import get_settings
    from storage import list_corporate_actions
    from tasks.store import store_for

    def run() -> None:
        try:
            with store_for(get_settings()).connect() as conn:
                actions = list_corporate_actions(conn, symbol, start=start, end=end)
        except ValueError as exc:  # an unparseable --start/--end
            raise fail(f"{exc}; use a date such as 2020-08-31", EXIT_BAD_INPUT) from None
        if not actions:
            which = f" of {symbol.upper()}" if symbol else ""
            out.print(
                f"No corporate actions{which} recorded. They are recorded by `fks ingest` of an equity or "
                "ETF from Yahoo or Polygon (e.g. fks ingest --source auto --symbols AAPL --start 2020-01-01)."
            )
            return
        rows = [
            [a.symbol, f"{a.ex_date:%Y-%m-%d}", a.kind, f"{a.ratio:g}", split_words(a.ratio), a.source]
            for a in actions
        ]
        columns = ["symbol", "ex-date", "kind", "ratio", "split", "source"]
        out.print(table("Corporate actions", columns, rows, {"ratio"}))

    run_guarded(run)


@actions_app.command("add")
def add_command(
    symbol: Annotated[str, typer.Argument(help="The symbol, e.g. AAPL.")],
    ex_date: Annotated[str, typer.Option("--ex-date", help="First session on the new basis (a date, UTC).")],
    ratio: Annotated[
        float, typer.Option(help="New shares per old share: 2 for a 2-for-1 split, 0.1 for 1-for-10.")
    ],
) -> None:
    """Record a split by hand (source ``manual``; providers never overwrite it). Validation then
    reads a jump by that ratio on that date as an unadjusted split, not as an error."""
    import pandas as pd

    from config.settings import get_settings
    from storage import CorporateAction, upsert_corporate_actions
    from tasks.store import store_for

    def run() -> None:
        try:
            when = pd.Timestamp(ex_date)
            when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
            action = CorporateAction(symbol=symbol, ex_date=when, kind="split", ratio=ratio, source="manual")
        except ValueError as exc:
            example = "fks actions add AAPL --ex-date 2020-08-31 --ratio 4"
            raise fail(f"{exc}; e.g. {example}", EXIT_BAD_INPUT) from None
        with store_for(get_settings()).begin() as conn:
            changed = upsert_corporate_actions(conn, [action])
        state = "recorded" if changed else "already recorded"
        out.print(f"{action.symbol} {split_words(action.ratio)} split on {action.ex_date:%Y-%m-%d} {state}.")

    run_guarded(run)
