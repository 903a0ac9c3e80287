"""What the paper desk's tests share: a store with the shipped SPX (and EURUSD) bars, and a
deterministic advisor that plays the served model for tests of the desk's own logic (the REST
path is tested with the real service in test_trade_e2e)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from config.assets import load_asset_specs
from config.settings import Settings
from execution.desk import Advice
from providers.csv import parse_bars_csv
from storage import upsert_assets, upsert_bars
from tasks.store import store_for

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"


def stored_market(settings: Settings, symbols: tuple[str, ...] = ("SPX",)) -> Engine:
    """A migrated store with the shipped asset registry and the sample bars of ``symbols``."""
    engine = store_for(settings)
    specs = {s.symbol: s for s in load_asset_specs(settings.assets_file)}
    with engine.begin() as conn:
        upsert_assets(conn, specs.values())
        for symbol in symbols:
            spec = specs[symbol]
            bars = parse_bars_csv(SAMPLES / spec.source_options["path"]).bars
            upsert_bars(conn, symbol, spec.timeframe, bars, source="csv")
    return engine


class MomentumAdvisor:
    """Forecasts the last bar's log return (prob_up 0.7 when it rose, 0.3 otherwise): a served
    forecaster's stand-in whose answers can be recomputed from the bars alone."""

    model = "momentum"
    version = "1"

    def __init__(self, history: int = 5, registered_at: pd.Timestamp | None = None) -> None:
        self._history = history
        self._registered = registered_at or pd.Timestamp("2000-01-01", tz="UTC")
        self.calls = 0

    @property
    def history(self) -> int:
        return self._history

    def advise(self, bars: Mapping[str, pd.DataFrame], weights: Mapping[str, float]) -> list[Advice]:
        self.calls += 1
        out = []
        for symbol, frame in bars.items():
            if len(frame) != self._history:
                raise AssertionError(f"{symbol}: sent {len(frame)} bars, not {self._history}")
            r = float(np.log(frame["close"].iloc[-1] / frame["close"].iloc[-2]))
            out.append(Advice(symbol, self.model, self.version, forecast=r, prob_up=0.7 if r > 0 else 0.3))
        return out

    def registered_at(self, model: str, version: str) -> pd.Timestamp | None:
        return self._registered

    @staticmethod
    def forecasts(bars: pd.DataFrame) -> pd.Series:
        """The same forecasts for every bar of ``bars`` at once (for the backtest side)."""
        return np.log(bars["close"] / bars["close"].shift(1))
