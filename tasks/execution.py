"""Prefect tasks of the paper desk: one live cycle or a replay of stored history
(:func:`execution.runner.trade`)."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from config.settings import Settings
from config.trading import TradeConfig
from execution.runner import DeskRun, trade
from tasks.store import store_for

__all__ = ["trade_paper"]


@task(name="trade-paper", task_run_name="trade-{config.account}", cache_policy=NONE)
def trade_paper(
    config: TradeConfig,
    settings: Settings,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> DeskRun:
    """One cycle of the paper desk on the latest stored bars, or a replay of ``[start, end]``
    when both are given. Not retried: a cycle is idempotent, but its caller decides when to run
    it again.

    Raises:
        InputError: bad input; execution.client.ServiceError: the service cannot answer.
    """
    replay = (start, end) if start is not None and end is not None else None
    return trade(store_for(settings), settings, config, replay=replay)
