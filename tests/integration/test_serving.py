"""The REST service as clients meet it: a real uvicorn server on loopback over a real MLflow store.

One tiny forecaster (untrained, seeded) is registered per module; the service loads it, answers
forecasts equal to the registered pyfunc's, speaks MLflow's scoring protocol as
``mlflow models serve`` does, refuses bad input with 4xx messages, and swaps versions when the
alias moves without failing a request.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import Settings
from tests.serving_support import (
    NAME,
    Registry,
    bars_json,
    free_port,
    make_registry,
    need,
    running,
    served_pyfunc,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return make_registry(tmp_path_factory.mktemp("serving"))


@dataclass
class Server:
    url: str
    settings: Settings


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        db_url=registry.db_url,
        mlflow_tracking_uri=registry.tracking_uri,
        serve_poll_interval_s=0.5,
        serve_max_wait_ms=5.0,
        serve_auth=False,  # loopback; the auth test below runs its own server with keys
    )
    with running(settings) as url:
        yield Server(url=url, settings=settings)


def test_health_ready_and_models(server: Server, registry: Registry) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").status_code == 200
    [info] = httpx.get(f"{server.url}/v1/models").json()
    assert (info["name"], info["version"], info["alias"]) == (NAME, "1", "challenger")
    assert info["min_bars"] == need() and info["data_window"] == "1999-01-04..2018-12-28"
    assert info["load_seconds"] > 0
    spec = httpx.get(f"{server.url}/openapi.json").json()
    routes = {"/health", "/ready", "/v1/models", "/v1/forecast", "/invocations", "/metrics"}
    assert routes <= set(spec["paths"])


def test_forecast_equals_the_registered_pyfunc(server: Server, registry: Registry) -> None:
    model = served_pyfunc(registry, "1")
    n = need()
    a, b = registry.spx.iloc[:3000], registry.spx
    body = {
        "series": [
            {"symbol": "EARLY", "bars": bars_json(a.tail(n))},
            {"symbol": "LATE", "bars": bars_json(b.tail(n + 50))},
            {"symbol": "SPX"},  # the latest stored bars
        ]
    }
    answer = httpx.post(f"{server.url}/v1/forecast", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert (out["model"], out["version"], out["alias"]) == (NAME, "1", "challenger") and out["request_id"]
    got = {f["symbol"]: f for f in out["forecasts"]}
    for symbol, raw in (("EARLY", a.tail(n)), ("LATE", b.tail(n + 50)), ("SPX", b.tail(n))):
        expected = model.predict(raw).iloc[0]
        assert got[symbol]["ts"] == expected["ts"]
        want = expected["forecast_log_return"]
        assert got[symbol]["forecast_log_return"] == pytest.approx(want, rel=1e-5, abs=1e-9)
        assert got[symbol]["prob_up"] == pytest.approx(expected["prob_up"], rel=1e-5)
        assert got[symbol]["horizon"] == 1


def test_concurrent_requests_share_forward_passes(server: Server, registry: Registry) -> None:
    n = need()
    ends = list(range(2000, 5000, 100))
    bodies = [
        {"series": [{"symbol": f"S{e}", "bars": bars_json(registry.spx.iloc[e - n : e])}]} for e in ends
    ]
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda b: httpx.post(f"{server.url}/v1/forecast", json=b, timeout=60), bodies)
        )
    assert [a.status_code for a in answers] == [200] * len(bodies)
    model = served_pyfunc(registry, "1")
    for e, a in zip(ends[:5], answers[:5], strict=False):
        expected = model.predict(registry.spx.iloc[e - n : e]).iloc[0]["forecast_log_return"]
        assert a.json()["forecasts"][0]["forecast_log_return"] == pytest.approx(expected, rel=1e-5, abs=1e-9)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'fks_requests_total{route="/v1/forecast",status="200"}' in metrics
    assert "fks_batch_size_count" in metrics and "fks_model_version" in metrics


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (lambda bars: bars[:5], 422, "the model needs at least"),
        (lambda bars: [{**bars[0], "close": -1.0}, *bars[1:]], 422, "greater than 0"),
        (lambda bars: [bars[1], bars[0], *bars[2:]], 422, "bar times must increase"),
        (lambda bars: [{**bars[0], "volume": "lots"}, *bars[1:]], 422, "volume"),
        (
            lambda bars: [{k: v for k, v in bars[0].items() if k != "close"}, *bars[1:]],
            422,
            "close: Field required",
        ),
    ],
    ids=["too_few_bars", "negative_price", "not_increasing", "not_a_number", "missing_column"],
)
def test_bad_input_is_a_4xx_with_a_message(
    server: Server, registry: Registry, mutate: Any, status: int, message: str
) -> None:
    bars = bars_json(registry.spx.tail(need()))
    answer = httpx.post(f"{server.url}/v1/forecast", json={"series": [{"symbol": "X", "bars": mutate(bars)}]})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_unknown_model_symbol_nan_and_too_many_series(server: Server, registry: Registry) -> None:
    bars = bars_json(registry.spx.tail(need()))
    unknown = httpx.post(f"{server.url}/v1/forecast", json={"model": "nope", "series": [{"symbol": "SPX"}]})
    assert unknown.status_code == 404 and "no model 'nope' is served" in unknown.json()["error"]
    missing = httpx.post(f"{server.url}/v1/forecast", json={"series": [{"symbol": "MSFT"}]})
    assert missing.status_code == 404 and "no stored 1d bars of 'MSFT'" in missing.json()["error"]
    nan = json.dumps({"series": [{"symbol": "X", "bars": [{**bars[0], "open": math.nan}, *bars[1:]]}]})
    headers = {"content-type": "application/json"}
    answer = httpx.post(f"{server.url}/v1/forecast", content=nan, headers=headers)
    assert answer.status_code == 422 and "finite" in answer.json()["error"]
    many = {"series": [{"symbol": f"S{i}"} for i in range(65)]}
    assert httpx.post(f"{server.url}/v1/forecast", json=many).status_code == 422


def _mlflow_serve(registry: Registry) -> Iterator[str]:
    port = free_port()
    # mlflow starts `uvicorn` from PATH: the venv's bin must be on it
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.tracking_uri, "PATH": path}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}/1",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow models serve did not start in 180 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_invocations_answer_as_mlflow_models_serve(server: Server, registry: Registry) -> None:
    raw = registry.spx.tail(need()).copy()
    raw["ts"] = raw["ts"].map(lambda t: t.isoformat())
    split = json.loads(raw.to_json(orient="split", index=False))
    payloads: list[tuple[str, bytes]] = [
        ("application/json", json.dumps({"dataframe_split": split}).encode()),
        ("application/json", json.dumps({"dataframe_records": raw.to_dict(orient="records")}).encode()),
        ("application/json", json.dumps({"inputs": raw.to_dict(orient="list")}).encode()),
        ("application/json", json.dumps({"instances": raw.to_dict(orient="records")}).encode()),
        ("text/csv", raw.to_csv(index=False).encode()),
        ("application/json", json.dumps({"dataframe_split": {**split, "data": split["data"][:3]}}).encode()),
        ("application/json", b"{not json"),
    ]
    for url in _mlflow_serve(registry):
        for content_type, data in payloads:
            headers = {"content-type": content_type}
            ours = httpx.post(f"{server.url}/invocations", content=data, headers=headers)
            theirs = httpx.post(f"{url}/invocations", content=data, headers=headers)
            assert ours.status_code == theirs.status_code, (content_type, data[:60], ours.text, theirs.text)
            if theirs.status_code == 200:
                assert ours.json() == theirs.json()
            else:
                assert ours.json()["error_code"] == theirs.json()["error_code"]


def test_a_promotion_during_load_fails_no_request(server: Server, registry: Registry) -> None:
    from models.registry import set_alias

    n = need()
    body = {"series": [{"symbol": "SPX", "bars": bars_json(registry.spx.tail(n))}]}
    version = registry.log_version(seed=11)
    stop = threading.Event()
    statuses: list[int] = []
    versions: list[str] = []

    def hammer() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                answer = client.post(f"{server.url}/v1/forecast", json=body)
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    versions.append(answer.json()["version"])

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    set_alias(NAME, "champion", version)  # the champion appears: the service moves to it
    deadline = time.time() + 60
    while time.time() < deadline and (not versions or versions[-1] != version):
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert statuses and set(statuses) == {200}
    assert versions[0] == "1" and versions[-1] == version
    [info] = httpx.get(f"{server.url}/v1/models").json()
    assert (info["version"], info["alias"]) == (version, "champion")
    newest = served_pyfunc(registry, version)
    expected = newest.predict(registry.spx.tail(n)).iloc[0]["forecast_log_return"]
    got = httpx.post(f"{server.url}/v1/forecast", json=body).json()["forecasts"][0]["forecast_log_return"]
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert 'fks_model_swaps_total{model="fks-forecaster"} 1.0' in httpx.get(f"{server.url}/metrics").text


def test_api_keys_rate_limits_and_body_limits(registry: Registry, tmp_path: Path) -> None:
    from storage import open_store
    from storage.api_keys import create_api_key, revoke_api_key

    engine = open_store(registry.db_url)
    with engine.begin() as conn:
        _, good = create_api_key(conn, f"client-{time.time_ns()}")
        gone, revoked = create_api_key(conn, f"old-{time.time_ns()}")
        revoke_api_key(conn, gone.name)
    engine.dispose()
    settings = Settings(
        data_dir=tmp_path,
        db_url=registry.db_url,
        mlflow_tracking_uri=registry.tracking_uri,
        serve_rate_per_minute=5,
        serve_max_body_bytes=50_000,
        serve_cors_origins=["https://notebook.example"],
    )
    body = {"series": [{"symbol": "SPX"}]}
    with running(settings) as url:
        for route in ("/health", "/ready", "/metrics", "/openapi.json"):
            assert httpx.get(f"{url}{route}").status_code == 200, route  # open without a key
        preflight = httpx.options(
            f"{url}/v1/forecast",
            headers={
                "Origin": "https://notebook.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://notebook.example"
        missing = httpx.post(f"{url}/v1/forecast", json=body)
        assert missing.status_code == 401 and "fks keys create" in missing.json()["error"]
        wrong = httpx.post(f"{url}/v1/forecast", json=body, headers={"X-API-Key": "fks_nope"})
        assert wrong.status_code == 401
        old = httpx.post(f"{url}/v1/forecast", json=body, headers={"X-API-Key": revoked})
        assert old.status_code == 403 and "revoked" in old.json()["error"]
        assert httpx.get(f"{url}/v1/models").status_code == 401
        key = {"X-API-Key": good}
        statuses = [httpx.post(f"{url}/v1/forecast", json=body, headers=key) for _ in range(7)]
        assert [r.status_code for r in statuses[:5]] == [200] * 5
        limited = statuses[-1]
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        headers = {**key, "content-type": "application/json"}
        big = httpx.post(f"{url}/v1/forecast", content=b"x" * 60_000, headers=headers)
        assert big.status_code == 413 and "limit is 50,000" in big.json()["error"]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'route="/v1/forecast",status="401"' in metrics and 'status="429"' in metrics
