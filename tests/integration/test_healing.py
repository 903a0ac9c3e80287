"""Bars that heal: provisional bars from a fallback provider are replaced by the primary's once it
is back, each replacement recorded; a bar on record as discrepant is not overwritten by the source
it disagreed with.

Loopback servers play Binance (the primary of BTC-USD, serving the ground truth) and Yahoo (the
fallback, whose hour bars are 2% off). Binance goes down, an ingest falls back to Yahoo, Binance
comes back: the next ingest (library, on SQLite and PostgreSQL), ``fks reconcile`` and
``fks backfill --reconcile`` must each leave exactly the ground truth, all from Binance, with one
``bar_replacements`` row per healed bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from config.backfill import BackfillConfig
from config.flows import IngestConfig
from config.settings import Settings
from flows.cli import app
from ingestion.backfill import BackfillOutcome, backfill_target, backfill_targets
from ingestion.ingest import IngestOutcome, ingest_target, ingest_targets
from providers.manager import ProviderManager
from storage import open_store, read_bars
from storage.bars import read_bars_with_source
from storage.replacements import list_replacements
from tests.fixture_server import FixtureServer, Reply, Request, server_error
from tests.provider_fakes import Klines, chart_route, synthetic

END = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=1)  # recent: Yahoo keeps 730 days of hours
START = END - pd.Timedelta(days=6)
T1 = START + pd.Timedelta(days=3)  # Binance goes down here
T2 = START + pd.Timedelta(days=5)  # ... and is back for the bars after this
OFF = 1.02  # the fallback's prices are 2% off

POLICY = """
priority: {crypto: [binance, yahoo]}
providers:
  binance: {rate: {requests: 1000, per_seconds: 1}, retry: {attempts: 2, base_s: 0.01, max_s: 0.02},
            breaker: {failure_threshold: 1000, reset_timeout_s: 0}, cache_ttl_s: 0}
  yahoo: {rate: {requests: 1000, per_seconds: 1}, retry: {attempts: 1}, cache_ttl_s: 0}
verification: {enabled: true, bars: 5, tolerance: 0.005, on_discrepancy: warn}
"""


def _truth() -> pd.DataFrame:
    until = str(END + pd.Timedelta(days=1))
    return synthetic("1h", until, START - pd.Timedelta(days=1), seed=17, symbol="BTC")


class Switch:
    """Binance's klines over the ground truth, or a 503 to every request while ``down``."""

    def __init__(self, truth: pd.DataFrame) -> None:
        self.klines = Klines({"1h": truth})
        self.down = False

    def __call__(self, request: Request) -> Reply:
        return server_error(503) if self.down else self.klines(request)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    """Ground-truth hour bars of BTC-USD."""
    return _truth()


@pytest.fixture
def binance(truth: pd.DataFrame) -> Iterator[tuple[FixtureServer, Switch]]:
    """Binance on loopback, switchable down."""
    switch = Switch(truth)
    with FixtureServer(switch) as server:
        yield server, switch


@pytest.fixture
def yahoo(truth: pd.DataFrame) -> Iterator[FixtureServer]:
    """Yahoo on loopback serving the same hours with prices 2% off."""
    off = truth.copy()
    off[["open", "high", "low", "close"]] *= OFF
    with FixtureServer(chart_route({("BTC-USD", "60m"): off})) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, binance: tuple[FixtureServer, Switch], yahoo: FixtureServer) -> dict[str, str]:
    """FKS_ settings of one test: a store in ``tmp_path`` and the two loopback providers."""
    policy = tmp_path / "providers.yaml"
    policy.write_text(POLICY)
    return {
        "FKS_DATA_DIR": str(tmp_path / "data"),
        "FKS_DB_URL": f"sqlite:///{tmp_path / 'fks.db'}",
        "FKS_PROVIDERS_FILE": str(policy),
        "FKS_BINANCE_BASE_URL": binance[0].url,
        "FKS_YAHOO_BASE_URL": yahoo.url,
    }


def _settings(env: dict[str, str], db_url: str | None = None) -> Settings:
    return Settings(
        data_dir=Path(env["FKS_DATA_DIR"]),
        db_url=db_url or env["FKS_DB_URL"],
        providers_file=Path(env["FKS_PROVIDERS_FILE"]),
        binance_base_url=env["FKS_BINANCE_BASE_URL"],
        yahoo_base_url=env["FKS_YAHOO_BASE_URL"],
    )


def _ingest(engine: Engine, settings: Settings, manager: ProviderManager, **window: Any) -> IngestOutcome:
    config = IngestConfig(source="auto", symbols=["BTC-USD"], timeframe="1h", **window)
    (target,) = ingest_targets(engine, settings, config)
    return ingest_target(engine, settings, target, manager=lambda: manager)


def _sources(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT source, COUNT(*) FROM bars GROUP BY source")).all()
    return {str(r[0]): int(r[1]) for r in rows}


def truth_close(ts: pd.Timestamp) -> float:
    """The ground truth's close at ``ts``."""
    return float(_truth().at[ts, "close"])


def _fall_back(engine: Engine, settings: Settings, switch: Switch, manager: ProviderManager) -> None:
    """Binance answers up to T1; then it is down and an ingest up to T2 falls back to Yahoo."""
    first = _ingest(engine, settings, manager, start=START, end=T1)
    assert (first.provider, first.verification) == ("binance", "discrepant")  # Yahoo's last bars are 2% off
    switch.down = True
    fallback = _ingest(engine, settings, manager, end=T2)
    assert fallback.provider == "yahoo" and fallback.failovers[0].startswith("binance")
    # the watermark bar (T1 - 1h) is re-read, but Yahoo is on record as disagreeing with Binance's
    # value there (provider_discrepancies) and nothing cross-checked Yahoo's: it is kept
    assert fallback.held == 1 and any("kept" in w for w in fallback.warnings)
    last = T1 - pd.Timedelta("1h")
    with engine.connect() as conn:
        kept = read_bars_with_source(conn, "BTC-USD", "1h", last, T1)
    assert kept["source"].tolist() == ["binance"]
    assert kept["close"].tolist() == [truth_close(last)]  # Binance's value, not Yahoo's 2% off
    provisional = int((T2 - T1) / pd.Timedelta("1h"))
    assert fallback.inserted == provisional and fallback.provisional == provisional
    assert _sources(engine) == {"binance": int((T1 - START) / pd.Timedelta("1h")), "yahoo": provisional}


def _assert_healed(engine: Engine, truth: pd.DataFrame, triggers: dict[str, int]) -> None:
    """The store holds exactly the ground truth over [START, T2), all from Binance, and each Yahoo bar
    it replaced is recorded with its old values."""
    expected = truth.loc[START : T2 - pd.Timedelta("1h")]
    pd.testing.assert_frame_equal(read_bars(engine, "BTC-USD", "1h"), expected, check_freq=False)
    assert _sources(engine) == {"binance": len(expected)}
    with engine.connect() as conn:
        replaced = list_replacements(conn, "BTC-USD", "1h").sort_values("ts").reset_index(drop=True)
    healed = expected.loc[T1:]
    assert list(replaced["ts"]) == list(healed.index)
    assert set(replaced["old_source"]) == {"yahoo"} and set(replaced["new_source"]) == {"binance"}
    np.testing.assert_allclose(replaced["old_close"], healed["close"] * OFF, rtol=1e-12)
    np.testing.assert_array_equal(replaced["new_close"], healed["close"])
    np.testing.assert_allclose(replaced["max_rel_diff"], 1 - 1 / OFF, rtol=1e-9)
    assert replaced["trigger"].value_counts().to_dict() == triggers


def test_the_next_ingest_heals_provisional_bars_and_records_each_replacement(
    url: str, env: dict[str, str], binance: tuple[FixtureServer, Switch], truth: pd.DataFrame
) -> None:
    settings = _settings(env, url)
    engine = open_store(url)
    switch = binance[1]
    with ProviderManager(settings, engine) as manager:
        _fall_back(engine, settings, switch, manager)
        switch.down = False
        # a normal ingest re-reads only the last stored bar; from the primary it also heals the rest
        healed = _ingest(engine, settings, manager, end=T2)
        assert healed.provider == "binance" and healed.healed == int((T2 - T1) / pd.Timedelta("1h"))
        assert healed.provisional == 0
        # once healed, nothing is left to do: the next ingest replaces nothing
        again = _ingest(engine, settings, manager, end=T2)
        assert again.healed == 0 and again.inserted == 0
    # the watermark bar re-read by the primary is replaced by the ingest, the rest by its reconcile
    _assert_healed(engine, truth, {"reconcile": int((T2 - T1) / pd.Timedelta("1h")) - 1, "ingest": 1})
    engine.dispose()


@pytest.mark.usefixtures("prefect_server")
def test_fks_reconcile_heals_once_the_primary_is_back_and_says_when_it_is_not(
    env: dict[str, str], binance: tuple[FixtureServer, Switch], truth: pd.DataFrame
) -> None:
    settings = _settings(env)
    engine = open_store(settings.db_url)
    switch = binance[1]
    with ProviderManager(settings, engine) as manager:
        _fall_back(engine, settings, switch, manager)
    provisional = int((T2 - T1) / pd.Timedelta("1h"))

    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, list(args), env={**env, "COLUMNS": "200"})

    down = cli("reconcile", "--symbols", "BTC-USD")
    assert down.exit_code == 1, down.output
    assert "could not be reached" in " ".join(down.output.split())
    assert _sources(engine)["yahoo"] == provisional  # nothing replaced while the primary is down

    switch.down = False
    up = cli("reconcile")
    assert up.exit_code == 0, up.output
    assert f"{provisional} bar(s) replaced" in " ".join(up.output.split())
    _assert_healed(engine, truth, {"reconcile": provisional})
    again = cli("reconcile")
    assert again.exit_code == 0 and "0 bar(s) replaced" in " ".join(again.output.split())
    engine.dispose()


def _backfill_after_fall_back(
    env: dict[str, str], binance: tuple[FixtureServer, Switch], config: BackfillConfig
) -> tuple[Engine, list[int], BackfillOutcome]:
    """Fall back to Yahoo, bring Binance back, then backfill with ``config``: the store, the
    ``startTime`` of each Binance request the backfill made, and its outcome."""
    settings = _settings(env)
    engine = open_store(settings.db_url)
    server, switch = binance
    with ProviderManager(settings, engine) as manager:
        _fall_back(engine, settings, switch, manager)
        switch.down = False
        (target,) = backfill_targets(engine, settings, config).targets
        before = len(server.requests)
        outcome = backfill_target(engine, settings, target, manager=lambda: manager)
    asked = [int(r.query["startTime"]) for r in server.requests[before:]]
    return engine, asked, outcome


def test_backfill_reconcile_heals_the_provisional_bars_of_its_series(
    env: dict[str, str], binance: tuple[FixtureServer, Switch], truth: pd.DataFrame
) -> None:
    # a backfill of the window already stored, with --reconcile: every chunk is fetched from the
    # primary (replacing the Yahoo bars it covers), the reconcile then finds nothing left
    config = BackfillConfig(
        symbols=["BTC-USD"], timeframe="1h", start=START, end=T2, reconcile=True, verify=False
    )
    engine, _, outcome = _backfill_after_fall_back(env, binance, config)
    provisional = int((T2 - T1) / pd.Timedelta("1h"))
    assert outcome.healed == provisional and outcome.provisional == 0 and not outcome.reconcile_error
    _assert_healed(engine, truth, {"backfill": provisional})
    engine.dispose()


def test_backfill_reconcile_alone_re_reads_only_the_provisional_bars(
    env: dict[str, str], binance: tuple[FixtureServer, Switch], truth: pd.DataFrame
) -> None:
    # --gaps finds no hole, so no chunk is fetched: only the reconcile asks the primary
    config = BackfillConfig(symbols=["BTC-USD"], timeframe="1h", gaps=True, reconcile=True)
    engine, asked, outcome = _backfill_after_fall_back(env, binance, config)
    assert asked == [T1.value // 1_000_000]  # one window, from the first provisional bar
    provisional = int((T2 - T1) / pd.Timedelta("1h"))
    assert outcome.healed == provisional and outcome.provisional == 0
    _assert_healed(engine, truth, {"reconcile": provisional})
    engine.dispose()
