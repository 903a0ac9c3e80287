"""Backfill and gaps against loopback servers that play Binance (ground truth) and a dead fallback.

Every test runs the real flow (Prefect), the real provider manager and adapters over HTTP, and a
real SQLite store. The kill test runs the backfill in a subprocess, kills it with SIGKILL while a
chunk is in flight, reruns it and checks the store against the ground truth bar for bar.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from sqlalchemy import Engine
from typer.testing import CliRunner

from config.backfill import BackfillConfig
from config.settings import Settings
from flows.backfill import backfill
from flows.cli.backfill import backfill_command, gaps_command
from ingestion.backfill import BackfillIncomplete, list_missing
from market.calendars import get_calendar
from market.resample import resample_bars
from storage import delete_bars, read_bars
from storage.backfill import list_chunks
from tasks.store import store_for
from tests.fixture_server import FixtureServer, Reply, Request, server_error
from tests.provider_fakes import Klines as BinanceKlines
from tests.provider_fakes import ms, synthetic

pytestmark = pytest.mark.usefixtures("prefect_server")

ROOT = Path(__file__).resolve().parents[2]
START = pd.Timestamp("2024-01-01", tz="UTC")
END = pd.Timestamp("2024-01-03", tz="UTC")
PROVIDERS_YAML = """
priority:
  crypto: [binance, yahoo]
providers:
  yahoo: &fast
    rate: {requests: 10000, per_seconds: 1}
    timeout_s: 5
    cache_ttl_s: 0
    retry: {attempts: 1, base_s: 0, jitter: 0}
    breaker: {failure_threshold: 1000, reset_timeout_s: 0}
  binance: {<<: *fast, timeout_s: 20, max_rows_per_request: 1000}
verification: {enabled: true, bars: 3, tolerance: 0.005}
backfill_chunk: {1m: 1D, 1h: 30D, 1d: 365D}
"""


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    """Ground-truth minute bars of BTCUSDT for two days (a seeded synthetic 24/7 market)."""
    frame = synthetic("1m", str(END), START, seed=5, symbol="BTC")
    frame.index.name = "ts"
    return frame


class Klines(BinanceKlines):
    """Binance's klines over ``truth`` (see :class:`tests.provider_fakes.Klines`). Requests whose
    startTime lies in a ``dead`` range get a 503; a request whose startTime is ``hold_at`` waits
    until ``release`` is set."""

    def __init__(self, truth: pd.DataFrame) -> None:
        super().__init__(truth)
        self.dead: list[tuple[int, int]] = []
        self.hold_at: int | None = None
        self.release = threading.Event()

    def __call__(self, request: Request) -> Reply:
        lo = int(request.query.get("startTime", -1))
        if any(a <= lo < b for a, b in self.dead):
            return server_error(503)
        if self.hold_at is not None and lo == self.hold_at:
            self.release.wait(30)
        return super().__call__(request)


@pytest.fixture
def klines(truth: pd.DataFrame) -> Klines:
    """The Binance route over the ground truth."""
    return Klines(truth)


@pytest.fixture
def binance(klines: Klines) -> Iterator[FixtureServer]:
    """A loopback server playing Binance."""
    with FixtureServer(klines) as server:
        yield server
        klines.release.set()


@pytest.fixture
def yahoo() -> Iterator[FixtureServer]:
    """The fallback (and second source for verification): down for every range."""
    with FixtureServer(lambda request: server_error(503)) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, binance: FixtureServer, yahoo: FixtureServer) -> dict[str, str]:
    """FKS_ settings of this test: a tmp store, the loopback providers and a fast providers policy."""
    providers = tmp_path / "providers.yaml"
    providers.write_text(PROVIDERS_YAML)
    return {
        "FKS_DATA_DIR": str(tmp_path / "data"),
        "FKS_DB_URL": f"sqlite:///{tmp_path / 'fks.db'}",
        "FKS_BINANCE_BASE_URL": binance.url,
        "FKS_YAHOO_BASE_URL": yahoo.url,
        "FKS_PROVIDERS_FILE": str(providers),
    }


@pytest.fixture
def conf(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings from ``env``, also exported for the CLI."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture
def cli() -> Callable[..., Any]:
    """Run ``backfill`` / ``gaps`` as the main app registers them."""
    app = typer.Typer()
    app.command("backfill")(backfill_command)
    app.command("gaps")(gaps_command)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(app, list(args))

    return invoke


def stored(engine: Engine) -> pd.DataFrame:
    """The stored minute bars of BTC-USD."""
    return read_bars(engine, "BTC-USD", "1m")


def assert_ground_truth(engine: Engine, truth: pd.DataFrame) -> None:
    """The store holds exactly the ground truth: every bar once, every value bit for bit."""
    bars = stored(engine)
    assert bars.index.is_unique
    pd.testing.assert_frame_equal(bars, truth, check_freq=False)


def starts(server: FixtureServer, since: int = 0) -> list[int]:
    """``startTime`` of every klines request from the ``since``-th on."""
    return [int(r.query["startTime"]) for r in server.requests[since:] if r.path == "/api/v3/klines"]


def test_backfill_pages_through_chunks_to_exactly_the_ground_truth(
    conf: Settings, truth: pd.DataFrame, binance: FixtureServer
) -> None:
    config = BackfillConfig(symbols=["btc-usd"], timeframe="1m", start=START, end=END)
    summary = backfill(config, conf)
    engine = store_for(conf)
    assert_ground_truth(engine, truth)
    (outcome,) = summary.outcomes
    assert (outcome.chunks, outcome.done, outcome.failed, outcome.inserted) == (2, 2, 0, len(truth))
    assert outcome.providers == {"binance": 2}
    # two 1D chunks aligned to midnight, each paged in two requests of at most 1,000 rows
    assert starts(binance) == [ms(START), ms(START) + 1000 * 60_000, ms(START) + 86_400_000,
                               ms(START) + 86_400_000 + 1000 * 60_000]  # fmt: skip
    with engine.connect() as conn:
        chunks = list_chunks(conn, "BTC-USD", "1m")
        sources = {r[0] for r in conn.exec_driver_sql("SELECT DISTINCT source FROM bars").all()}
    assert [(c.start, c.end, c.status, c.rows) for c in chunks] == [
        (START, START + pd.Timedelta(days=1), "done", 1440),
        (START + pd.Timedelta(days=1), END, "done", 1440),
    ]
    assert sources == {"binance"}
    # the watermark: a rerun with the same arguments fetches nothing
    before = len(binance.requests)
    again = backfill(config, conf)
    assert len(binance.requests) == before
    assert (again.outcomes[0].chunks, again.outcomes[0].skipped) == (0, 2)


def test_unknown_symbol_is_refused_with_how_to_register_it(conf: Settings, cli: Callable[..., Any]) -> None:
    result = cli("backfill", "--symbols", "BTC-USD,DOGE-USD", "--start", "2024-01-01", "--end", "2024-01-02")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "DOGE-USD" in message and "provider_symbols" in message and "config/assets.yaml" in message
    assert "FKS_ASSETS_FILE" in message
    with store_for(conf).connect() as conn:
        assert list_chunks(conn) == []


_KILL_SCRIPT = """
from config.backfill import BackfillConfig
from config.settings import Settings
from flows.backfill import backfill
backfill(BackfillConfig(symbols=["BTC-USD"], timeframe="1m", start="2024-01-01", end="2024-01-03",
                        chunk="6h", verify=False), Settings())
"""


def test_kill_mid_backfill_then_rerun_gives_exactly_the_ground_truth(
    env: dict[str, str], truth: pd.DataFrame, binance: FixtureServer, klines: Klines
) -> None:
    six_hours = 6 * 3_600_000
    klines.hold_at = ms(START) + 4 * six_hours  # the fifth 6h chunk hangs until the process is killed
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while klines.hold_at not in starts(binance):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the backfill never reached the fifth chunk"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    klines.release.set()
    settings = Settings(**{k.removeprefix("FKS_").lower(): v for k, v in env.items()})
    engine = store_for(settings)
    with engine.connect() as conn:
        chunks = list_chunks(conn, "BTC-USD", "1m")
    assert [c.status for c in chunks] == ["done"] * 4 + ["pending"] * 4
    assert len(stored(engine)) == 4 * 360  # done chunks have their bars, the one in flight has none
    done_starts = {ms(c.start) for c in chunks if c.status == "done"}

    first_run = len(binance.requests)
    config = BackfillConfig(
        symbols=["BTC-USD"], timeframe="1m", start=START, end=END, chunk="6h", verify=False
    )
    summary = backfill(config, settings)
    assert_ground_truth(engine, truth)
    rerun = starts(binance, first_run)
    assert not done_starts & set(rerun), "a chunk already done was fetched again"
    assert sorted(rerun) == [ms(START) + i * six_hours for i in range(4, 8)]
    assert (summary.outcomes[0].skipped, summary.outcomes[0].done) == (4, 4)
    with engine.connect() as conn:
        assert [c.status for c in list_chunks(conn, "BTC-USD", "1m")] == ["done"] * 8


def test_a_range_no_provider_delivers_is_recorded_and_exits_1(
    conf: Settings,
    truth: pd.DataFrame,
    klines: Klines,
    cli: Callable[..., Any],
) -> None:
    dead = (START + pd.Timedelta(hours=6), START + pd.Timedelta(hours=12))
    klines.dead = [(ms(dead[0]), ms(dead[1]))]
    args = ["backfill", "--symbols", "BTC-USD", "--timeframe", "1m", "--start", "2024-01-01",
            "--end", "2024-01-02", "--chunk", "6h"]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("missing:")]
    assert len(lines) == 1
    assert lines[0].startswith("missing: BTC-USD 1m 2024-01-01 06:00 .. 2024-01-01 12:00 UTC (360 bars): ")
    # every provider of the chain was tried: Binance answered 503, Yahoo has no minute bars that old
    assert "AllProvidersFailed" in lines[0] and "binance: Unavailable: HTTP 503" in lines[0]
    assert "yahoo: NotSupported" in lines[0]
    engine = store_for(conf)
    bars = stored(engine)
    day = truth[truth.index < START + pd.Timedelta(days=1)]
    expected = day[(day.index < dead[0]) | (day.index >= dead[1])]
    pd.testing.assert_frame_equal(bars, expected, check_freq=False)
    with engine.connect() as conn:
        chunks = list_chunks(conn, "BTC-USD", "1m")
    assert [c.status for c in chunks] == ["done", "failed", "done", "done"]
    assert "503" in (chunks[1].error or "")
    # fks gaps lists it; once the providers recover, the same command fetches only that chunk
    gaps = list_missing(store_for(conf), conf, ["BTC-USD"])
    assert [(g.kind, g.start, g.end, g.bars, g.error) for g in gaps] == [
        ("failed", dead[0].to_pydatetime(), dead[1].to_pydatetime(), 360, chunks[1].error)
    ]
    klines.dead = []
    result = cli(*args)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(stored(engine), day, check_freq=False)
    assert list_missing(store_for(conf), conf) == []


def test_gaps_are_listed_then_backfill_gaps_fetches_exactly_them(
    conf: Settings, truth: pd.DataFrame, binance: FixtureServer, cli: Callable[..., Any]
) -> None:
    backfill(BackfillConfig(symbols=["BTC-USD"], timeframe="1m", start=START, end=END, verify=False), conf)
    engine = store_for(conf)
    holes = [
        (pd.Timestamp("2024-01-01 03:10", tz="UTC"), 5),
        (pd.Timestamp("2024-01-01 23:58", tz="UTC"), 4),  # across midnight: two chunks
        (pd.Timestamp("2024-01-02 10:00", tz="UTC"), 30),
    ]
    with engine.begin() as conn:
        for first, count in holes:
            delete_bars(conn, "BTC-USD", "1m", list(pd.date_range(first, periods=count, freq="1min")))
    missing = list_missing(store_for(conf), conf, ["BTC-USD"], "1m")
    assert [(m.kind, m.start, m.end, m.bars) for m in missing] == [
        ("gap", first.to_pydatetime(), (first + pd.Timedelta(minutes=count)).to_pydatetime(), count)
        for first, count in holes
    ]
    listed = cli("gaps", "--symbols", "BTC-USD")
    assert listed.exit_code == 3, listed.output  # missing ranges listed: exit 3, as fks validate
    assert "3 range(s), 39 bar(s) missing" in " ".join(listed.output.split())

    before = len(binance.requests)
    result = cli("backfill", "--gaps", "--symbols", "BTC-USD", "--no-verify")
    assert result.exit_code == 0, result.output
    assert_ground_truth(engine, truth)
    # one window per hole and chunk; holes less than 1,000 bars apart in a chunk share a window
    assert starts(binance, before) == [
        ms(pd.Timestamp("2024-01-01 03:10", tz="UTC")),  # [03:10, 03:15)
        ms(pd.Timestamp("2024-01-01 23:58", tz="UTC")),  # [23:58, 00:00): the hole is cut at midnight
        ms(pd.Timestamp("2024-01-02 00:00", tz="UTC")),  # [00:00, 10:30): 00:00-00:02 and 10:00-10:30
    ]
    with engine.connect() as conn:
        windows = [(c.start, c.end, c.status) for c in list_chunks(conn, "BTC-USD", "1m") if c.rows != 1440]
    assert windows == [
        (pd.Timestamp("2024-01-01 03:10", tz="UTC"), pd.Timestamp("2024-01-01 03:15", tz="UTC"), "done"),
        (pd.Timestamp("2024-01-01 23:58", tz="UTC"), pd.Timestamp("2024-01-02 00:00", tz="UTC"), "done"),
        (pd.Timestamp("2024-01-02 00:00", tz="UTC"), pd.Timestamp("2024-01-02 10:30", tz="UTC"), "done"),
    ]
    assert list_missing(store_for(conf), conf) == []
    none = cli("gaps")
    assert none.exit_code == 0, none.output
    assert "No missing ranges" in none.output


def test_hours_derived_from_minutes_equal_the_resampled_ground_truth(
    conf: Settings, truth: pd.DataFrame, binance: FixtureServer, cli: Callable[..., Any]
) -> None:
    backfill(BackfillConfig(symbols=["BTC-USD"], timeframe="1m", start=START, end=END, verify=False), conf)
    engine = store_for(conf)
    lost = pd.Timestamp("2024-01-01 05:17", tz="UTC")
    with engine.begin() as conn:
        delete_bars(conn, "BTC-USD", "1m", [lost])
    before = len(binance.requests)
    args = ["backfill", "--symbols", "BTC-USD", "--timeframe", "1h", "--derive-from", "1m",
            "--start", "2024-01-01", "--end", "2024-01-03"]  # fmt: skip
    result = cli(*args)
    assert len(binance.requests) == before  # derived: no provider was called
    assert result.exit_code == 1
    assert "1 hour(s) lack stored minute bars (first 2024-01-01 05:00)" in " ".join(result.output.split())
    hours = resample_bars(truth, "1h", get_calendar("24/7"))
    got = read_bars(engine, "BTC-USD", "1h")
    pd.testing.assert_frame_equal(got, hours.drop(index=[lost.floor("h")]), check_freq=False)

    # fill the minute hole, derive again: every hour, from source derived:1m
    assert (
        cli("backfill", "--gaps", "--symbols", "BTC-USD", "--timeframe", "1m", "--no-verify").exit_code == 0
    )
    result = cli(*args)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(read_bars(engine, "BTC-USD", "1h"), hours, check_freq=False)
    with engine.connect() as conn:
        sources = conn.exec_driver_sql("SELECT DISTINCT source FROM bars WHERE timeframe = '1h'").all()
        assert [c.status for c in list_chunks(conn, "BTC-USD", "1h")] == ["done"]
    assert sources == [("derived:1m",)]


def test_the_flow_raises_after_finishing_what_it_can(conf: Settings, klines: Klines) -> None:
    klines.dead = [(ms(START), ms(START + pd.Timedelta(hours=6)))]
    config = BackfillConfig(
        symbols=["BTC-USD"], timeframe="1m", start=START, end=START + pd.Timedelta(hours=12), chunk="6h"
    )
    with pytest.raises(BackfillIncomplete) as info:
        backfill(config, conf)
    (outcome,) = info.value.summary.outcomes
    assert (outcome.done, outcome.failed) == (1, 1)
    assert [(m.start, m.end) for m in info.value.summary.missing] == [
        (START.to_pydatetime(), (START + pd.Timedelta(hours=6)).to_pydatetime())
    ]
    assert len(stored(store_for(conf))) == 360
