"""The execution desk's HTTP client against a real REST service on loopback (uvicorn over a real
MLflow store with the tiny forecaster and a tiny allocator, API keys on): its answers are the
service's answers, and every failure is a ServiceError with the service's message and a hint."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from config.settings import Settings
from execution.client import HEADER, ServiceClient, ServiceError
from market.bars import canonical_bars
from tests.integration.test_webhooks import Answer, Receiver
from tests.serving_support import NAME, Registry, bars_json, free_port, make_registry, need, running

pytestmark = pytest.mark.slow

ALLOCATOR = "fks-allocator"


def _half_invested() -> Any:
    import mlflow.pyfunc

    class HalfInvested(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        """Half the account in equal parts of the assets, moving halfway from the current weights."""

        # what the overview page reads off a served allocator (as the real pyfunc carries them)
        universe = ("SPX",)
        timeframe = "1d"
        min_bars = 30

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
            last = model_input.groupby("symbol", sort=False).tail(1)
            target = 0.5 / len(last)
            weights = [0.5 * (w + target) for w in last["weight"]]
            ts = pd.to_datetime(last["ts"], utc=True).max().isoformat()
            return pd.DataFrame(
                {"symbol": [*last["symbol"], "CASH"], "weight": [*weights, 1.0 - sum(weights)], "ts": ts}
            )

    return HalfInvested()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    import mlflow

    from models.registry import register, set_alias

    reg = make_registry(tmp_path_factory.mktemp("service-client"))
    example = pd.DataFrame(
        {"symbol": ["A", "B"], "ts": ["2024-01-02T00:00:00+00:00"] * 2, "open": [1.0, 2.0],
         "high": [1.0, 2.0], "low": [1.0, 2.0], "close": [1.0, 2.0], "volume": [0.0, 0.0],
         "weight": [0.0, 0.0]}
    )  # fmt: skip
    mlflow.set_tracking_uri(reg.tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="allocator", python_model=_half_invested(), input_example=example)
    set_alias(ALLOCATOR, "champion", register(info.model_uri, ALLOCATOR))
    return reg


@pytest.fixture(scope="module")
def key(registry: Registry) -> str:
    from storage import open_store
    from storage.api_keys import create_api_key

    engine = open_store(registry.db_url)
    with engine.begin() as conn:
        _, plain = create_api_key(conn, "execution-desk")
    engine.dispose()
    return plain


@pytest.fixture(scope="module")
def url(registry: Registry, key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        db_url=registry.db_url,
        mlflow_tracking_uri=registry.tracking_uri,
        serve_poll_interval_s=0.5,
        serve_rate_per_minute=100_000,
    )
    with running(settings) as base:
        deadline = time.time() + 60
        while ALLOCATOR not in httpx.get(f"{base}/ready").json().get("models", []) and time.time() < deadline:
            time.sleep(0.1)
        yield base


@pytest.fixture(scope="module")
def client(url: str, key: str) -> Iterator[ServiceClient]:
    with ServiceClient(url, SecretStr(key), timeout=30.0) as service:
        yield service


def _raw(url: str, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{url}{path}", json=body, headers={HEADER: key}, timeout=30)
    assert answer.status_code == 200, answer.text
    out: dict[str, Any] = answer.json()
    return out


def test_header_is_the_services() -> None:
    from serving.auth import HEADER as SERVICE_HEADER

    assert HEADER == SERVICE_HEADER


def test_ready_and_models(client: ServiceClient) -> None:
    assert client.ready() is True
    models = {m["name"]: m for m in client.models()}
    assert set(models) == {NAME, ALLOCATOR}
    assert (models[NAME]["version"], models[NAME]["alias"], models[NAME]["min_bars"]) == (
        "1",
        "challenger",
        need(),
    )


def test_forecast_is_what_a_raw_post_answers(
    client: ServiceClient, registry: Registry, url: str, key: str
) -> None:
    n = need()
    early = registry.spx.iloc[2900 - n : 2900]
    late = registry.spx.tail(n + 20)
    answer = client.forecast({"EARLY": canonical_bars(early), "LATE": canonical_bars(late), "SPX": None})
    raw = _raw(url, key, "/v1/forecast", {"series": [
        {"symbol": "EARLY", "bars": bars_json(early)}, {"symbol": "LATE", "bars": bars_json(late)},
        {"symbol": "SPX"},
    ]})  # fmt: skip
    assert (answer.model, answer.version, answer.alias) == (raw["model"], raw["version"], raw["alias"])
    assert (answer.model, answer.version, answer.alias) == (NAME, "1", "challenger")
    assert len(answer.request_id) == 32 and answer.request_id != raw["request_id"]
    assert list(answer.forecasts) == ["EARLY", "LATE", "SPX"]
    for f in raw["forecasts"]:
        got = answer[f["symbol"]]
        assert got.ts == pd.Timestamp(f["ts"]) and str(got.ts.tz) == "UTC"
        assert got.forecast_log_return == pytest.approx(f["forecast_log_return"], rel=1e-6, abs=1e-12)
        assert got.prob_up == pytest.approx(f["prob_up"], rel=1e-6) and got.horizon == f["horizon"] == 1
    assert answer["EARLY"].ts == early["ts"].iloc[-1] and answer["LATE"].ts == late["ts"].iloc[-1]
    with pytest.raises(KeyError, match="EARLY"):
        answer["NOPE"]


def test_allocate_is_what_a_raw_post_answers(
    client: ServiceClient, registry: Registry, url: str, key: str
) -> None:
    a, b = registry.spx.iloc[100:140], registry.spx.iloc[200:240]
    plan = client.allocate({"A": canonical_bars(a), "B": canonical_bars(b)}, weights={"A": 0.3})
    raw = _raw(url, key, "/v1/allocate", {
        "universe": [{"symbol": "A", "bars": bars_json(a)}, {"symbol": "B", "bars": bars_json(b)}],
        "weights": {"A": 0.3},
    })  # fmt: skip
    assert (plan.model, plan.version, plan.alias) == (ALLOCATOR, "1", "champion")
    assert plan.weights == {w["symbol"]: w["weight"] for w in raw["weights"]}
    assert plan.weights == pytest.approx({"A": 0.275, "B": 0.125, "CASH": 0.6})
    assert plan.ts == pd.Timestamp(raw["ts"]) == b["ts"].iloc[-1]


def test_the_overview_shows_the_served_allocators_weights_as_allocate_answers_them(
    registry: Registry, url: str, key: str
) -> None:
    shown = httpx.get(f"{url}/v1/overview/predictions", headers={HEADER: key}, timeout=60).json()
    raw = _raw(url, key, "/v1/allocate", {"universe": [{"symbol": "SPX"}]})  # the latest stored bars
    allocation = shown["allocation"]
    assert (allocation["model"], allocation["version"]) == (ALLOCATOR, "1")
    assert {s: w for s, w in allocation["weights"]} == {w["symbol"]: w["weight"] for w in raw["weights"]}
    assert {s: w for s, w in allocation["weights"]} == pytest.approx({"SPX": 0.25, "CASH": 0.75})
    assert pd.Timestamp(allocation["ts"]) == pd.Timestamp(raw["ts"]) == registry.spx["ts"].iloc[-1]


def test_a_wrong_or_missing_key_is_a_401_with_the_keys_hint(
    url: str, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for api_key in (SecretStr("fks_not-a-key"), None):
        with ServiceClient(url, api_key, timeout=10.0) as service, pytest.raises(ServiceError) as caught:
            service.models()
        error = caught.value
        assert error.status == 401 and error.route == "GET /v1/models"
        assert "API key" in error.message  # the service's own message
        assert "FKS_SERVICE_API_KEY" in error.hint and "fks keys create" in error.hint
        assert "FKS_SERVICE_API_KEY" in str(error)
    assert "fks_not-a-key" not in caplog.text and key not in caplog.text
    assert "fks_not-a-key" not in repr(ServiceClient(url, SecretStr("fks_not-a-key")))


def test_the_services_4xx_messages_come_through(client: ServiceClient, registry: Registry) -> None:
    short = canonical_bars(registry.spx.tail(5))
    with pytest.raises(ServiceError) as caught:
        client.forecast({"X": short})
    assert caught.value.status == 422 and "the model needs at least" in caught.value.message
    with pytest.raises(ServiceError) as caught:
        client.forecast({"SPX": None}, model="nope")
    assert caught.value.status == 404 and "nope" in caught.value.message and "models()" in caught.value.hint
    with pytest.raises(ServiceError) as caught:
        client.allocate({"A": canonical_bars(registry.spx.iloc[:40])}, weights={"Z": 0.1})
    assert caught.value.status == 422 and "not in the universe" in caught.value.message


def test_bars_that_are_not_canonical_are_refused_before_sending(
    client: ServiceClient, registry: Registry
) -> None:
    bars = canonical_bars(registry.spx.tail(need()))
    with pytest.raises(ValueError, match=r"'X' lack columns \['volume'\]"):
        client.forecast({"X": bars.drop(columns="volume")})
    broken = bars.copy()
    broken.iloc[3, broken.columns.get_loc("close")] = np.nan
    with pytest.raises(ValueError, match="non-finite close at"):
        client.forecast({"X": broken})
    with pytest.raises(ValueError, match="at least one"):
        client.forecast({})


def test_a_dead_port_says_start_the_service(caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    dead = f"http://127.0.0.1:{free_port()}"
    with ServiceClient(dead, SecretStr("fks_secret-key"), retries=2, sleep=sleeps.append) as service:
        with pytest.raises(ServiceError) as caught:
            service.forecast({"SPX": None})
        assert caught.value.status is None and "cannot connect" in caught.value.message
        assert "fks serve" in caught.value.hint and "FKS_SERVICE_URL" in caught.value.hint
        assert sleeps == [0.2, 0.4]  # connect errors are retried twice, backing off
        with pytest.raises(ServiceError, match="fks serve"):
            service.ready()
    assert sleeps == [0.2, 0.4]  # ready() is never retried
    assert "fks_secret-key" not in caplog.text


def test_503_is_retried_and_then_explained() -> None:
    """A stand-in service that answers 503 (models loading) then 200, on loopback."""
    receiver = Receiver()
    try:
        ok = {"request_id": "r1", "model": NAME, "version": "3", "alias": "champion", "forecasts": [
            {"symbol": "SPX", "ts": "2024-01-02T00:00:00+00:00", "forecast_log_return": 0.001,
             "prob_up": 0.55, "horizon": 1}]}  # fmt: skip
        loading = Answer(
            503, {"error": f"model {NAME!r} is not loaded yet; retry when GET /ready answers 200"}
        )
        receiver.queue("/v1/forecast", loading, Answer(502, "bad gateway"), Answer(200, ok))
        sleeps: list[float] = []
        with ServiceClient(receiver.url, None, retries=2, sleep=sleeps.append) as service:
            answer = service.forecast({"SPX": None})
            assert answer.version == "3" and answer["SPX"].prob_up == 0.55
            assert sleeps == [0.2, 0.4] and len(receiver.at("/v1/forecast")) == 3
            receiver.queue("/v1/forecast", loading, loading, loading)
            with pytest.raises(ServiceError) as caught:
                service.forecast({"SPX": None})
            assert caught.value.status == 503 and "not loaded yet" in caught.value.message
            assert "ready()" in caught.value.hint
            receiver.queue("/ready", Answer(503, {"error": "not loaded yet: fks-forecaster"}))
            assert service.ready() is False
            receiver.queue("/v1/forecast", Answer(500, {"error": "boom"}))
            with pytest.raises(ServiceError) as caught:
                service.forecast({"SPX": None})
            assert (
                caught.value.status == 500 and len(receiver.at("/v1/forecast")) == 7
            )  # a 500 is not retried
        assert "x-api-key" not in {k.lower() for k in receiver.at("/ready")[0].headers}
    finally:
        receiver.close()


def test_429_waits_as_the_service_asks_without_using_the_retries(caplog: pytest.LogCaptureFixture) -> None:
    """A stand-in service over the key's rate: the client waits ``Retry-After`` (1 s without it,
    5 s at most) and sends again, as often as ``rate_limit_waits`` allows, then raises the 429."""
    receiver = Receiver()
    try:
        over = {"error": "API key 'desk' is over its rate of 600 requests a minute; retry in 2 s"}
        receiver.queue(
            "/v1/models",
            Answer(429, over, {"Retry-After": "2"}),
            Answer(429, over),
            Answer(429, over, {"Retry-After": "30"}),
            Answer(200, []),
        )
        sleeps: list[float] = []
        with (
            caplog.at_level(logging.DEBUG, logger="execution.client"),
            ServiceClient(receiver.url, None, retries=0, sleep=sleeps.append) as service,
        ):
            assert service.models() == []  # retries=0: 429s are not failed attempts
            assert sleeps == [2.0, 1.0, 5.0] and service.rate_limited == 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "FKS_SERVE_RATE_PER_MINUTE" in warnings[0].getMessage()
        receiver.queue("/v1/models", Answer(429, over, {"Retry-After": "1"}), Answer(429, over))
        sleeps.clear()
        with (
            ServiceClient(receiver.url, None, rate_limit_waits=1, sleep=sleeps.append) as service,
            pytest.raises(ServiceError) as caught,
        ):
            service.models()
        assert caught.value.status == 429 and "FKS_SERVE_RATE_PER_MINUTE" in caught.value.hint
        assert sleeps == [1.0] and len(receiver.at("/v1/models")) == 6
        with pytest.raises(ValueError, match="rate_limit_waits"):
            ServiceClient(receiver.url, None, rate_limit_waits=-1)
    finally:
        receiver.close()


def test_a_client_faster_than_its_keys_rate_goes_at_that_rate(
    registry: Registry, key: str, tmp_path: Path
) -> None:
    """The real service with 60 requests a minute per key (a burst of 60, then one a second): 63
    requests in a row all succeed, the last ones after the waits the service asked for."""
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=registry.db_url,
        mlflow_tracking_uri=registry.tracking_uri,
        serve_poll_interval_s=0.5,
        serve_rate_per_minute=60,
    )
    with running(settings) as base, ServiceClient(base, SecretStr(key), timeout=30.0) as service:
        started = time.monotonic()
        names = [{m["name"] for m in service.models()} for _ in range(63)]
        took = time.monotonic() - started
    assert names == [{NAME, ALLOCATOR}] * 63
    assert service.rate_limited >= 1 and took >= 1.0  # refused at least once, then waited


def test_from_settings(monkeypatch: pytest.MonkeyPatch, url: str, key: str) -> None:
    monkeypatch.setenv("FKS_SERVICE_URL", url + "/")
    monkeypatch.setenv("FKS_SERVICE_API_KEY", key)
    monkeypatch.setenv("FKS_SERVICE_TIMEOUT_S", "7.5")
    settings = Settings()
    assert key not in repr(settings)
    with ServiceClient.from_settings(settings) as service:
        assert service.base_url == url and service.timeout == 7.5
        assert {m["name"] for m in service.models()} == {NAME, ALLOCATOR}


def test_defaults_match_fks_serve() -> None:
    import inspect

    from serving.server import serve

    port = inspect.signature(serve).parameters["port"].default
    host = inspect.signature(serve).parameters["host"].default
    assert Settings.model_fields["service_url"].default == f"http://{host}:{port}"


def test_the_desk_trades_the_served_allocation_and_posts_its_fills(
    registry: Registry, url: str, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.assets import load_asset_specs
    from config.trading import TradeConfig
    from execution.notify import Notifier
    from execution.runner import trade
    from storage import open_store, upsert_assets
    from storage.desk import list_targets
    from storage.execution import list_orders
    from tests.integration.test_desk import risk_file

    closed: list[Notifier] = []  # the webhooks' connection pool is closed when trade() returns
    monkeypatch.setattr(
        Notifier, "close", lambda self, close=Notifier.close: (closed.append(self), close(self))
    )

    engine = open_store(registry.db_url)
    settings = Settings(db_url=registry.db_url, mlflow_tracking_uri=registry.tracking_uri, data_dir=tmp_path)
    with engine.begin() as conn:
        upsert_assets(conn, load_asset_specs(settings.assets_file))
    receiver = Receiver()
    try:
        desk = settings.model_copy(
            update={
                "service_url": url,
                "service_api_key": SecretStr(key),
                "webhook_urls": [SecretStr(f"{receiver.url}/services/T0/B0/secret")],
            }
        )
        config = TradeConfig(
            account="alloc", symbols=("SPX",), allocator=ALLOCATOR, risk_file=risk_file(tmp_path),
            ingest=False, paper={"spread_bps": 0, "slippage_bps": 0, "volume_share": None},
        )  # fmt: skip
        run = trade(
            engine,
            desk,
            config,
            replay=(pd.Timestamp("2016-01-04", tz="UTC"), pd.Timestamp("2016-01-29", tz="UTC")),
        )
        assert len(closed) == 1
    finally:
        receiver.close()
    with engine.connect() as conn:
        targets = list_targets(conn, "alloc")
        orders = list_orders(conn, "alloc")
    # HalfInvested moves halfway from the current weight to 0.5 (one asset) each bar: 0.25, 0.375, ...
    assert set(targets["model"]) == {ALLOCATOR} and targets["weight"].iloc[0] == pytest.approx(0.25)
    assert targets["weight"].iloc[1] == pytest.approx(0.375, abs=0.01)
    assert targets["weight"].iloc[-1] == pytest.approx(0.5, abs=0.01)
    assert run.cycles == len(targets) and run.orders == len(orders) > 5 and not run.halted
    posted = [json.loads(r.body) for r in receiver.at("/services/T0/B0/secret")]
    fills = [p for p in posted if p["fks"]["kind"] == "fill"]
    assert (
        len(fills) == run.fills and fills[0]["text"] == fills[0]["content"] and fills[0]["username"] == "fks"
    )
    assert fills[0]["fks"]["account"] == "alloc" and fills[0]["fks"]["fields"]["symbol"] == "SPX"
    engine.dispose()
