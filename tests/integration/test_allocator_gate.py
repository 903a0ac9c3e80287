"""`fks backtest` and the promotion gate for the allocator (`fks promote --model fks-allocator`):
versions walked forward through their own pyfuncs (on the test span that replays training's test
episode), beside the baselines on a window out of sample for both, net of costs; decisions
applied and recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from backtest.allocation import version_targets
from backtest.promotion import run_gate
from config.backtest import PromoteConfig
from config.flows import IngestConfig
from config.models import AllocatorConfig
from config.settings import Settings
from envs.data import align_assets
from features import get_feature_set
from flows.ingest import ingest
from models.allocator.service import load_universe, train_and_record
from models.allocator.training import costs_of, train_allocator
from models.registry import get_version_by_alias
from storage import list_promotions
from tasks.store import store_for

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

SYMBOLS = ("GA", "GB", "GC", "GD", "GE")
TINY = {
    "symbols": SYMBOLS,
    "timesteps": 768,
    "n_envs": 4,
    "n_steps": 64,
    "batch_size": 64,
    "n_epochs": 2,
    "eval_every": 256,
    "episode_length": 32,
    "window": 2,
    "rebalance_band": 0.02,
    "test_fraction": 0.15,
}
FKS = str(Path(sys.executable).with_name("fks"))


@pytest.fixture
def stored(settings: Settings) -> Settings:
    ingest(
        IngestConfig(
            source="synthetic",
            symbols=list(SYMBOLS),
            timeframe="1d",
            asset_class="crypto",
            start="2018-01-01",
            end="2020-09-01",
            seed=21,
        ),
        settings,
    )
    return settings


def _evaluate(result, bars=None):  # the test backtests, as the CLI's task passes them
    from backtest.allocation import evaluate_allocation

    return evaluate_allocation(result, bars)


def test_walk_forward_replays_the_test_episode_and_the_gate_judges_and_records(
    stored: Settings, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    engine = store_for(stored)
    config = AllocatorConfig(**TINY, seeds=(3,))
    first = train_and_record(config, stored, engine=engine, evaluate=_evaluate, source="synthetic")
    assert first.version == "1"

    # the registered pyfunc walked forward over its own test span replays training's test episode
    bars = load_universe(engine, SYMBOLS, "1d")
    result = train_allocator(bars, get_feature_set("minimal"), config)  # the same seed: the same agent
    mlflow.set_tracking_uri(stored.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model("models:/fks-allocator/1")
    aligned = align_assets(bars, get_feature_set("minimal"), timeframe="1d")
    rows = result.test_rows
    walked = version_targets(model, bars, aligned, rows, costs_of(config))
    assert walked.index.equals(result.test.targets.index)
    np.testing.assert_allclose(walked.to_numpy(), result.test.targets.to_numpy(), atol=1e-5)

    # no champion yet: judged against the best baseline, refused or promoted with its reasons
    summary = run_gate(PromoteConfig(family="allocator", model="fks-allocator"), stored, engine=engine)
    assert summary.challenger_version == "1" and summary.champion_version is None
    assert summary.baseline_name in {"buy and hold", "equal_weight", "min_variance", "max_sharpe"}
    assert summary.window.startswith(f"{result.windows['test'][0]:%Y-%m-%d}") and summary.reasons
    assert summary.challenger_value == pytest.approx(
        _evaluate(result).metrics["agent"]["sharpe"], abs=1e-3
    )  # the walk-forward is the test episode, with the gate's costs (the same here)
    forced = run_gate(
        PromoteConfig(family="allocator", model="fks-allocator", force=True), stored, engine=engine
    )
    assert forced.promoted and str(get_version_by_alias("fks-allocator", "champion").version) == "1"

    env = {
        **os.environ,
        "FKS_DB_URL": stored.db_url,
        "FKS_DATA_DIR": str(stored.data_dir),
        "FKS_MLFLOW_TRACKING_URI": stored.mlflow_tracking_uri,
        "FKS_MLFLOW_ARTIFACT_ROOT": str(stored.mlflow_artifact_root),
        "COLUMNS": "200",
    }

    def fks(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FKS, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )

    # fks backtest: the version walked forward over its test span beside the baselines, a tearsheet
    tested = fks("backtest", "--model", "fks-allocator@champion")
    assert tested.returncode == 0, tested.stderr
    assert "fks-allocator v1" in tested.stdout and "min_variance" in tested.stdout
    folders = Path(stored.data_dir) / "reports" / "backtests" / "fks-allocator-v1"
    (page,) = folders.glob("weights-*/tearsheet.html")
    assert f"Tearsheet: {page}" in tested.stdout
    html = page.read_text(encoding="utf-8")  # the trades name the universe's symbols
    assert any(f"<td>{s}</td>" in html for s in SYMBOLS) or "No trades." in html
    assert summary.tearsheet and Path(summary.tearsheet).is_file()  # the gate's own evidence
    assert Path(summary.tearsheet).parent.name.startswith("gate-weights-")
    backtested = mlflow.MlflowClient(stored.mlflow_tracking_uri).get_run(first.run_id).data.metrics
    assert backtested["backtest_sharpe"] == pytest.approx(first.test["agent"]["sharpe"], abs=1e-3)

    # a second version is compared with the champion on the same window, through the CLI
    second = train_and_record(
        AllocatorConfig(**TINY, seeds=(4,)), stored, engine=engine, evaluate=_evaluate, source="synthetic"
    )
    assert second.version == "2"
    done = subprocess.run(
        [FKS, "promote", "--model", "fks-allocator", "--min-trades", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode in (0, 4), done.stderr
    assert "fks-allocator v2 vs champion v1" in done.stdout
    with engine.connect() as conn:
        records = list_promotions(conn, model_name="fks-allocator")
    assert len(records) == 3
    latest = max(records, key=lambda r: r.id)
    assert latest.challenger_version == "2" and latest.champion_version == "1"
    assert latest.champion_value is not None and latest.baseline_name, latest.reasons
    assert latest.tearsheet and f"Tearsheet: {latest.tearsheet}" in done.stdout
