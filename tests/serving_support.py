"""What the REST service's integration tests share: a registry with a tiny forecaster, a real
uvicorn server on loopback, and bar payloads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from config.models import ForecasterConfig
from config.settings import Settings
from features import build_features, get_feature_set
from market.bars import canonical_bars
from providers.csv import parse_bars_csv

REPO = Path(__file__).resolve().parents[1]
LOOKBACK = 10
NAME = "fks-forecaster"
TRAIN_ROWS = 3000
"""The tiny forecaster's scaler (and training reference) covers SPX rows min_history..3000."""


def free_port() -> int:
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
        from models.reference import log_reference
        from models.registry import register
        from models.seeding import seed_everything

        feature_set = get_feature_set("minimal")
        bars = canonical_bars(self.spx)
        features = build_features(bars, feature_set, timeframe="1d")
        train = features.iloc[feature_set.min_history : TRAIN_ROWS]
        scaler = FeatureScaler(clip=10.0).fit(train)
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
            log_reference(train)
        return register(info.model_uri, NAME, tags={"data_window": "1999-01-04..2018-12-28"})


def make_registry(root: Path) -> Registry:
    """An MLflow store with one tiny forecaster at @challenger, and SPX daily bars in the FKS store."""
    import mlflow

    from models.registry import set_alias
    from storage import open_store, upsert_bars

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


@contextmanager
def running(settings: Settings) -> Iterator[str]:
    """A real uvicorn server on loopback over ``create_app(settings)``, ready; yields its URL."""
    import uvicorn

    from serving.app import create_app

    port = free_port()
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


def bars_json(raw: pd.DataFrame) -> list[dict[str, Any]]:
    """Bars as the REST service takes them."""
    return [
        {"ts": t.isoformat(), "open": o, "high": h, "low": lo, "close": c, "volume": v}
        for t, o, h, lo, c, v in raw[["ts", "open", "high", "low", "close", "volume"]].itertuples(index=False)
    ]


def served_pyfunc(registry: Registry, version: str) -> Any:
    """The registered pyfunc of ``version``, loaded as MLflow clients load it."""
    import mlflow

    mlflow.set_tracking_uri(registry.tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")


def need() -> int:
    """Bars the tiny forecaster needs (``min_bars``)."""
    return get_feature_set("minimal").min_history + LOOKBACK - 1
