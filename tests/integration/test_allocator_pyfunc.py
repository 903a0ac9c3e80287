"""The allocator's MLflow run and registered pyfunc: one answer per question (the registered model's
weights at the test span's last bars are those training evaluated), its records, and its refusals."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from backtest.allocation import evaluate_allocation
from config.models import AllocatorConfig
from features import get_feature_set
from models.allocator.report import AllocationReport
from models.allocator.tracking import log_training
from models.allocator.training import AllocatorResult, train_allocator
from models.registry import get_version_by_alias
from models.tracking import TrainingRecord
from providers.synthetic import SyntheticMarket, simulate

pytestmark = pytest.mark.slow

SYMBOLS = ("S0", "S1", "S2", "S3", "S4")
TINY = {
    "symbols": SYMBOLS,
    "timesteps": 1024,
    "n_envs": 4,
    "n_steps": 64,
    "batch_size": 64,
    "n_epochs": 2,
    "eval_every": 512,
    "episode_length": 32,
    "window": 4,
    "seeds": (3,),
    "rebalance_band": 0.01,
}


def _bars() -> dict[str, pd.DataFrame]:
    market = SyntheticMarket(seed=5, symbols=SYMBOLS, calendar="24/7", origin="2017-01-01")
    return simulate(market, "1d", end="2020-06-01")


class Logged:
    def __init__(self, result: AllocatorResult, report: AllocationReport, record: TrainingRecord, uri: str):
        self.result, self.report, self.record, self.uri = result, report, record, uri


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Logged:
    torch.set_num_threads(1)
    root: Path = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    bars = _bars()
    result = train_allocator(bars, get_feature_set("minimal"), AllocatorConfig(**TINY))
    report = evaluate_allocation(result)
    record = log_training(
        result, report, bars=bars, tracking_uri=uri, artifact_root=root / "artifacts", source="synthetic"
    )
    return Logged(result, report, record, uri)


def _request(bars: dict[str, pd.DataFrame], until: pd.Timestamp, rows: int, held: pd.Series) -> pd.DataFrame:
    """What a client sends: the last ``rows`` raw bars of each symbol up to ``until`` and its weight."""
    pieces = []
    for symbol in SYMBOLS:
        frame = bars[symbol].loc[:until].iloc[-rows:].reset_index()
        frame["ts"] = frame["ts"].map(lambda t: t.isoformat())
        frame.insert(0, "symbol", symbol)
        frame["weight"] = float(held[symbol])
        pieces.append(frame)
    return pd.concat(pieces, ignore_index=True)


def test_registered_pyfunc_answers_what_training_evaluated(logged: Logged) -> None:
    mlflow.set_tracking_uri(logged.uri)
    model = mlflow.pyfunc.load_model("models:/fks-allocator@challenger")
    inner = model.unwrap_python_model()
    assert inner.min_bars == 380 + 4 - 1 and inner.universe == SYMBOLS
    bars, test = _bars(), logged.result.test
    for when in test.decisions.index[-3:]:
        for rows in (inner.min_bars, inner.min_bars + 150):
            answer = model.predict(_request(bars, when, rows, test.held.loc[when]))
            assert list(answer.columns) == ["symbol", "ts", "weight"]
            assert list(answer["symbol"]) == [*SYMBOLS, "CASH"]
            assert set(answer["ts"]) == {when.isoformat()}
            np.testing.assert_allclose(
                answer["weight"].to_numpy(), test.decisions.loc[when].to_numpy(), atol=1e-5, rtol=0
            )
    # no weight column: all cash, as an episode's first bar
    first = test.decisions.index[0]
    request = _request(bars, first, inner.min_bars, test.held.loc[first]).drop(columns=["weight"])
    np.testing.assert_allclose(
        model.predict(request)["weight"].to_numpy(), test.decisions.loc[first].to_numpy(), atol=1e-5
    )


def test_refusals_say_what_is_wrong(logged: Logged) -> None:
    mlflow.set_tracking_uri(logged.uri)
    model = mlflow.pyfunc.load_model(logged.record.model_uri)
    inner = model.unwrap_python_model()
    bars, test = _bars(), logged.result.test
    when = test.decisions.index[-1]
    good = _request(bars, when, inner.min_bars, test.held.loc[when])
    with pytest.raises(ValueError, match="missing S4"):
        model.predict(good[good["symbol"] != "S4"])
    with pytest.raises(ValueError, match=r"got 100 bars, the allocator needs at least 383 1d bars"):
        model.predict(_request(bars, when, 100, test.held.loc[when]))
    hourly = SyntheticMarket(seed=1, symbols=SYMBOLS, calendar="24/7", origin="2020-01-01")
    hours = simulate(hourly, "1h", end="2020-02-01")
    with pytest.raises(ValueError, match=r"these are 1h bars.*trained on 1d bars"):
        model.predict(_request(hours, hours["S0"].index[-1], inner.min_bars, test.held.loc[when]))
    bad = good.copy()
    bad["weight"] = "lots"
    with pytest.raises(ValueError, match="column weight at row 0 holds 'lots'"):
        model.predict(bad)


def test_run_records_config_curves_figures_plots_and_card(logged: Logged) -> None:
    client = mlflow.MlflowClient(logged.uri)
    run = client.get_run(logged.record.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "fks-allocator"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["symbols"] == '["S0", "S1", "S2", "S3", "S4"]' and params["seeds"] == "[3]"
    assert params["seed_kept"] == "3" and params["min_bars"] == "383"
    assert tags["data_source"] == "synthetic" and tags["symbols"] == "S0,S1,S2,S3,S4" and tags["git_commit"]
    for strategy in ("agent", "equal_weight", "buy_and_hold", "min_variance", "max_sharpe"):
        for key in ("total_return", "sharpe", "max_drawdown", "turnover", "costs_paid"):
            assert f"test_{strategy}_{key}" in metrics
    assert metrics["test_agent_sharpe"] == pytest.approx(logged.report.metrics["agent"]["sharpe"])
    val = client.get_metric_history(logged.record.run_id, "val_reward")
    train = client.get_metric_history(logged.record.run_id, "train_reward")
    assert [m.step for m in val] == [s for s, _ in logged.result.agent.val_rewards] and len(train) >= 2
    plots = {a.path for a in client.list_artifacts(logged.record.run_id, "plots")}
    assert plots == {
        "plots/weights.png",
        "plots/equity_vs_baselines.png",
        "plots/turnover.png",
        "plots/learning_curve.png",
    }
    card = Path(client.download_artifacts(logged.record.run_id, "model_card.md")).read_text()
    assert "Intended use" in card and "max_sharpe" in card and "synthetic" in card and "Limits" in card
    artifacts = {a.path for a in client.list_artifacts(logged.record.run_id)}
    assert {"model_card.md", "config.json", "metrics.json", "predictions", "reference"} <= artifacts
    mlflow.set_tracking_uri(logged.uri)
    version = get_version_by_alias("fks-allocator", "challenger")
    assert version is not None and str(version.version) == logged.record.version
    assert AllocatorConfig.model_validate_json(version.tags["config"]) == AllocatorConfig(**TINY)
    assert "test_sharpe" in version.tags and "test_equal_weight_sharpe" in version.tags


def test_rest_service_allocates_as_the_registered_pyfunc(logged: Logged, tmp_path: Path) -> None:
    # One answer per question: POST /v1/allocate (a real uvicorn server) answers what training
    # decided at the test span's last bar, from sent bars and from the bars stored in FKS.
    import httpx

    from config.settings import Settings
    from market.bars import canonical_bars
    from models.registry import set_alias
    from storage import open_store, upsert_bars
    from tests.serving_support import bars_json, running

    mlflow.set_tracking_uri(logged.uri)
    set_alias("fks-allocator", "champion", logged.record.version)
    model = mlflow.pyfunc.load_model("models:/fks-allocator@champion")
    need = model.unwrap_python_model().min_bars
    bars, test = _bars(), logged.result.test
    when = test.decisions.index[-1]
    held = test.held.loc[when]
    db_url = f"sqlite:///{tmp_path / 'fks.db'}"
    engine = open_store(db_url)
    with engine.begin() as conn:
        for symbol in SYMBOLS:
            upsert_bars(conn, symbol, "1d", canonical_bars(bars[symbol].loc[:when]), source="synthetic")
    engine.dispose()
    settings = Settings(
        data_dir=tmp_path, db_url=db_url, mlflow_tracking_uri=logged.uri, serve_models=[],
        serve_auth=False, serve_poll_interval_s=0.5,
    )  # fmt: skip
    weights = {s: float(held[s]) for s in SYMBOLS}
    sent = {
        "universe": [
            {"symbol": s, "bars": bars_json(bars[s].loc[:when].iloc[-need:].reset_index())} for s in SYMBOLS
        ],
        "weights": weights,
    }
    stored = {"universe": [{"symbol": s} for s in SYMBOLS], "weights": weights}
    with running(settings) as url:
        deadline = time.time() + 60
        while "fks-allocator" not in httpx.get(f"{url}/ready").json()["models"] and time.time() < deadline:
            time.sleep(0.2)
        for body in (sent, stored):
            answer = httpx.post(f"{url}/v1/allocate", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            out = answer.json()
            assert (out["model"], out["alias"], out["ts"]) == ("fks-allocator", "champion", when.isoformat())
            assert [w["symbol"] for w in out["weights"]] == [*SYMBOLS, "CASH"]
            np.testing.assert_allclose(
                [w["weight"] for w in out["weights"]], test.decisions.loc[when].to_numpy(), atol=1e-5, rtol=0
            )
        missing = httpx.post(
            f"{url}/v1/allocate", json={**stored, "universe": stored["universe"][:3]}, timeout=60
        )
        assert missing.status_code == 422 and "S3" in missing.json()["error"]
