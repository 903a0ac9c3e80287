"""`fks ingest` from online providers: the ingest flow through the provider manager, against loopback
servers that play Binance, Yahoo and Polygon, with the API key from a Prefect Secret block."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from config.flows import IngestConfig, InputError
from config.settings import Settings
from flows.cli import app
from flows.ingest import ingest
from ingestion.ingest import IngestFailed
from storage import list_ingest_runs, read_bars
from tasks.store import store_for
from tests.fixture_server import FixtureServer, Reply, server_error
from tests.provider_fakes import POLYGON_KEY as KEY
from tests.provider_fakes import Klines, aggs_route, chart_route, midnight_new_york, synthetic

pytestmark = pytest.mark.usefixtures("prefect_server")

# recent enough for Yahoo, which keeps hour bars for 730 days
END = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=1)
START = END - pd.Timedelta(days=7)
ORIGIN = START - pd.Timedelta(days=1)


def _hours() -> pd.DataFrame:
    """Ground-truth hour bars of BTC-USD (as the Binance adapter tests make them)."""
    return synthetic("1h", str(END + pd.Timedelta(days=1)), ORIGIN, seed=11, symbol="BTC")


POLICY = """
priority: {{crypto: [binance, yahoo], equity: [polygon]}}
providers:
  binance: {{rate: {{requests: 100, per_seconds: 1}}, retry: {{attempts: 2, base_s: 0.01, max_s: 0.02}},
            breaker: {{failure_threshold: {threshold}, reset_timeout_s: 60}}, cache_ttl_s: 0}}
  yahoo: {{rate: {{requests: 100, per_seconds: 1}}, cache_ttl_s: 0}}
  polygon: {{rate: {{requests: 100, per_seconds: 1}}, cache_ttl_s: 0}}
verification: {{enabled: true, bars: 5, tolerance: 0.005, on_discrepancy: warn}}
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, FixtureServer]]:
    """Binance and Yahoo serving the same BTC hours; Polygon serving a stock's days (key required)."""
    hours = _hours()
    days = synthetic("1d", "2024-03-01", "2024-01-02", seed=9, calendar="XNYS")
    routes = {
        "binance": Klines({"1h": hours}),
        "yahoo": chart_route({("BTC-USD", "60m"): hours}),
        "polygon": aggs_route(
            {("AAPL", "day"): (days.set_axis(midnight_new_york(days.index)), "America/New_York")}
        ),
    }
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(FixtureServer(route)) for name, route in routes.items()}


def _settings(
    settings: Settings, servers: dict[str, FixtureServer], tmp_path: Path, threshold: int = 3
) -> Settings:
    policy = tmp_path / "providers.yaml"
    policy.write_text(POLICY.format(threshold=threshold))
    urls = {f"{name}_base_url": server.url for name, server in servers.items()}
    return settings.model_copy(update={"providers_file": policy, **urls})


def _reset(servers: dict[str, FixtureServer]) -> None:
    for server in servers.values():
        server.reset()


def test_registered_crypto_pair_is_ingested_from_binance_and_verified_against_yahoo(
    settings: Settings, servers: dict[str, FixtureServer], tmp_path: Path
) -> None:
    _reset(servers)
    settings = _settings(settings, servers, tmp_path)
    summary = ingest(
        IngestConfig(source="auto", symbols=["BTC-USD"], timeframe="1h", start=START, end=END), settings
    )
    (outcome,) = summary.outcomes
    assert (outcome.status, outcome.provider, outcome.verification) == ("success", "binance", "verified")
    with store_for(settings).connect() as conn:
        stored = read_bars(conn, "BTC-USD", "1h")
        sources = {row[0] for row in conn.execute(text("SELECT DISTINCT source FROM bars"))}
        checks = conn.execute(text("SELECT status, secondary_provider FROM bar_verifications")).all()
    expected = _hours().loc[START : END - pd.Timedelta("1h")]
    pd.testing.assert_frame_equal(stored, expected, check_freq=False)
    assert sources == {"binance"}
    assert [tuple(r) for r in checks] == [("verified", "yahoo")]
    env = {"FKS_DB_URL": settings.db_url, "FKS_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}
    listed = CliRunner().invoke(app, ["data", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "BTC-USD" in listed.output and "verified" in listed.output

    # the next run resumes from the watermark: only the last bar is asked for again
    _reset(servers)
    again = ingest(IngestConfig(source="auto", symbols=["BTC-USD"], timeframe="1h", end=END), settings)
    assert again.outcomes[0].inserted == 0 and again.outcomes[0].unchanged >= 1
    first = servers["binance"].requests[0]
    assert int(first.query["startTime"]) == int((END - pd.Timedelta("1h")).value // 1_000_000)


def test_a_failing_primary_fails_over_and_the_run_says_so(
    settings: Settings, servers: dict[str, FixtureServer], tmp_path: Path
) -> None:
    _reset(servers)
    settings = _settings(settings, servers, tmp_path)
    servers["binance"].inject(*[server_error(503) for _ in range(10)])
    summary = ingest(
        IngestConfig(source="auto", symbols=["BTC-USD"], timeframe="1h", start=START, end=END), settings
    )
    (outcome,) = summary.outcomes
    assert outcome.provider == "yahoo" and outcome.inserted == 7 * 24
    assert outcome.failovers and outcome.failovers[0].startswith("binance")
    with store_for(settings).connect() as conn:
        sources = {row[0] for row in conn.execute(text("SELECT DISTINCT source FROM bars"))}
    assert sources == {"yahoo"}


def test_online_ingestion_refuses_unregistered_symbols_and_a_first_run_without_start(
    settings: Settings, servers: dict[str, FixtureServer], tmp_path: Path
) -> None:
    settings = _settings(settings, servers, tmp_path)
    with pytest.raises(InputError, match=r"not registered: DOGE-USD.*config/assets.yaml.*provider_symbols"):
        ingest(IngestConfig(source="auto", symbols=["DOGE-USD"], timeframe="1h"), settings)
    with pytest.raises(IngestFailed, match="needs --start") as failed:
        ingest(IngestConfig(source="auto", symbols=["BTC-USD"], timeframe="1h"), settings)
    assert failed.value.input_error


def test_api_key_from_a_prefect_secret_block_is_used_and_never_shown(
    settings: Settings,
    servers: dict[str, FixtureServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from prefect.blocks.system import Secret

    _reset(servers)
    Secret(value=KEY).save("fks-test-polygon-key", overwrite=True)
    settings = _settings(settings, servers, tmp_path).model_copy(
        update={"api_key_blocks": {"polygon": "fks-test-polygon-key"}}
    )
    caplog.set_level(logging.DEBUG)
    start, end = pd.Timestamp("2024-01-02", tz="UTC"), pd.Timestamp("2024-02-01", tz="UTC")
    summary = ingest(
        IngestConfig(source="auto", symbols=["AAPL"], timeframe="1d", start=start, end=end), settings
    )
    assert summary.outcomes[0].provider == "polygon" and summary.outcomes[0].inserted == 21
    assert all(r.query.get("apiKey") == KEY for r in servers["polygon"].requests)

    # a refused key fails the run; the message names the setting, never the key
    Secret(value=KEY + "-revoked").save("fks-test-polygon-key", overwrite=True)
    servers["polygon"].route, route = (
        (lambda r: Reply(401, {"status": "ERROR", "error": f"bad key {r.query}"})),
        (servers["polygon"].route),
    )
    try:
        with pytest.raises(IngestFailed) as failed:
            ingest(
                IngestConfig(source="auto", symbols=["AAPL"], timeframe="1d", start=start, end=end), settings
            )
    finally:
        servers["polygon"].route = route
    captured = capsys.readouterr()
    with store_for(settings).connect() as conn:
        runs = list_ingest_runs(conn)
        usage = conn.execute(text("SELECT last_error FROM provider_usage")).all()
        state = conn.execute(text("SELECT last_error FROM provider_state")).all()
    stored_text = " ".join(str(r) for r in [*runs, *usage, *state])
    for secret in (KEY, KEY + "-revoked"):
        assert secret not in caplog.text
        assert secret not in captured.out + captured.err
        assert secret not in str(failed.value)
        assert secret not in stored_text


def test_a_missing_secret_block_is_bad_input_that_says_how_to_fix_it(
    settings: Settings, servers: dict[str, FixtureServer], tmp_path: Path
) -> None:
    settings = _settings(settings, servers, tmp_path).model_copy(
        update={"api_key_blocks": {"polygon": "no-such-block"}}
    )
    with pytest.raises(IngestFailed, match=r"no-such-block.*FKS_POLYGON_API_KEY") as failed:
        ingest(
            IngestConfig(
                source="auto", symbols=["AAPL"], timeframe="1d", start="2024-01-02", end="2024-02-01"
            ),
            settings,
        )
    assert failed.value.input_error
