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
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from config.models import ForecasterConfig
from config.settings import Settings
from features import build_features, get_feature_set
from market.bars import canonical_bars
from providers.csv import parse_bars_csv

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LOOKBACK = 10
NAME = "fks-forecaster"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    tracking_uri: str
    db_url: str
    root: Path
    spx: pd.DataFrame

    def log_version(self, seed: int) -> str:
        """Log and register a tiny forecaster; returns its version."""
        import mlflow

        from models.forecaster import build_lstm, save_model
        from models.forecaster.pyfunc import build_preprocess, log_forecaster
        from models.preprocessing import FeatureScaler
        from models.registry import register
        from models.seeding import seed_everything

        feature_set = get_feature_set("minimal")
        bars = canonical_bars(self.spx)
        features = build_features(bars, feature_set, timeframe="1d")
        scaler = FeatureScaler(clip=10.0).fit(features.iloc[feature_set.min_history : 3000])
        seed_everything(seed)
        config = ForecasterConfig(lookback=LOOKBACK, horizon=1, units=(4,), dropout=0.0)
        network = build_lstm(len(features.columns), config, target_scale=0.01)
        keras_path = save_model(network, self.root / f"lstm-{seed}.keras")
        preprocess = build_preprocess(feature_set, scaler, lookback=LOOKBACK, horizon=1, timeframe="1d")
        need = feature_set.min_history + LOOKBACK - 1
        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run():
            example = self.spx.tail(need)
            info = log_forecaster(keras_model_path=keras_path, preprocess=preprocess, input_example=example)
        return register(info.model_uri, NAME, tags={"data_window": "1999-01-04..2018-12-28"})


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    import mlflow

    from models.registry import set_alias
    from storage import open_store, upsert_bars

    root = tmp_path_factory.mktemp("serving")
    spx = parse_bars_csv(REPO / "data" / "samples" / "sp500_daily.csv").bars.reset_index()
    tracking_uri, db_url = f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'fks.db'}"
    reg = Registry(tracking_uri=tracking_uri, db_url=db_url, root=root, spx=spx)
    mlflow.set_tracking_uri(reg.tracking_uri)
    mlflow.set_experiment("serving-test")
    version = reg.log_version(seed=7)
    set_alias(NAME, "challenger", version)  # no champion yet: the service falls back to the challenger
    engine = open_store(reg.db_url)
    with engine.begin() as conn:
        upsert_bars(conn, "SPX", "1d", canonical_bars(spx), source="csv")
    engine.dispose()
    return reg


@dataclass
class Server:
    url: str
    settings: Settings


@contextmanager
def _running(settings: Settings) -> Iterator[str]:
    """A real uvicorn server on loopback over ``create_app(settings)``, ready; yields its URL."""
    import uvicorn

    from serving.app import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("the service did not become ready in 120 s")
        yield url
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


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
    with _running(settings) as url:
        yield Server(url=url, settings=settings)


def _bars_json(raw: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"ts": t.isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": v}
        for t, o, h, lo, c, v in raw[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False)
    ]


def _served_pyfunc(registry: Registry, version: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(registry.tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")


def _need(registry: Registry) -> int:
    return get_feature_set("minimal").min_history + LOOKBACK - 1


def test_health_ready_and_models(server: Server, registry: Registry) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/ready").status_code == 200
    [info] = httpx.get(f"{server.url}/v1/models").json()
    assert (info["name"], info["version"], info["alias"]) == (NAME, "1", "challenger")
    assert info["min_bars"] == _need(registry) and info["data_window"] == "1999-01-04..2018-12-28"
    assert info["load_seconds"] > 0
    spec = httpx.get(f"{server.url}/openapi.json").json()
    routes = {"/health", "/ready", "/v1/models", "/v1/forecast", "/invocations", "/metrics"}
    assert routes <= set(spec["paths"])


def test_forecast_equals_the_registered_pyfunc(server: Server, registry: Registry) -> None:
    model = _served_pyfunc(registry, "1")
    need = _need(registry)
    a, b = registry.spx.iloc[: 3000], registry.spx
    body = {
        "series": [
            {"symbol": "EARLY", "bars": _bars_json(a.tail(need))},
            {"symbol": "LATE", "bars": _bars_json(b.tail(need + 50))},
            {"symbol": "SPX"},  # the latest stored bars
        ]
    }
    answer = httpx.post(f"{server.url}/v1/forecast", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert (out["model"], out["version"], out["alias"]) == (NAME, "1", "challenger") and out["request_id"]
    got = {f["symbol"]: f for f in out["forecasts"]}
    for symbol, raw in (("EARLY", a.tail(need)), ("LATE", b.tail(need + 50)), ("SPX", b.tail(need))):
        expected = model.predict(raw).iloc[0]
        assert got[symbol]["ts"] == expected["ts"]
        want = expected["forecast_log_return"]
        assert got[symbol]["forecast_log_return"] == pytest.approx(want, rel=1e-5, abs=1e-9)
        assert got[symbol]["prob_up"] == pytest.approx(expected["prob_up"], rel=1e-5)
        assert got[symbol]["horizon"] == 1


def test_concurrent_requests_share_forward_passes(server: Server, registry: Registry) -> None:
    need = _need(registry)
    ends = list(range(2000, 5000, 100))
    bodies = [
        {"series": [{"symbol": f"S{e}", "bars": _bars_json(registry.spx.iloc[e - need : e])}]} for e in ends
    ]
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda b: httpx.post(f"{server.url}/v1/forecast", json=b, timeout=60), bodies)
        )
    assert [a.status_code for a in answers] == [200] * len(bodies)
    model = _served_pyfunc(registry, "1")
    for e, a in zip(ends[:5], answers[:5], strict=False):
        expected = model.predict(registry.spx.iloc[e - need : e]).iloc[0]["forecast_log_return"]
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
    bars = _bars_json(registry.spx.tail(_need(registry)))
    answer = httpx.post(f"{server.url}/v1/forecast", json={"series": [{"symbol": "X", "bars": mutate(bars)}]})
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_unknown_model_symbol_nan_and_too_many_series(server: Server, registry: Registry) -> None:
    bars = _bars_json(registry.spx.tail(_need(registry)))
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
    port = _free_port()
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
    raw = registry.spx.tail(_need(registry)).copy()
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

    need = _need(registry)
    body = {"series": [{"symbol": "SPX", "bars": _bars_json(registry.spx.tail(need))}]}
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
    newest = _served_pyfunc(registry, version)
    expected = newest.predict(registry.spx.tail(need)).iloc[0]["forecast_log_return"]
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
    with _running(settings) as url:
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
