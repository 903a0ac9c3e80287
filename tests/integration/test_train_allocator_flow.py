"""`fks train allocator` and the `train-allocator` flow end to end: a synthetic universe stored in a
temporary FKS database, tiny budgets, a registered challenger, and bad input refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from config.flows import IngestConfig, InputError
from config.models import AllocatorConfig
from config.settings import Settings
from flows.ingest import ingest
from flows.train_allocator import train_allocator

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

SYMBOLS = ["SYA", "SYB", "SYC", "SYD", "SYE", "SYF"]
TINY = {
    "symbols": SYMBOLS,
    "timesteps": 512,
    "n_envs": 4,
    "n_steps": 64,
    "batch_size": 64,
    "n_epochs": 2,
    "eval_every": 256,
    "episode_length": 32,
    "window": 3,
    "seeds": (3,),
}
FKS = str(Path(sys.executable).with_name("fks"))


@pytest.fixture
def stored(settings: Settings) -> Settings:
    ingest(
        IngestConfig(
            source="synthetic",
            symbols=SYMBOLS,
            timeframe="1d",
            asset_class="crypto",
            start="2017-01-01",
            end="2020-06-01",
            seed=13,
        ),
        settings,
    )
    return settings


def _fks(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FKS_DB_URL": settings.db_url,
        "FKS_DATA_DIR": str(settings.data_dir),
        "FKS_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "FKS_MLFLOW_ARTIFACT_ROOT": str(settings.mlflow_artifact_root),
        "COLUMNS": "200",
    }
    return subprocess.run([FKS, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_flow_and_command_train_and_register_on_a_stored_universe(stored: Settings, tmp_path: Path) -> None:
    summary = train_allocator(AllocatorConfig(**TINY), stored, source="synthetic")
    assert summary.version == "1" and summary.alias == "challenger" and summary.source == "synthetic"
    assert list(summary.test) == ["agent", "equal_weight", "buy_and_hold", "min_variance", "max_sharpe"]
    assert summary.symbols == SYMBOLS and summary.seeds.keys() == {"3"}
    client = mlflow.MlflowClient(stored.mlflow_tracking_uri)
    run = client.get_run(summary.run_id)
    assert run.data.tags["data_source"] == "synthetic" and "test_agent_sharpe" in run.data.metrics

    done = _fks(stored, tmp_path, "train", "allocator", "--symbols", ",".join(SYMBOLS), "--quick",
                "--timesteps", "256", "--seed", "5", "--window", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Registered fks-allocator version 2 as @challenger" in done.stdout
    assert "equal_weight" in done.stdout and "max drawdown" in done.stdout
    mlflow.set_tracking_uri(stored.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model("models:/fks-allocator@challenger")
    assert model.unwrap_python_model().universe == tuple(SYMBOLS)


def test_bad_input_is_refused(stored: Settings, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no stored 1d bars for NOPE"):
        train_allocator(AllocatorConfig(**{**TINY, "symbols": ["SYA", "NOPE"]}), stored)
    refused = _fks(stored, tmp_path, "train", "allocator", "--symbols", "SYA", "--quick")
    assert refused.returncode == 2 and "at least two assets" in refused.stderr


def test_the_champion_forecaster_drives_an_allocation_beside_the_baselines(stored: Settings) -> None:
    from config.models import ForecasterConfig
    from flows.train_forecaster import train_forecaster
    from models.registry import set_alias

    small = ForecasterConfig(
        symbol="SYA", lookback=10, units=(4,), epochs=1, walk_forward={"folds": 1}, explain={"enabled": False}
    )
    forecaster = train_forecaster(small, stored)
    mlflow.set_tracking_uri(stored.mlflow_tracking_uri)
    set_alias("fks-forecaster", "champion", forecaster.version)
    summary = train_allocator(AllocatorConfig(**TINY), stored, source="synthetic")
    assert list(summary.test) == [
        "agent",
        "equal_weight",
        "buy_and_hold",
        "min_variance",
        "max_sharpe",
        "forecaster",
    ]
    driven = summary.test["forecaster"]
    assert driven["trades"] >= 1 and driven["costs_paid"] > 0  # it traded, net of the same costs
    run = mlflow.MlflowClient(stored.mlflow_tracking_uri).get_run(summary.run_id)
    assert "test_forecaster_sharpe" in run.data.metrics

    # the gate judges beside it too; listed alone, it is the baseline to beat
    from backtest.promotion import run_gate
    from config.backtest import PromoteConfig
    from tasks.store import store_for

    listed = PromoteConfig(family="allocator", model="fks-allocator", baselines=["forecaster"])
    gated = run_gate(listed, stored, engine=store_for(stored))
    assert gated.baseline_name == "forecaster" and gated.baseline_value is not None
    assert not gated.baseline_problems
    # without a champion forecaster, a gate told to beat it refuses and says why
    mlflow.MlflowClient(stored.mlflow_tracking_uri).delete_registered_model_alias(
        "fks-forecaster", "champion"
    )
    refused = run_gate(listed, stored, engine=store_for(stored))
    assert not refused.promoted and "forecaster" in refused.baseline_problems
