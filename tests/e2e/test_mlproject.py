"""`mlflow run . -e train_forecaster --env-manager local` trains and registers through the `fks` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from config.settings import PROJECT_ROOT

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FKS_DB_URL": f"sqlite:///{tmp_path / 'fks.db'}",
        "FKS_DATA_DIR": str(tmp_path / "data"),
        "FKS_MLFLOW_ARTIFACT_ROOT": str(tmp_path / "mlruns" / "artifacts"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
    }


def test_mlflow_run_entry_point_trains_and_registers(tmp_path: Path) -> None:
    env = _env(tmp_path)
    (tmp_path / "mlruns").mkdir()
    ingested = subprocess.run(
        [str(BIN / "fks"), "ingest", "--symbols", "GOOGL"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingested.returncode == 0, ingested.stderr
    refused = subprocess.run(
        [str(BIN / "fks"), "train", "forecaster", "--symbol", "MSFT"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "no stored bars for MSFT" in refused.stderr
    done = subprocess.run(
        [
            str(BIN / "mlflow"),
            "run",
            str(PROJECT_ROOT),
            "-e",
            "train_forecaster",
            "--env-manager",
            "local",
            "--experiment-name",
            "fks-forecaster",
            "-P",
            "symbol=GOOGL",
            "-P",
            "epochs=1",
            "-P",
            "folds=1",
            "-P",
            "lookback=10",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias("fks-forecaster", "challenger")
    run = client.get_run(version.run_id)
    assert run.data.params["symbol"] == "GOOGL" and run.data.params["lookback"] == "10"
    assert run.data.tags.get("mlflow.project.entryPoint") == "train_forecaster"  # the project's own run
