"""``fks providers``: the online providers' breakers, usage and budgets, and the discrepancies
found by cross-verification.

Everything shown is read from the database, so it reflects every process that fetched through
the provider manager. Exit codes: 0 ok, 2 a missing or invalid providers file, bad option values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Protocol, cast

import typer

from flows.cli._ui import EXIT_BAD_INPUT, out, run_guarded, table

providers_app = typer.Typer(
    help="Online market-data providers: breaker state, calls, credits and budgets; discrepancies.",
    no_args_is_help=True,
)

if TYPE_CHECKING:
    from providers.manager import ProviderManager, ProviderStatus

_STATE_STYLE = {"closed": "[green]closed[/]", "open": "[red]open[/]", "half_open": "[yellow]half-open[/]"}

# providers.yaml missing or invalid, bad option values: exit 2 with the message
_BAD_INPUT = (ValueError, EXIT_BAD_INPUT)


class DiscrepancyRow(Protocol):
    """A row of :func:`storage.verifications.list_discrepancies` (``itertuples``), as shown here."""

    symbol: str
    timeframe: str
    ts: datetime
    field: str
    primary_provider: str
    primary_value: float
    secondary_provider: str
    secondary_value: float
    rel_diff: float
    tolerance: float
    action: str
    detected_at: datetime


class VerificationRow(Protocol):
    """A row of :func:`storage.verifications.latest_verifications` (``itertuples``), as shown here
    and by ``fks data list``; ``reason`` is NaN when there is none."""

    symbol: str
    timeframe: str
    status: str
    primary_provider: str
    secondary_provider: str | None
    bars_compared: int
    discrepancies: int
    checked_at: datetime | None
    reason: str | float | None


def _manager() -> ProviderManager:
    """A provider manager on the configured database (nothing is fetched by the views here)."""
    from config.settings import get_settings
    from providers.shared import open_manager
    from tasks.store import store_for

    settings = get_settings()
    return open_manager(settings, store_for(settings))


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _short(text: str | None, limit: int = 70) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(value: datetime | None) -> str:
    import pandas as pd

    if value is None or pd.isna(value):
        return "-"
    stamp = pd.Timestamp(value)
    return stamp.strftime("%Y-%m-%d" if stamp == stamp.normalize() else "%Y-%m-%d %H:%M")


def status_rows(statuses: Sequence[ProviderStatus]) -> list[list[str]]:
    """Table rows of :meth:`providers.manager.ProviderManager.status`."""
    rows = []
    for s in statuses:
        # budget_left is None only when budget is
        left = cast("float", s.budget_left)
        budget = "-" if s.budget is None else f"{_number(left)} of {s.budget:,}/{s.period}"
        rows.append(
            [
                s.name if s.enabled else f"{s.name} (disabled)",
                _STATE_STYLE.get(s.state, s.state),
                str(s.consecutive_failures),
                f"{s.calls_today:,}",
                f"{s.calls_period:,} / {_number(s.credits_period)}",
                budget,
                s.rate,
                _short(s.last_error),
            ]
        )
    return rows


@providers_app.command("status")
def status_command() -> None:
    """Each provider's circuit breaker, calls today, calls and credits this budget period, budget
    left, rate limit and last error."""

    def run() -> None:
        manager = _manager()
        try:
            statuses = manager.status()
        finally:
            manager.close()
        columns = [
            "provider",
            "breaker",
            "failures",
            "calls today",
            "calls / credits this period",
            "budget left",
            "rate limit",
            "last error",
        ]
        numeric = {"failures", "calls today", "calls / credits this period", "budget left"}
        out.print(table("Providers", columns, status_rows(statuses), numeric))

    run_guarded(run, _BAD_INPUT)


@providers_app.command("discrepancies")
def discrepancies_command(
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe: 1m, 1h or 1d.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows (newest first).")] = 20,
) -> None:
    """Recent bars on which two providers disagreed beyond the tolerance, and the latest
    cross-check of each series (verified, discrepant or skipped, with why)."""
    from market.bars import Timeframe
    from storage.verifications import latest_verifications, list_discrepancies
    from tasks.store import store_for

    def run() -> None:
        from config.settings import get_settings

        tf = None if timeframe is None else Timeframe.parse(timeframe).value
        wanted = None if symbol is None else symbol.strip().upper()
        with store_for(get_settings()).connect() as conn:
            found = list_discrepancies(conn, wanted, tf, limit=limit)
            checks = latest_verifications(conn)
        if wanted is not None:
            checks = checks[checks["symbol"] == wanted]
        if tf is not None:
            checks = checks[checks["timeframe"] == tf]
        if found.empty:
            out.print("No discrepancies recorded.")
        else:
            columns = ["series", "bar", "field", "primary", "secondary", "rel. diff", "action", "detected"]
            rows = [
                [
                    f"{r.symbol} {r.timeframe}",
                    _when(r.ts),
                    str(r.field),
                    f"{r.primary_provider} {r.primary_value:g}",
                    f"{r.secondary_provider} {r.secondary_value:g}",
                    f"{r.rel_diff:.2%} > {r.tolerance:.2%}",
                    str(r.action),
                    _when(r.detected_at),
                ]
                for r in cast("Iterator[DiscrepancyRow]", found.itertuples(index=False))
            ]
            out.print(table("Discrepancies (newest first)", columns, rows, {"rel. diff"}))
        if not checks.empty:
            columns = [
                "series",
                "status",
                "primary",
                "secondary",
                "bars",
                "discrepancies",
                "checked",
                "reason",
            ]
            rows = [
                [
                    f"{r.symbol} {r.timeframe}",
                    str(r.status),
                    str(r.primary_provider),
                    str(r.secondary_provider or "-"),
                    str(r.bars_compared),
                    str(r.discrepancies),
                    _when(r.checked_at),
                    _short(r.reason if isinstance(r.reason, str) else None, 90),
                ]
                for r in cast("Iterator[VerificationRow]", checks.itertuples(index=False))
            ]
            out.print(table("Latest cross-check per series", columns, rows, {"bars", "discrepancies"}))

    run_guarded(run, _BAD_INPUT)
