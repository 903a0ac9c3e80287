"""Corporate actions end to end: the ``corporate_actions`` store (SQLite and PostgreSQL), the
default for providers without splits, ``fks ingest`` recording the splits of an equity it fetched
online (loopback servers playing Yahoo and Polygon), and ``fks actions list``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from config.assets import AssetSpec
from config.flows import IngestConfig
from config.settings import Settings
from flows.cli import app
from flows.ingest import ingest
from providers.base import NotSupported, fetch_splits, provides_splits
from providers.binance import BinanceProvider
from providers.corporate import fetch_and_store_splits
from providers.manager import ProviderManager
from providers.polygon import PolygonProvider
from providers.yahoo import YahooProvider
from storage import (
    CorporateAction,
    list_corporate_actions,
    open_store,
    read_bars,
    register_asset,
    upsert_corporate_actions,
)
from tasks.store import store_for
from tests.fixture_server import FixtureServer
from tests.provider_fakes import (
    Loopback,
    build_at,
    chart_route,
    fast_policy,
    make_config,
    settings_for,
    synthetic,
    yahoo_day_stamps,
)


def split(symbol: str, day: str, ratio: float, source: str = "yahoo") -> CorporateAction:
    """A split of ``symbol`` effective ``day`` (00:00 UTC)."""
    return CorporateAction(symbol, pd.Timestamp(day, tz="UTC"), "split", ratio, source)


def recorded_at(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT recorded_at FROM corporate_actions ORDER BY symbol"))]


# -- the store ------------------------------------------------------------------------------------


def test_upsert_is_idempotent_and_lists_by_symbol_and_ex_date(engine: Engine) -> None:
    actions = [
        split("NVDA", "2024-06-10", 10.0),
        split("AAPL", "2020-08-31", 4.0),
        split("AAPL", "2014-06-09", 7.0),
    ]
    with engine.begin() as conn:
        assert upsert_corporate_actions(conn, actions) == 3
    stamps = recorded_at(engine)
    with engine.begin() as conn:
        assert upsert_corporate_actions(conn, actions) == 0  # a rerun changes nothing
        assert upsert_corporate_actions(conn, []) == 0
    assert recorded_at(engine) == stamps
    with engine.connect() as conn:
        everything = list_corporate_actions(conn)
        aapl = list_corporate_actions(conn, "aapl")
        window = list_corporate_actions(conn, start="2014-06-10", end=pd.Timestamp("2024-06-10", tz="UTC"))
        no_dividends = list_corporate_actions(conn, kind="dividend")
        all_kinds = list_corporate_actions(conn, kind=None)
    assert everything == sorted(actions, key=lambda a: (a.symbol, a.ex_date)) == all_kinds
    assert [a.ex_date.year for a in aapl] == [2014, 2020]
    assert window == [split("AAPL", "2020-08-31", 4.0)]  # start inclusive, end exclusive
    assert no_dividends == []
    assert everything[0].ex_date.tz is not None and str(everything[0].ex_date.tz) == "UTC"


def test_a_manual_correction_wins_over_providers(engine: Engine) -> None:
    def write(*actions: CorporateAction) -> int:
        with engine.begin() as conn:
            return upsert_corporate_actions(conn, actions)

    assert write(split("TSLA", "2022-08-25", 3.0, "yahoo")) == 1
    assert write(split("TSLA", "2022-08-25", 3.0, "polygon")) == 0  # same split: the first reporter stays
    assert write(split("TSLA", "2022-08-25", 5.0, "polygon")) == 1  # a different ratio replaces it
    assert write(split("TSLA", "2022-08-25", 3.0, "manual")) == 1  # a person's correction
    assert write(split("TSLA", "2022-08-25", 5.0, "polygon")) == 0  # providers never undo it
    assert write(split("TSLA", "2022-08-25", 3.0, "manual")) == 0
    # the same key twice in one call: the last one counts
    assert write(split("GE", "2021-08-02", 0.5, "yahoo"), split("GE", "2021-08-02", 0.125, "yahoo")) == 1
    with engine.connect() as conn:
        assert list_corporate_actions(conn) == [
            split("GE", "2021-08-02", 0.125, "yahoo"),
            split("TSLA", "2022-08-25", 3.0, "manual"),
        ]


def test_actions_are_normalised_and_bad_ones_say_how_to_fix_them() -> None:
    action = CorporateAction(" aapl", "2020-08-31", "split", 4, "polygon")  # type: ignore[arg-type]
    assert action == split("AAPL", "2020-08-31", 4.0, "polygon")
    assert isinstance(action.ratio, float)
    bad: list[tuple[dict[str, Any], str]] = [
        (
            {"ex_date": pd.Timestamp("2020-08-31 13:30", tz="UTC")},
            r"00:00 UTC of the session date.*'2020-08-31'",
        ),
        ({"ratio": 0.0}, "positive number of new shares per old share"),
        ({"ratio": -4.0}, "positive number"),
        ({"ratio": float("nan")}, "positive number"),
        ({"ratio": "four"}, "positive number"),
        ({"kind": "dividend"}, "kind 'dividend' of AAPL is unknown: use split"),
        ({"symbol": " "}, "1 to 32 characters"),
        ({"source": ""}, "must name the provider or be 'manual'"),
        ({"ex_date": "not a date"}, "is not a timestamp"),
    ]
    base = {"symbol": "AAPL", "ex_date": "2020-08-31", "kind": "split", "ratio": 4.0, "source": "manual"}
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            CorporateAction(**(base | change))
    with pytest.raises(TypeError, match="expected CorporateAction"):
        upsert_corporate_actions(None, [("AAPL", "2020-08-31")])  # type: ignore[arg-type, list-item]


# -- providers ------------------------------------------------------------------------------------


def test_a_provider_without_splits_answers_not_supported(tmp_path: Path) -> None:
    assert provides_splits(YahooProvider) and provides_splits(PolygonProvider)
    assert not provides_splits(BinanceProvider)
    binance = build_at(BinanceProvider, "http://127.0.0.1:9", fast_policy(), data_dir=tmp_path)
    try:
        with pytest.raises(NotSupported, match=r"binance does not report splits; ask .*yahoo, polygon"):
            fetch_splits(binance, "BTCUSDT", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))
    finally:
        binance.close()


def test_fetch_and_store_splits_asks_only_for_shares_and_never_raises(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    config = make_config()
    start, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-06-01", tz="UTC")
    with net.play(yahoo=chart_route({}, splits={"AAPL": [("2024-02-12", 4, 1)]})) as (yahoo,):
        cfg = settings_for(settings, tmp_path, config, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:
            crypto = fetch_and_store_splits(manager, store, "BTC-USD", "crypto", start, end)
            assert yahoo.requests == []  # coins do not split: nothing asked
            unknown = fetch_and_store_splits(manager, store, "AAPL", "equity", start, end)  # not registered
            with store.begin() as conn:
                register_asset(conn, AssetSpec(symbol="AAPL", provider_symbols={"yahoo": "AAPL"}))
            with store.begin() as conn:  # in the caller's transaction
                found = fetch_and_store_splits(manager, conn, "AAPL", "equity", start, end)
    assert (crypto.actions, crypto.warnings) == ([], [])
    assert unknown.warnings and unknown.warnings[0].startswith("AAPL: splits not updated: NotSupported:")
    assert "add provider_symbols" in unknown.warnings[0]
    assert (found.stored, found.provider, found.warnings) == (1, "yahoo", [])
    with store.connect() as conn:
        assert list_corporate_actions(conn) == [split("AAPL", "2024-02-12", 4.0)]


# -- fks ingest and fks actions list --------------------------------------------------------------

POLICY = """
priority: {equity: [yahoo, polygon]}
providers:
  yahoo: {rate: {requests: 100, per_seconds: 1}, cache_ttl_s: 0, retry: {attempts: 1}}
  polygon: {rate: {requests: 100, per_seconds: 1}, cache_ttl_s: 0}
verification: {enabled: false}
"""
START, END = pd.Timestamp("2024-01-02", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC")


def _days() -> pd.DataFrame:
    return synthetic("1d", "2024-03-01", "2024-01-02", seed=9, calendar="XNYS")


def _serve(server: FixtureServer, settings: Settings, tmp_path: Path, splits: list[Any]) -> Settings:
    """The server plays Yahoo (AAPL's days and ``splits``); settings point at it."""
    days = _days()
    served = days.set_axis(yahoo_day_stamps(pd.DatetimeIndex(days.index)))
    server.reset(chart_route({("AAPL", "1d"): served}, splits={"AAPL": splits}))
    policy = tmp_path / "providers.yaml"
    policy.write_text(POLICY)
    return settings.model_copy(update={"providers_file": policy, "yahoo_base_url": server.url})


@pytest.mark.usefixtures("prefect_server")
def test_an_online_ingest_of_an_equity_records_its_splits(
    server: FixtureServer, settings: Settings, tmp_path: Path
) -> None:
    settings = _serve(server, settings, tmp_path, [("2023-11-15", 2, 1), ("2024-02-12", 4, 1)])
    config = IngestConfig(source="auto", symbols=["AAPL"], timeframe="1d", start=START, end=END, full=True)

    (outcome,) = ingest(config, settings).outcomes

    assert (outcome.status, outcome.provider, outcome.warnings) == ("success", "yahoo", [])
    engine = store_for(settings)
    with engine.connect() as conn:
        # the split of November lies before the ingested range: not asked, not recorded
        assert list_corporate_actions(conn, "AAPL") == [split("AAPL", "2024-02-12", 4.0)]
    pd.testing.assert_frame_equal(
        read_bars(engine, "AAPL", "1d"), _days().loc["2024-01-02":"2024-02-29"], check_freq=False
    )
    assert [r.path for r in server.requests] == ["/v8/finance/chart/AAPL"] * 2  # the bars, then the splits
    splits_asked = server.requests[1].query
    assert splits_asked["interval"] == "1d" and "splits" in splits_asked["events"]
    stamps = recorded_at(engine)

    again = ingest(config, settings).outcomes[0]  # a rerun records nothing new
    assert (again.status, again.warnings) == ("success", [])
    assert recorded_at(engine) == stamps


@pytest.mark.usefixtures("prefect_server")
def test_splits_that_cannot_be_had_are_a_warning_not_a_failed_ingest(
    server: FixtureServer, settings: Settings, tmp_path: Path
) -> None:
    settings = _serve(server, settings, tmp_path, [("2024-02-12", 0, 1)])  # a ratio of zero
    config = IngestConfig(source="yahoo", symbols=["AAPL"], timeframe="1d", start=START, end=END)

    (outcome,) = ingest(config, settings).outcomes

    assert outcome.status == "success" and outcome.inserted == len(_days().loc["2024-01-02":"2024-02-29"])
    (warning,) = outcome.warnings
    assert warning.startswith(
        "AAPL: splits not updated: AllProvidersFailed: AAPL splits: every provider failed"
    )
    assert "yahoo: BadResponse: the split of 'AAPL' on 2024-02-12 has no valid ratio" in warning
    assert "polygon: AuthError: no API key" in warning
    with store_for(settings).connect() as conn:
        assert list_corporate_actions(conn) == []


def test_cli_actions_list(settings: Settings) -> None:
    env = {"FKS_DB_URL": settings.db_url, "FKS_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}
    runner = CliRunner()
    empty = runner.invoke(app, ["actions", "list"], env=env)
    assert empty.exit_code == 0, empty.output
    assert "No corporate actions recorded." in empty.output

    engine = open_store(settings.db_url)
    try:
        with engine.begin() as conn:
            upsert_corporate_actions(
                conn,
                [split("AAPL", "2020-08-31", 4.0, "polygon"), split("GE", "2021-08-02", 0.125),
                 split("AAPL", "2014-06-09", 7.0, "manual")],
            )  # fmt: skip
    finally:
        engine.dispose()
    listed = runner.invoke(app, ["actions", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.output.splitlines() if line.strip().startswith("│")]
    assert [[c for c in row if c != "│"] for row in rows] == [
        ["AAPL", "2014-06-09", "split", "7", "7-for-1", "manual"],
        ["AAPL", "2020-08-31", "split", "4", "4-for-1", "polygon"],
        ["GE", "2021-08-02", "split", "0.125", "1-for-8", "yahoo"],
    ]

    one = runner.invoke(app, ["actions", "list", "--symbol", "ge"], env=env)
    assert one.exit_code == 0 and "1-for-8" in one.output and "AAPL" not in one.output
    none = runner.invoke(app, ["actions", "list", "--symbol", "MSFT"], env=env)
    assert none.exit_code == 0 and "No corporate actions of MSFT recorded." in none.output
    bad = runner.invoke(app, ["actions", "list", "--start", "someday"], env=env)
    assert bad.exit_code == 2 and "use a date such as 2020-08-31" in bad.output


def test_cli_actions_add_records_a_manual_split(settings: Settings) -> None:
    env = {"FKS_DB_URL": settings.db_url, "FKS_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}
    runner = CliRunner()
    added = runner.invoke(app, ["actions", "add", "aapl", "--ex-date", "2020-08-31", "--ratio", "4"], env=env)
    assert added.exit_code == 0, added.output
    assert "AAPL 4-for-1 split on 2020-08-31 recorded." in added.output
    again = runner.invoke(app, ["actions", "add", "AAPL", "--ex-date", "2020-08-31", "--ratio", "4"], env=env)
    assert again.exit_code == 0 and "already recorded" in again.output
    bad = runner.invoke(app, ["actions", "add", "AAPL", "--ex-date", "2020-08-31", "--ratio", "-4"], env=env)
    assert bad.exit_code == 2 and "positive number of new shares per old share" in bad.output
    engine = open_store(settings.db_url)
    try:
        with engine.connect() as conn:
            recorded = list_corporate_actions(conn, "AAPL")
    finally:
        engine.dispose()
    assert [(a.ratio, a.source) for a in recorded] == [(4.0, "manual")]
