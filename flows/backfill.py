"""The ``backfill`` flow: page through history in chunks, resumable from the chunks already done.

``python -m flows.backfill --symbols BTC-USD --timeframe 1m --start 2024-01-01 --end 2024-02-01``
runs it without the CLI (the same flags as ``fks backfill``, see ``--help``).
"""

from __future__ import annotations

from prefect import flow

from config.backfill import BackfillConfig
from config.settings import Settings, get_settings
from tasks.backfill import BackfillSummary, backfill_series, finish_backfill, open_manager, plan_backfill


@flow(name="backfill", validate_parameters=False)
def backfill(config: BackfillConfig, settings: Settings | None = None) -> BackfillSummary:
    """Fetch (or derive) every chunk still missing of each series, one series after the other.

    The provider manager is built once for the run, so rate limits, breakers and budgets span
    every series. Raises :class:`tasks.backfill.BackfillIncomplete` after the run when some chunk
    could not be fetched from any provider (everything else is stored).
    """
    settings = settings or get_settings()
    targets = plan_backfill(config, settings)
    fetching = config.derive_from is None and any(t.chunks for t in targets)
    manager = open_manager(settings) if fetching else None
    try:
        outcomes = [backfill_series(target, manager, settings) for target in targets]
    finally:
        if manager is not None:
            manager.close()
    return finish_backfill(config.batch_id, outcomes)


def _main(argv: list[str] | None = None) -> None:
    """``python -m flows.backfill``: the flags of ``fks backfill``."""
    import typer

    from flows.cli_backfill import backfill_command

    app = typer.Typer(add_completion=False)
    app.command()(backfill_command)
    app(argv)


if __name__ == "__main__":
    _main()
