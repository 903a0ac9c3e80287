"""The ``execute`` flow: the paper desk's cycle (ingest the universe's latest bars, then ask the
REST service, size, check risk, send, fill, reconcile, notify), or a replay of stored history."""

from __future__ import annotations

import pandas as pd
from prefect import flow

from config.flows import IngestConfig
from config.settings import Settings, get_settings
from config.trading import TradeConfig
from execution.runner import DeskRun
from flows.ingest import ingest
from tasks.execution import trade_paper


@flow(name="execute", validate_parameters=False)
def execute(
    config: TradeConfig | None = None,
    settings: Settings | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> DeskRun:
    """One live cycle of ``config``'s paper account (its universe ingested first when
    ``config.ingest``), or, with ``start`` and ``end``, a replay of the stored bars between them."""
    config = config or TradeConfig()
    settings = settings or get_settings()
    if start is None and config.ingest:
        ingest(IngestConfig(symbols=list(config.symbols)), settings)
    return trade_paper(config, settings, start, end)


if __name__ == "__main__":
    execute()
