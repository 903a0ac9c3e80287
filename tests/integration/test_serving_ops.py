"""The REST service's operations against a real uvicorn server: table ``predictions`` (written in
the background, with the caller's key), the feature cache, explanations, input drift, the
challenger's traffic share and shadow mode, and the body limit for chunked uploads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete

from config.settings import Settings
from features import get_feature_set
from serving.scoring import share_draw
from storage import open_store
from storage.api_keys import create_api_key, find_api_key
from storage.predictions import list_predictions
from storage.schema import PredictionRow
from tests.serving_support import (
    NAME,
    TRAIN_ROWS,
    Registry,
    bars_json,
    make_registry,
    need,
    running,
    served_pyfunc,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return make_registry(tmp_path_factory.mktemp("serving-ops"))


@pytest.fixture(scope="module")
def key(registry: Registry) -> str:
    engine = open_store(registry.db_url)
    with engine.begin() as conn:
        _, plain = create_api_key(conn, "ops-test")
    engine.dispose()
    return plain


def _settings(registry: Registry, root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": root,
        "db_url": registry.db_url,
        "mlflow_tracking_uri": registry.tracking_uri,
        "serve_poll_interval_s": 0.5,
        "serve_rate_per_minute": 100_000,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="module")
def url(registry: Registry, key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running(_settings(registry, tmp_path_factory.mktemp("data"))) as base:
        yield base


def _rows(registry: Registry, request_id: str, count: int) -> pd.DataFrame:
    """The stored predictions of ``request_id`` once ``count`` are there (the writer is async)."""
    engine = open_store(registry.db_url)
    try:
        deadline = time.time() + 30
        while True:
            with engine.connect() as conn:
                rows = list_predictions(conn, request_id=request_id)
            if len(rows) >= count or time.time() > deadline:
                return rows
            time.sleep(0.1)
    finally:
        engine.dispose()


def _clear_predictions(registry: Registry) -> None:
    engine = open_store(registry.db_url)
    with engine.begin() as conn:
        conn.execute(delete(PredictionRow))
    engine.dispose()


def test_every_answer_is_stored_with_the_callers_key(url: str, registry: Registry, key: str) -> None:
    n = need()
    body = {
        "series": [{"symbol": "A", "bars": bars_json(registry.spx.iloc[2000 - n : 2000])}, {"symbol": "SPX"}]
    }
    answer = httpx.post(f"{url}/v1/forecast", json=body, headers={"X-API-Key": key}, timeout=30)
    assert answer.status_code == 200, answer.text
    out = answer.json()
    rows = _rows(registry, out["request_id"], 2)
    assert len(rows) == 2
    engine = open_store(registry.db_url)
    with engine.connect() as conn:
        key_id = find_api_key(conn, key).id  # type: ignore[union-attr]
    engine.dispose()
    inner = served_pyfunc(registry, "1").unwrap_python_model()
    columns = list(inner.preprocess.feature_columns)
    for forecast, row in zip(out["forecasts"], rows.itertuples(), strict=True):
        assert (row.model, row.version, row.alias, row.symbol) == (
            NAME,
            "1",
            "challenger",
            forecast["symbol"],
        )
        assert row.bar_ts.isoformat() == forecast["ts"]
        assert row.output["forecast_log_return"] == pytest.approx(forecast["forecast_log_return"], rel=1e-12)
        assert row.output["prob_up"] == pytest.approx(forecast["prob_up"], rel=1e-12)
        assert row.key_id == key_id and not row.shadow and row.latency_ms > 0
        assert row.features and all(np.isfinite(v) for v in row.features.values())
        assert list(row.features) == columns
    # the raw feature row is the one the model's window ends on
    expected = inner.prepare(registry.spx.iloc[2000 - n : 2000]).features[0]
    assert rows.iloc[0]["features"] == pytest.approx(expected, rel=1e-12)


def test_repeated_bars_come_from_the_feature_cache(url: str, registry: Registry, key: str) -> None:
    n = need()
    body = {"series": [{"symbol": "C", "bars": bars_json(registry.spx.iloc[2500 - n : 2500])}]}
    headers = {"X-API-Key": key}

    def hits() -> float:
        for line in httpx.get(f"{url}/metrics").text.splitlines():
            if line.startswith('fks_feature_cache{result="hit"}'):
                return float(line.split()[-1])
        return 0.0

    before = hits()
    first = httpx.post(f"{url}/v1/forecast", json=body, headers=headers, timeout=30).json()
    second = httpx.post(f"{url}/v1/forecast", json=body, headers=headers, timeout=30).json()
    assert hits() == before + 1
    assert first["forecasts"] == second["forecasts"]
    other = {"series": [{"symbol": "C", "bars": bars_json(registry.spx.iloc[2501 - n : 2501])}]}
    httpx.post(f"{url}/v1/forecast", json=other, headers=headers, timeout=30)
    assert hits() == before + 1  # other bars: a miss


def test_explain_is_the_models_own_explainer(url: str, registry: Registry, key: str) -> None:
    from models.reference import training_features

    n = need()
    raw = registry.spx.iloc[2200 - n : 2200]
    series = {"symbol": "E", "bars": bars_json(raw)}
    headers = {"X-API-Key": key}
    answer = httpx.post(
        f"{url}/v1/explain", json={"series": series, "top_k": 3}, headers=headers, timeout=120
    )
    assert answer.status_code == 200, answer.text
    out = answer.json()
    forecast = httpx.post(f"{url}/v1/forecast", json={"series": [series]}, headers=headers, timeout=30).json()
    assert out["forecast_log_return"] == forecast["forecasts"][0]["forecast_log_return"]
    assert out["ts"] == forecast["forecasts"][0]["ts"] and out["version"] == "1"
    shap = [a["shap"] for a in out["attributions"]]
    assert len(shap) == 3 and np.all(np.diff(np.abs(shap)) <= 0)
    # the same attributions, computed directly from the registered model and its training rows
    model = served_pyfunc(registry, "1")
    inner = model.unwrap_python_model()
    engine = open_store(registry.db_url)
    run_id = model.metadata.run_id
    background = inner.background(training_features(run_id, engine=engine), size=64, seed=0)
    engine.dispose()
    direct = inner.explain(inner.prepare(raw).x[0], background)
    assert [a["feature"] for a in out["attributions"]] == list(direct.index[:3])
    assert shap == pytest.approx(list(direct.iloc[:3]), rel=1e-5, abs=1e-9)
    assert out["rest"] == pytest.approx(float(direct.iloc[3:].sum()), rel=1e-5, abs=1e-9)
    assert out["base_value"] == pytest.approx(direct.attrs["base_value"], rel=1e-5, abs=1e-9)
    bad = httpx.post(f"{url}/v1/explain", json={"series": series, "top_k": 0}, headers=headers)
    assert bad.status_code == 422 and "top_k" in bad.json()["error"]


def _serve_windows(url: str, key: str, frames: list[pd.DataFrame]) -> None:
    for start in range(0, len(frames), 50):
        body = {
            "series": [
                {"symbol": f"D{start + i}", "bars": bars_json(f)}
                for i, f in enumerate(frames[start : start + 50])
            ]
        }
        answer = httpx.post(f"{url}/v1/forecast", json=body, headers={"X-API-Key": key}, timeout=120)
        assert answer.status_code == 200, answer.text


def _wait_stored(registry: Registry, count: int) -> None:
    engine = open_store(registry.db_url)
    deadline = time.time() + 30
    while time.time() < deadline:
        with engine.connect() as conn:
            if len(list_predictions(conn, model=NAME)) >= count:
                break
        time.sleep(0.2)
    engine.dispose()


def _shifted(raw: pd.DataFrame, factor: float) -> pd.DataFrame:
    """The same bars with every log return (and range) ``factor`` times as large."""
    out = raw.copy()
    close = raw["close"].to_numpy()
    levels = close[0] * np.exp(factor * np.log(close / close[0]))
    for column in ("open", "high", "low", "close"):
        out[column] = levels * np.exp(factor * np.log(raw[column].to_numpy() / close))
    return out


def test_drift_flags_shifted_inputs_and_not_training_like_ones(
    url: str, registry: Registry, key: str
) -> None:
    n = need()
    minimal = get_feature_set("minimal")
    rng = np.random.default_rng(5)
    ends = rng.choice(np.arange(minimal.min_history + n, TRAIN_ROWS), size=300, replace=False)
    like_training = [registry.spx.iloc[e - n : e] for e in ends]
    headers = {"X-API-Key": key}
    _clear_predictions(registry)
    _serve_windows(url, key, like_training)
    _wait_stored(registry, len(ends))
    calm = httpx.get(f"{url}/v1/drift", params={"model": NAME}, headers=headers, timeout=120)
    assert calm.status_code == 200, calm.text
    report = calm.json()
    assert report["n_served"] == len(ends) and report["version"] == "1"
    assert report["verdict"] == "stable", report
    _clear_predictions(registry)
    _serve_windows(url, key, [_shifted(f, 3.0) for f in like_training])
    _wait_stored(registry, len(ends))
    shifted = httpx.get(f"{url}/v1/drift", params={"model": NAME}, headers=headers, timeout=120).json()
    assert shifted["verdict"] == "drift", shifted
    drifted = {f["feature"] for f in shifted["features"] if f["verdict"] == "drift"}
    assert drifted and all(f["psi"] is not None for f in shifted["features"])
    unknown = httpx.get(f"{url}/v1/drift", params={"model": "nope"}, headers=headers)
    assert unknown.status_code == 404
    assert httpx.get(f"{url}/v1/drift", headers={}).status_code == 401


def test_chunked_bodies_are_held_to_the_limit(registry: Registry, key: str, tmp_path: Path) -> None:
    n = need()
    body = bytes(
        httpx.Request(
            "POST", "http://x", json={"series": [{"symbol": "K", "bars": bars_json(registry.spx.tail(n))}]}
        ).content
    )
    settings = _settings(registry, tmp_path, serve_max_body_bytes=len(body) + 10)
    headers = {"X-API-Key": key, "content-type": "application/json"}

    def chunks(data: bytes) -> Iterator[bytes]:
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    with running(settings) as base:
        ok = httpx.post(f"{base}/v1/forecast", content=chunks(body), headers=headers, timeout=30)
        assert ok.status_code == 200, ok.text
        big = httpx.post(
            f"{base}/v1/forecast", content=chunks(body + b" " * 100_000), headers=headers, timeout=30
        )
        assert big.status_code == 413 and "the limit is" in big.json()["error"]
        assert 'route="/v1/forecast",status="413"' in httpx.get(f"{base}/metrics").text


def test_challenger_share_and_shadow_mode(registry: Registry, key: str, tmp_path: Path) -> None:
    from models.registry import set_alias

    n = need()
    champion = registry.log_version(seed=23)
    set_alias(NAME, "champion", champion)  # version 1 stays @challenger
    body = {"series": [{"symbol": "S", "bars": bars_json(registry.spx.iloc[2600 - n : 2600])}]}
    headers = {"X-API-Key": key}
    expected = {
        v: served_pyfunc(registry, v)
        .predict(registry.spx.iloc[2600 - n : 2600])
        .iloc[0]["forecast_log_return"]
        for v in ("1", champion)
    }
    with running(_settings(registry, tmp_path / "share", serve_challenger_share=0.5)) as base:
        _wait_for_challenger(base, headers)
        answers = [
            httpx.post(f"{base}/v1/forecast", json=body, headers=headers, timeout=30).json()
            for _ in range(40)
        ]
    by_draw = {a["request_id"]: ("1" if share_draw(a["request_id"]) < 0.5 else champion) for a in answers}
    assert {a["version"] for a in answers} == {"1", champion}
    for a in answers:
        assert a["version"] == by_draw[a["request_id"]]
        assert a["alias"] == ("challenger" if a["version"] == "1" else "champion")
        want = expected[a["version"]]
        assert a["forecasts"][0]["forecast_log_return"] == pytest.approx(want, rel=1e-5, abs=1e-9)
    with running(_settings(registry, tmp_path / "shadow", serve_shadow=True)) as base:
        _wait_for_challenger(base, headers)
        answers = [
            httpx.post(f"{base}/v1/forecast", json=body, headers=headers, timeout=30).json() for _ in range(5)
        ]
    for a in answers:
        assert a["version"] == champion  # the caller only ever sees the champion
        rows = _rows(registry, a["request_id"], 2)
        assert sorted(zip(rows["version"], rows["shadow"], strict=True)) == sorted(
            [(champion, False), ("1", True)]
        )
        shadow_row = rows[rows["shadow"]].iloc[0]
        assert shadow_row["output"]["forecast_log_return"] == pytest.approx(expected["1"], rel=1e-5, abs=1e-9)
    set_alias(NAME, "champion", "1")  # leave the module's model answering as before


def _wait_for_challenger(base: str, headers: dict[str, str]) -> None:
    """Until /metrics shows a loaded @challenger beside the champion (the poller loads it)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        text = httpx.get(f"{base}/metrics").text
        if 'fks_model_version{alias="champion"' in text and 'alias="challenger"' in text:
            return
        time.sleep(0.2)
    raise AssertionError("the challenger was not loaded in 60 s")


def test_any_registered_pyfunc_is_served_by_name(registry: Registry, key: str, tmp_path: Path) -> None:
    import mlflow
    import mlflow.pyfunc

    from models.registry import register, set_alias

    class EqualWeights(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
            symbols = sorted(set(model_input["symbol"]))
            return pd.DataFrame({"symbol": symbols, "weight": [1.0 / len(symbols)] * len(symbols)})

    headers = {"X-API-Key": key}
    with running(_settings(registry, tmp_path / "a", serve_poll_interval_s=0.3)) as base:
        assert httpx.get(f"{base}/ready").json()["models"] == [NAME]  # fks-allocator does not exist yet
        absent = httpx.post(
            f"{base}/invocations", params={"model": "fks-allocator"}, json={}, headers=headers
        )
        assert absent.status_code == 404 and "@champion" in absent.json()["error"]
        mlflow.set_tracking_uri(registry.tracking_uri)
        example = pd.DataFrame({"symbol": ["A", "B"], "close": [1.0, 2.0]})
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="allocator", python_model=EqualWeights(), input_example=example
            )
        set_alias("fks-allocator", "champion", register(info.model_uri, "fks-allocator"))
        deadline = time.time() + 60
        while "fks-allocator" not in httpx.get(f"{base}/ready").json()["models"] and time.time() < deadline:
            time.sleep(0.2)
        payload = {"dataframe_records": [{"symbol": "A", "close": 1.0}, {"symbol": "C", "close": 3.0}]}
        answer = httpx.post(
            f"{base}/invocations", params={"model": "fks-allocator"}, json=payload, headers=headers
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [
            {"symbol": "A", "weight": 0.5},
            {"symbol": "C", "weight": 0.5},
        ]
        wrong = httpx.post(
            f"{base}/v1/forecast",
            json={"model": "fks-allocator", "series": [{"symbol": "SPX"}]},
            headers=headers,
        )
        assert wrong.status_code == 422 and "not a forecaster" in wrong.json()["error"]
        names = {m["name"] for m in httpx.get(f"{base}/v1/models", headers=headers).json()}
        assert names == {NAME, "fks-allocator"}
