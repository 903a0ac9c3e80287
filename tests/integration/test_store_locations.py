"""No store depends on the working directory: a process started in one folder writes the database,
the Parquet lake and the MLflow store, and commands started in other folders, with the same
settings, find the very same stores (and nothing is created where they were started)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import mlflow, pandas as pd
from config.settings import get_settings
from storage import open_store, upsert_bars
from storage.lake import export_series, open_lake

settings = get_settings()
index = pd.date_range("2024-01-01", periods=5, freq="D", tz="UTC", name="ts")
bars = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}, index=index)
engine = open_store(settings.db_url)
with engine.begin() as conn:
    upsert_bars(conn, "WHERE-TEST", "1d", bars, source="csv")
with engine.connect() as conn:
    export_series(open_lake(settings.lake_uri), conn, "WHERE-TEST", "1d")
mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
mlflow.create_experiment("where-test", artifact_location=settings.mlflow_artifact_root.as_uri())
"""

READER = """
import mlflow
from config.settings import get_settings
from storage import open_store, read_bars
from storage.lake import open_lake

settings = get_settings()
assert len(read_bars(open_store(settings.db_url), "WHERE-TEST", "1d")) == 5
assert len(open_lake(settings.lake_uri).read("WHERE-TEST", "1d")) == 5
mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
assert mlflow.get_experiment_by_name("where-test") is not None
print("found")
"""


@pytest.mark.parametrize("data_dir", [None, "runtime"], ids=["defaults", "relative-data-dir"])
def test_commands_from_other_folders_find_the_same_stores(tmp_path: Path, data_dir: str | None) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FKS_") and k != "MLFLOW_TRACKING_URI"}
    env.update({"FKS_HOME": str(home), "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    if data_dir is not None:
        env["FKS_DATA_DIR"] = data_dir
    folders = [tmp_path / "one", tmp_path / "two" / "deeper", tmp_path / "three"]
    for folder in folders:
        folder.mkdir(parents=True)

    def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)

    wrote = run([sys.executable, "-c", WRITER], folders[0])
    assert wrote.returncode == 0, wrote.stderr
    read = run([sys.executable, "-c", READER], folders[1])
    assert read.returncode == 0 and "found" in read.stdout, read.stderr
    listed = run([sys.executable, "-m", "flows.cli", "data", "list"], folders[2])
    assert listed.returncode == 0, listed.stderr
    assert "WHERE-TEST" in listed.stdout

    data = home / (data_dir or "data")
    assert (data / "fks.db").is_file()
    assert list((data / "lake").rglob("*.parquet"))
    assert (home / "mlruns" / "mlflow.db").is_file()
    for folder in folders:  # nothing was written where the commands were started
        assert not any(folder.iterdir()), sorted(folder.rglob("*"))
