"""A paper-desk replay in a process of its own, for the crash test (killed with SIGKILL and run
again): ``python -m tests.desk_replay_main DB_URL RISK_FILE START END``."""

from __future__ import annotations

import sys

import pandas as pd

from config.settings import Settings
from config.trading import PaperCostsConfig, TradeConfig
from execution.runner import open_desk, run_replay
from tasks.store import store_for
from tests.desk_support import MomentumAdvisor


def main(db_url: str, risk_file: str, start: str, end: str) -> None:
    engine = store_for(Settings(db_url=db_url))
    config = TradeConfig(
        risk_file=risk_file,
        sizing={"strategy": "long_short"},
        paper=PaperCostsConfig(slippage_bps=1, spread_bps=4, fee_bps=2, volume_share=2e-8),  # partial fills
    )
    run_replay(
        open_desk(engine, config, MomentumAdvisor()),
        engine,
        pd.Timestamp(start, tz="UTC"),
        pd.Timestamp(end, tz="UTC"),
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
