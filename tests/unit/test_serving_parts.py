"""The REST service's parts on their own: the predictions writer (never blocks, drops and counts
when full, survives a failing store), the feature cache, and the challenger's traffic draw."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine

from config.settings import Settings
from serving.cache import LRUCache
from serving.recorder import PredictionWriter
from serving.scoring import share_draw
from serving.state import ServiceState
from storage import open_store
from storage.predictions import Prediction, list_predictions, served_features


def _row(i: int, *, shadow: bool = False) -> Prediction:
    return Prediction(
        request_id=f"r{i}",
        model="m",
        version="1",
        alias="champion",
        symbol="SPX",
        bar_ts=pd.Timestamp("2024-01-02", tz="UTC") + pd.Timedelta(days=i),
        output={"forecast_log_return": 0.001 * i, "prob_up": 0.5},
        features={"a": float(i), "b": -float(i)},
        latency_ms=1.5,
        key_id=3,
        shadow=shadow,
    )


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_store(f"sqlite:///{tmp_path / 'fks.db'}")


def test_writer_stores_every_row(engine: Engine) -> None:
    writer = PredictionWriter(lambda: engine, capacity=100, batch_size=7)
    writer.offer([_row(i) for i in range(30)])
    writer.offer([_row(99, shadow=True)])
    assert writer.flush()
    writer.close()
    with engine.connect() as conn:
        rows = list_predictions(conn, model="m")
        features = served_features(conn, "m")
        with_shadow = served_features(conn, "m", include_shadow=True)
    assert len(rows) == 31 and writer.written == 31 and writer.dropped == 0
    assert list(rows["request_id"][:3]) == ["r0", "r1", "r2"]
    assert rows.iloc[5]["output"] == {"forecast_log_return": 0.005, "prob_up": 0.5}
    assert rows.iloc[5]["bar_ts"] == pd.Timestamp("2024-01-07", tz="UTC") and rows.iloc[5]["key_id"] == 3
    assert len(features) == 30 and len(with_shadow) == 31 and list(features.columns) == ["a", "b"]


def test_a_full_queue_drops_and_counts_without_blocking(engine: Engine) -> None:
    release = threading.Event()
    entered = threading.Event()

    def stuck() -> Engine:  # the store hangs: the writer thread waits here
        entered.set()
        release.wait(30)
        return engine

    dropped: list[int] = []
    writer = PredictionWriter(stuck, capacity=5, on_drop=dropped.append)
    writer.offer([_row(0)])
    assert entered.wait(10)  # the writer holds row 0 and is stuck in the store
    offered = threading.Thread(target=writer.offer, args=([_row(i) for i in range(1, 21)],))
    offered.start()
    offered.join(10)
    assert not offered.is_alive(), "offer blocked on a full queue"
    assert writer.dropped == 15 and sum(dropped) == 15
    release.set()
    assert writer.flush()
    with engine.connect() as conn:
        assert len(list_predictions(conn)) == 6  # row 0 and the five that fitted


def test_a_failing_store_counts_drops_and_the_writer_goes_on(engine: Engine, tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky() -> Engine:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("database is locked")
        return engine

    writer = PredictionWriter(flaky, capacity=100)
    writer.offer([_row(1)])
    assert writer.flush()
    writer.offer([_row(2)])
    assert writer.flush()
    assert writer.dropped == 1 and writer.written == 1


def test_service_metrics_count_dropped_predictions(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'fks.db'}", serve_prediction_queue=1
    )
    state = ServiceState(settings, [])
    state.writer._start = lambda: None  # type: ignore[method-assign]  # no writer thread: the queue stays full
    state.writer.offer([_row(i) for i in range(20)])
    text = generate_latest(state.metrics.registry).decode()
    assert "fks_predictions_dropped_total 19.0" in text


def test_lru_cache_keeps_the_newest_and_counts() -> None:
    cache = LRUCache(2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # a is now newer than b
    cache["c"] = 3
    assert set(cache) == {"a", "c"} and cache.get("b") is None
    assert (cache.hits, cache.misses) == (1, 1)
    with pytest.raises(ValueError, match="cache size"):
        LRUCache(0)


def test_share_draw_is_uniform_and_fixed_by_the_request_id() -> None:
    import random
    import uuid

    rng = random.Random(11)
    draws = [share_draw(uuid.UUID(int=rng.getrandbits(128), version=4).hex) for _ in range(4000)]
    assert all(0 <= d < 1 for d in draws)
    assert 0.45 < sum(d < 0.5 for d in draws) / len(draws) < 0.55
    assert share_draw("80000000" + "0" * 24) == 0.5
