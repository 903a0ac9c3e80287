"""The provider manager's chain, cross-verification, budgets, status and CLI, against loopback
servers playing Binance and Yahoo (fakes from ``tests/provider_fakes.py``, servers and store from
``conftest.py``) and a real SQLite store."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from typer.testing import CliRunner

from config.assets import AssetClass, AssetSpec
from config.settings import Settings
from flows.cli.providers import providers_app
from providers.base import NotSupported
from providers.manager import AllProvidersFailed, ProviderManager
from providers.ratelimit import BudgetExceeded
from providers.verify import Discrepant
from storage import register_asset
from storage.provider_usage import record_calls
from storage.verifications import latest_verifications, list_discrepancies, list_verifications
from tests.fixture_server import FixtureServer
from tests.provider_fakes import (
    BTC,
    POLYGON_KEY,
    Chart,
    FakeTime,
    Faulty,
    Klines,
    Loopback,
    assert_same_bars,
    chart_route,
    fragile,
    make_config,
    origin,
    policy,
    run_in_threads,
    settings_for,
    splits_route,
    usage,
)
from tests.provider_fakes import random_walk as truth

AAPL = AssetSpec(
    symbol="AAPL",
    asset_class=AssetClass.EQUITY,
    default_source="auto",
    provider_symbols={"yahoo": "AAPL", "polygon": "AAPL", "alphavantage": "AAPL"},
)
BTC_EVERYWHERE = BTC.model_copy(update={"provider_symbols": {**BTC.provider_symbols, "coingecko": "bitcoin"}})


def manager_on(settings: Settings, store: Engine, **kw: Any) -> ProviderManager:
    """A manager on the test store with a config that does not need servers."""
    config = kw.pop("config", None) or make_config(crypto=("binance", "coingecko", "yahoo", "polygon"))
    return ProviderManager(settings, store, config=config, **kw)


# -- the chain ----------------------------------------------------------------------------------


def test_the_chain_follows_the_priority_of_the_asset_class(settings: Settings, store: Engine) -> None:
    with manager_on(settings, store) as manager:
        names = lambda *a, **k: [n for n, _ in manager.chain(*a, **k)]  # noqa: E731
        # coingecko serves no minute bars: left out at 1m, in its place at 1h
        assert names(BTC_EVERYWHERE, "1m") == ["binance", "yahoo", "polygon"]
        assert names(BTC_EVERYWHERE, "1h") == ["binance", "coingecko", "yahoo", "polygon"]
        assert manager.chain(BTC_EVERYWHERE, "1m")[0] == ("binance", "BTCUSDT")  # provider symbols
        assert names(AAPL, "1d") == ["yahoo", "polygon", "alphavantage"]
        # providers the asset has no symbol at are not asked
        assert names(BTC, "1h") == ["binance", "yahoo", "polygon"]
        assert names(BTC_EVERYWHERE, "1m", prefer="polygon") == ["polygon", "binance", "yahoo"]
        assert names(BTC_EVERYWHERE, "1m", only="yahoo") == ["yahoo"]
        with pytest.raises(NotSupported, match=r"not in providers\.yaml"):
            manager.chain(BTC, "1m", prefer="kraken")


def test_a_disabled_provider_is_left_out(settings: Settings, store: Engine) -> None:
    config = make_config(crypto=("binance", "yahoo", "polygon"), binance=policy(enabled=False))
    with manager_on(settings, store, config=config) as manager:
        assert [n for n, _ in manager.chain(BTC, "1m")] == ["yahoo", "polygon"]
        with pytest.raises(NotSupported, match="binance is disabled"):
            manager.chain(BTC, "1m", only="binance")


def test_an_asset_without_provider_symbols_is_refused_with_the_fix(settings: Settings, store: Engine) -> None:
    doge = AssetSpec(symbol="DOGE-USD", asset_class=AssetClass.CRYPTO, provider_symbols={"kraken": "XDGUSD"})
    with manager_on(settings, store) as manager, pytest.raises(NotSupported) as caught:
        manager.fetch(doge, "1m", origin(2), origin(1))
    message = str(caught.value)
    assert "add provider_symbols: {binance:" in message
    assert "DOGE-USD's entry in config/assets.yaml" in message
    # known only where the timeframe is not served
    gecko_only = AssetSpec(symbol="X-USD", asset_class=AssetClass.CRYPTO, provider_symbols={"coingecko": "x"})
    with manager_on(settings, store) as manager, pytest.raises(NotSupported, match="serves 1h, 1d"):
        manager.fetch(gecko_only, "1m", origin(2), origin(1))


def test_prefer_and_only_pick_the_provider(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 120)
    config = make_config()
    end = start + pd.Timedelta(minutes=120)
    with net.play(binance=Klines(expected), yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:
            preferred = manager.fetch(BTC, "1m", start, end, prefer="yahoo")
            assert preferred.provider == "yahoo"
            assert preferred.verification is not None and preferred.verification.secondary == "binance"
            assert len(binance.requests) == 1  # only the verification's
            only = manager.fetch(BTC, "1m", start, end, only="binance", verify=False)
            assert only.provider == "binance"
            assert len(yahoo.requests) == 1  # only the first fetch's
    assert_same_bars(preferred.bars, expected)
    assert_same_bars(only.bars, expected)


def test_concurrent_fetches_share_one_manager(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(10)
    expected = truth(start, 8 * 1_500)
    config = make_config(binance=policy(rate={"requests": 200, "per_seconds": 1, "burst": 4}))
    results: dict[int, pd.DataFrame] = {}
    with net.play(binance=Klines(expected), yahoo=Chart(expected)) as (binance, _):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url)
        with ProviderManager(cfg, store, config=config) as manager:

            def work(i: int) -> None:
                lo = start + pd.Timedelta(minutes=1_500 * i)
                results[i] = manager.fetch(BTC, "1m", lo, lo + pd.Timedelta(minutes=1_500), verify=False).bars

            run_in_threads(work, 8)
        requests = len(binance.requests)
    assert_same_bars(pd.concat([results[i] for i in range(8)]), expected)
    assert requests == 16
    assert usage(store)["binance"]["calls"] == 16  # no lost update under concurrent writers


# -- cross-verification ---------------------------------------------------------------------------


def _skewed(frame: pd.DataFrame, last: int, factor: float) -> pd.DataFrame:
    """``frame`` with the close of its last ``last`` bars multiplied by ``factor``."""
    skewed = frame.copy()
    skewed.iloc[-last:, skewed.columns.get_loc("close")] *= factor
    return skewed


def _verify_run(
    net: Loopback,
    settings: Settings,
    store: Engine,
    tmp_path: Path,
    secondary: Any,
    *,
    expected: pd.DataFrame,
    **verification: Any,
) -> Any:
    config = make_config(verification=verification)
    start = pd.Timestamp(expected.index[0])
    with net.play(binance=Klines(expected), yahoo=secondary) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:
            end = start + pd.Timedelta(minutes=len(expected))
            return manager.fetch(BTC, "1m", start, end, batch_id="batch-7"), list(yahoo.requests)


def test_bars_that_agree_are_verified(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    expected = truth(origin(3), 1_200)
    result, asked = _verify_run(net, settings, store, tmp_path, Chart(expected), expected=expected)
    outcome = result.verification
    assert result.provider == "binance"
    assert (outcome.status, outcome.secondary, outcome.bars_compared) == ("verified", "yahoo", 5)
    assert outcome.first_ts == expected.index[-5] and outcome.last_ts == expected.index[-1]
    # the second source was asked for exactly the last five bars
    assert len(asked) == 1
    assert int(asked[0].query["period1"]) == int(expected.index[-5].timestamp())
    assert int(asked[0].query["period2"]) == int((expected.index[-1] + pd.Timedelta(minutes=1)).timestamp())
    with store.connect() as conn:
        rows = list_verifications(conn, "BTC-USD", "1m")
        assert list_discrepancies(conn).empty
    assert rows[
        ["status", "primary_provider", "secondary_provider", "bars_compared", "discrepancies"]
    ].values.tolist() == [["verified", "binance", "yahoo", 5, 0]]
    assert rows["batch_id"].tolist() == ["batch-7"]


def test_a_discrepancy_under_warn_keeps_the_primary_and_is_recorded(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = truth(origin(3), 600)
    caplog.set_level(logging.INFO, logger="providers.manager")
    result, _ = _verify_run(
        net, settings, store, tmp_path, Chart(_skewed(expected, 2, 1.02)), expected=expected
    )
    assert_same_bars(result.bars, expected)  # the primary's bars, untouched
    outcome = result.verification
    assert (outcome.status, outcome.action, len(outcome.discrepancies)) == ("discrepant", "warn", 2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "binance and yahoo differ" in warnings[0].getMessage()
    with store.connect() as conn:
        found = list_discrepancies(conn, "BTC-USD", "1m")
        latest = latest_verifications(conn)
    assert sorted(found["ts"]) == list(expected.index[-2:])
    assert set(found["action"]) == {"warn"} and set(found["field"]) == {"close"}
    assert found["rel_diff"].tolist() == pytest.approx([0.02, 0.02])
    assert found["tolerance"].tolist() == [0.005, 0.005]
    assert found["primary_value"].tolist() == list(expected["close"].iloc[-2:][::-1])
    assert set(found["batch_id"]) == {"batch-7"}
    assert latest[["symbol", "status", "discrepancies"]].values.tolist() == [["BTC-USD", "discrepant", 2]]


def test_prefer_primary_keeps_the_primary_quietly(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = truth(origin(3), 300)
    caplog.set_level(logging.INFO, logger="providers.manager")
    skewed = Chart(_skewed(expected, 1, 0.9))
    result, _ = _verify_run(
        net, settings, store, tmp_path, skewed, expected=expected, on_discrepancy="prefer_primary"
    )
    assert_same_bars(result.bars, expected)
    assert result.verification.status == "discrepant"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with store.connect() as conn:
        assert list_discrepancies(conn)["action"].tolist() == ["prefer_primary"]


def test_policy_fail_raises_and_still_records(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    expected = truth(origin(3), 300)
    skewed = Chart(_skewed(expected, 3, 1.01))
    with pytest.raises(Discrepant) as caught:
        _verify_run(net, settings, store, tmp_path, skewed, expected=expected, on_discrepancy="fail")
    assert len(caught.value.discrepancies) == 3
    assert "on_discrepancy: fail" in str(caught.value)
    assert expected.index[-1].isoformat() in str(caught.value)
    with store.connect() as conn:
        assert list_discrepancies(conn)["action"].tolist() == ["fail"] * 3
        assert list_verifications(conn)["status"].tolist() == ["discrepant"]


def test_a_difference_within_tolerance_is_verified(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    expected = truth(origin(3), 300)
    close_enough = Chart(_skewed(expected, 5, 1.004))
    result, _ = _verify_run(net, settings, store, tmp_path, close_enough, expected=expected)
    assert result.verification.status == "verified"


def test_no_reachable_second_source_is_recorded_as_skipped(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    expected = truth(origin(3), 300)
    down = Faulty(Chart(expected), down=True)
    result, _ = _verify_run(net, settings, store, tmp_path, down, expected=expected)
    assert result.provider == "binance"
    assert_same_bars(result.bars, expected)  # the run succeeds
    outcome = result.verification
    assert outcome.status == "skipped" and outcome.secondary is None
    assert "no second source: yahoo failed: Unavailable" in outcome.reason
    assert "no other enabled provider of the crypto chain serves BTC-USD 1m" in outcome.reason
    with store.connect() as conn:
        rows = list_verifications(conn)
    assert rows[["status", "bars_compared"]].values.tolist() == [["skipped", 0]]
    assert rows["reason"].iloc[0] == outcome.reason


def test_a_single_source_chain_skips_verification(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 60)
    config = make_config(crypto=("binance",))
    with net.play(binance=Klines(expected)) as (binance,):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url)
        with ProviderManager(cfg, store, config=config) as manager:
            result = manager.fetch(BTC, "1m", start, start + pd.Timedelta(hours=1))
    assert result.verification.status == "skipped"
    assert result.verification.reason == (
        "no second source: no other enabled provider of the crypto chain serves BTC-USD 1m"
    )


def test_verification_can_be_turned_off(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    expected = truth(origin(3), 60)
    result, asked = _verify_run(
        net, settings, store, tmp_path, Chart(expected), expected=expected, enabled=False
    )
    assert result.verification is None and asked == []
    with store.connect() as conn:
        assert list_verifications(conn).empty


# -- budgets ------------------------------------------------------------------------------------


def test_a_spent_budget_fails_over_without_a_request(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 2_500)  # three pages of klines
    config = make_config(binance=policy(budget={"credits": 2, "period": "day"}))
    clock = FakeTime()
    kw = clock.manager_kwargs(config)
    end = start + pd.Timedelta(minutes=2_500)
    with net.play(binance=Klines(expected), yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, **kw) as manager:
            first = manager.fetch(BTC, "1m", start, end, verify=False)  # the budget runs out on page 3
            assert len(binance.requests) == 2
            second = manager.fetch(BTC, "1m", start, end, verify=False)  # spent: not even asked
            assert len(binance.requests) == 2
            assert manager.breaker("binance").state == "closed"
            assert manager.breaker("binance").consecutive_failures == 0
            status = {s.name: s for s in manager.status()}
    for result in (first, second):
        assert result.provider == "yahoo"
        assert_same_bars(result.bars, expected)
        assert [(a.provider, a.kind) for a in result.attempts] == [("binance", BudgetExceeded.__name__)]
    assert "daily credit budget of 2 spent" in first.attempts[0].error
    binance_status = status["binance"]
    assert (binance_status.budget, binance_status.budget_left, binance_status.credits_period) == (2, 0.0, 2.0)
    assert (binance_status.period, binance_status.calls_today) == ("day", 2)


def test_the_budget_counts_what_other_processes_spent(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 60)
    config = make_config(binance=policy(budget={"credits": 100, "period": "month"}))
    with store.begin() as conn:  # another process used 99.5 credits this month
        record_calls(conn, "binance", calls=99, credits=99.5)
    with net.play(binance=Klines(expected), yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:
            result = manager.fetch(BTC, "1m", start, start + pd.Timedelta(hours=1), verify=False)
            assert len(binance.requests) == 0
            status = {s.name: s for s in manager.status()}["binance"]
    assert result.provider == "yahoo" and result.attempts[0].kind == "BudgetExceeded"
    assert (status.budget, status.budget_left, status.period) == (100, 0.5, "month")


# -- status and the CLI -------------------------------------------------------------------------


def test_status_reports_breakers_usage_budgets_and_limits(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 60)
    down = Faulty(Klines(expected), down=True)
    config = make_config(
        binance=fragile(threshold=1, reset_s=600),
        yahoo=policy(budget={"credits": 500, "period": "month"}),
        alphavantage=policy(enabled=False),
    )
    with net.play(binance=down, yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:
            manager.fetch(BTC, "1m", start, start + pd.Timedelta(hours=1))
            statuses = manager.status()
    by_name = {s.name: s for s in statuses}
    assert [s.name for s in statuses] == list(config.providers)
    b, y, a = by_name["binance"], by_name["yahoo"], by_name["alphavantage"]
    assert (b.state, b.consecutive_failures, b.calls_today, b.budget, b.budget_left) == (
        "open",
        1,
        1,
        None,
        None,
    )
    assert b.opened_at is not None and "HTTP 503" in (b.last_error or "")
    assert b.rate == "1000 per 1 s (burst 1000)"
    assert (y.state, y.calls_today, y.calls_period, y.credits_period) == ("closed", 1, 1, 1.0)
    assert (y.budget, y.budget_left, y.period, y.last_error) == (500, 499.0, "month", None)
    assert a.enabled is False and a.calls_today == 0


def test_cli_providers_status_and_discrepancies(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    expected = truth(origin(3), 300)
    config = make_config(
        binance=policy(budget={"credits": 1000, "period": "month"}),
        polygon=policy(enabled=False),
    )
    start = pd.Timestamp(expected.index[0])
    with net.play(binance=Klines(expected), yahoo=Chart(_skewed(expected, 1, 1.05))) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:
            manager.fetch(BTC, "1m", start, start + pd.Timedelta(minutes=300))
    env = {
        "FKS_DB_URL": settings.db_url,
        "FKS_DATA_DIR": str(settings.data_dir),
        "FKS_PROVIDERS_FILE": str(tmp_path / "providers.yaml"),
        "COLUMNS": "200",
    }
    runner = CliRunner()
    shown = runner.invoke(providers_app, ["status"], env=env)
    assert shown.exit_code == 0, shown.output
    lines = {line.split()[1]: line for line in shown.output.splitlines() if line.strip().startswith("│")}
    assert "closed" in lines["binance"] and "999 of 1,000/month" in lines["binance"]
    assert "1000 per 1 s (burst 1000)" in lines["binance"]
    assert "polygon" in shown.output and "(disabled)" in shown.output

    listed = runner.invoke(providers_app, ["discrepancies", "--symbol", "btc-usd"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "BTC-USD 1m" in listed.output and "5.00% > 0.50%" in listed.output and "warn" in listed.output
    assert "discrepant" in listed.output  # the latest cross-check of the series

    none = runner.invoke(providers_app, ["discrepancies", "--symbol", "ETH-USD"], env=env)
    assert none.exit_code == 0 and "No discrepancies recorded." in none.output

    bad = runner.invoke(
        providers_app, ["status"], env={**env, "FKS_PROVIDERS_FILE": str(tmp_path / "nope.yaml")}
    )
    assert bad.exit_code == 2
    assert "providers file not found" in bad.output


# -- splits ---------------------------------------------------------------------------------------

BRK = AssetSpec(
    symbol="BRK-B",
    asset_class=AssetClass.EQUITY,
    default_source="auto",
    provider_symbols={"yahoo": "BRK-B", "polygon": "BRK.B", "alphavantage": "BRK.B"},
)
BRK_SPLITS = [("2010-01-21", 50, 1), ("2021-06-01", 1, 10), ("2023-03-01", 3, 2)]


def test_splits_fail_over_from_a_failing_provider_to_the_next(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    config = make_config(yahoo=fragile(threshold=5, reset_s=600))
    with store.begin() as conn:
        register_asset(conn, BRK)
    down = Faulty(chart_route({}, splits={"BRK-B": BRK_SPLITS}), down=True)
    with net.play(yahoo=down, polygon=splits_route({"BRK.B": BRK_SPLITS}, page_size=1)) as (yahoo, polygon):
        cfg = settings_for(settings, tmp_path, config, yahoo=yahoo.url, polygon=polygon.url)
        keys = {"polygon": SecretStr(POLYGON_KEY)}
        with ProviderManager(cfg, store, config=config, api_keys=keys) as manager:
            result = manager.fetch_splits(
                "brk-b", "equity", pd.Timestamp("2010-01-01", tz="UTC"), pd.Timestamp("2024-01-01", tz="UTC")
            )
            assert manager.breaker("yahoo").consecutive_failures == 1  # the failure counted
            assert manager.breaker("polygon").consecutive_failures == 0
        asked = len(polygon.requests)
    assert result.provider == "polygon"
    assert [(a.provider, a.kind) for a in result.attempts] == [("yahoo", "Unavailable")]
    # the FKS symbol, not Polygon's ticker; new shares per old share
    assert [(a.symbol, f"{a.ex_date:%Y-%m-%d}", a.ratio, a.source) for a in result.actions] == [
        ("BRK-B", "2010-01-21", 50.0, "polygon"),
        ("BRK-B", "2021-06-01", 0.1, "polygon"),
        ("BRK-B", "2023-03-01", 1.5, "polygon"),
    ]
    assert asked == 3  # one split a page: three pages, each metered
    metered = usage(store)
    assert metered["polygon"]["calls"] == 3 and metered["polygon"]["failures"] == 0
    assert metered["yahoo"]["failures"] == 1 and "503" in (metered["yahoo"]["last_error"] or "")


@contextlib.contextmanager
def _yahoo_splits(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path, splits: list[Any]
) -> Iterator[tuple[ProviderManager, FixtureServer]]:
    """A manager of the default test config, BRK registered, and Yahoo playing its ``splits``."""
    config = make_config()
    with store.begin() as conn:
        register_asset(conn, BRK)
    with net.play(yahoo=chart_route({}, splits={"BRK-B": splits})) as (yahoo,):
        cfg = settings_for(settings, tmp_path, config, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:
            yield manager, yahoo


def test_splits_are_asked_only_of_providers_that_report_them(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start, end = pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2022-01-01", tz="UTC")
    with _yahoo_splits(net, settings, store, tmp_path, BRK_SPLITS) as (manager, yahoo):
        av_only = BRK.model_copy(update={"symbol": "AV-ONLY", "provider_symbols": {"alphavantage": "X"}})
        with store.begin() as conn:
            register_asset(conn, av_only)
        # alphavantage is preferred but reports no splits: passed over without an attempt
        result = manager.fetch_splits("BRK-B", "equity", start, end, prefer="alphavantage")
        with pytest.raises(NotSupported, match=r"reports splits: add provider_symbols: \{yahoo:"):
            manager.fetch_splits("AV-ONLY", "equity", start, end)
        with pytest.raises(NotSupported, match=r"NOPE has no symbol at .*add provider_symbols"):
            manager.fetch_splits("NOPE", "equity", start, end)
    assert (result.provider, result.attempts) == ("yahoo", [])
    assert [(f"{a.ex_date:%Y-%m-%d}", a.ratio) for a in result.actions] == [("2021-06-01", 0.1)]
    assert len(yahoo.requests) == 1


def test_every_provider_failing_splits_is_reported_with_each_error(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    bad = [("2021-06-01", 0, 10)]
    with (
        _yahoo_splits(net, settings, store, tmp_path, bad) as (manager, _),
        pytest.raises(AllProvidersFailed) as caught,
    ):
        manager.fetch_splits(
            "BRK-B", "equity", pd.Timestamp("2021-01-01", tz="UTC"), pd.Timestamp("2022-01-01", tz="UTC")
        )
    message = str(caught.value)
    assert message.startswith("BRK-B splits: every provider failed: yahoo: BadResponse:")
    assert (
        "has no valid ratio" in message
        and "polygon: AuthError: no API key; set FKS_POLYGON_API_KEY" in message
    )
