"""The team setup on loopback: the same `fks` code against the stack of docker-compose.yml.

- the FKS database on PostgreSQL (a fresh database on the ``TEST_POSTGRES_URL`` server);
- an MLflow tracking server (``mlflow server``) whose backend store is another fresh PostgreSQL
  database and whose artifacts go to S3 (``--artifacts-destination s3://...``), served through it
  (``mlflow-artifacts:/``): the `fks` processes get no S3 endpoint for MLflow, only its URL;
- the Parquet lake on the same S3 (a moto server in server mode stands in for MinIO or AWS);
- the session's Prefect server (``PREFECT_API_URL``).

`fks pipeline` then `fks lake export` run as a user runs them, configured only by ``FKS_`` variables
(named from :class:`config.settings.Settings`'s fields, so a renamed setting breaks this test), and
the test looks where the settings say things are: the registry and aliases on the MLflow server,
its runs in its PostgreSQL database, the artifacts, the feature builds and the lake's Parquet
objects in the bucket (the lake's rows equal to the stored bars), bars and runs in the FKS
database, the flow runs on the Prefect server, and nothing in a local ``mlruns`` or ``mlartifacts``
folder.

Skips when ``TEST_POSTGRES_URL`` is unset (``make test`` and ``.ci/run`` start a throwaway server).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from config.settings import Settings
from tests.desk_support import REPO

pytestmark = pytest.mark.slow

BUCKET = "fks-team"
MLFLOW_PREFIX = "mlflow"
LAKE_PREFIX = "lake"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
MODELS = ("fks-forecaster", "fks-allocator")


SMALL_PIPELINE = """\
forecaster: {lookback: 10, units: [4], epochs: 1, walk_forward: {folds: 1}}
allocator:
  train: {timesteps: 256, n_envs: 4, n_steps: 64, batch_size: 64, eval_every: 128}
"""


def fks_env(**values: str) -> dict[str, str]:
    """``FKS_<FIELD>`` variables for fields of :class:`Settings` (a field that no longer exists fails)."""
    unknown = sorted(set(values) - set(Settings.model_fields))
    assert not unknown, f"not Settings fields: {unknown}"
    return {f"FKS_{name.upper()}": value for name, value in values.items()}


def _inherited() -> dict[str, str]:
    """This process's environment without anything that points at a store: no AWS, MLflow or FKS
    variables leak into the servers and commands this test starts."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "FKS_"))}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class Stack:
    """The running servers: ``mlflow server`` (its URL, its backend database, the folder it runs in)
    and the session's Prefect server (its API URL)."""

    mlflow_url: str
    mlflow_backend_url: str
    mlflow_cwd: Path
    prefect_api_url: str


@pytest.fixture
def s3(s3_endpoint: str) -> Iterator[object]:
    """A boto3 client of the moto server and an empty bucket for MLflow's artifacts and the lake."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client
    finally:
        for key in _keys(client, ""):
            client.delete_object(Bucket=BUCKET, Key=key)
        client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def stack(
    fresh_postgres: Callable[[str], str],
    s3: object,
    s3_endpoint: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    """``mlflow server`` on a free loopback port (PostgreSQL backend store, artifacts proxied to S3)
    and the session's Prefect server, asked for once MLflow's is starting so that the two start
    together (and neither when the test skips for want of PostgreSQL)."""
    backend = fresh_postgres("mlflow")
    cwd = tmp_path / "mlflow-server"
    cwd.mkdir()
    port = _free_port()
    # no GenAI job runner (a consumer process with five workers): FKS does not use it
    env = {
        **_inherited(),
        **CREDENTIALS,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend,
        "--artifacts-destination", f"s3://{BUCKET}/{MLFLOW_PREFIX}",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = (cwd / "server.log").open("w")
    server = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        prefect_api_url: str = request.getfixturevalue("prefect_server")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(cwd / 'server.log').read_text()[-4000:]}")
            time.sleep(0.5)
        yield Stack(
            mlflow_url=url, mlflow_backend_url=backend, mlflow_cwd=cwd, prefect_api_url=prefect_api_url
        )
    finally:
        _stop_group(server)
        log.close()


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """End ``process`` and every process it started (its own session): SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):  # uvicorn, started by `mlflow server`, may linger
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _keys(client: object, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _fks(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_pipeline_on_postgresql_an_mlflow_server_and_s3(
    stack: Stack, fresh_postgres: Callable[[str], str], s3: object, s3_endpoint: str, tmp_path: Path
) -> None:
    db_url = fresh_postgres("fks")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    env = {
        **_inherited(),
        # only the lake (bars and feature builds) talks to S3 itself; MLflow's artifacts go through the
        # tracking server
        **CREDENTIALS,
        **fks_env(
            db_url=db_url,
            data_dir=str(client_dir / "data"),
            mlflow_tracking_uri=stack.mlflow_url,
            lake_uri=f"s3://{BUCKET}/{LAKE_PREFIX}",
            s3_endpoint_url=s3_endpoint,
        ),
        "PREFECT_API_URL": stack.prefect_api_url,
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",
    }
    # the default stages with small models: the stack is under test here, not the models
    small = tmp_path / "small.yaml"
    small.write_text(SMALL_PIPELINE)
    began = datetime.now(UTC)
    done = _fks(["pipeline", "--config", str(small)], env, client_dir, timeout=450)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    exported = _fks(["lake", "export"], env, client_dir, timeout=180)
    assert exported.returncode == 0, exported.stdout[-3000:] + exported.stderr[-3000:]
    for name in MODELS:
        assert f"Registered {name} version 1 as @challenger" in done.stdout
    assert f"the MLflow UI at {stack.mlflow_url}" in done.stdout

    # the registry and the runs live on the tracking server, in its PostgreSQL database
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
    artifact_roots: dict[str, str] = {}
    for name in MODELS:
        assert set(mlflow.get_registered_model(name).aliases.values()) == {"1"}
        version = mlflow.get_model_version(name, "1")
        run = mlflow.get_run(str(version.run_id))
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
        artifact_roots[f"{name} run"] = run.info.artifact_uri
        model_id = version.model_id or str(version.source).removeprefix("models:/")
        assert model_id.startswith("m-"), (name, version.source)
        artifact_roots[f"{name} model"] = mlflow.get_logged_model(model_id).artifact_location
    # the pipeline's gate decided and tagged the version; its record is in FKS's database (below)
    decision = mlflow.get_model_version("fks-forecaster", "1").tags["gate_decision"]
    assert decision in {"refused", "promoted"}
    backend = create_engine(stack.mlflow_backend_url)
    with backend.connect() as conn:
        registered = {r[0] for r in conn.execute(text("SELECT name FROM registered_models"))}
        runs = conn.execute(text("SELECT COUNT(*) FROM runs WHERE status = 'FINISHED'")).scalar_one()
    backend.dispose()
    assert registered == set(MODELS) and runs >= 2

    # the artifacts are in the bucket under --artifacts-destination, and nowhere on local disk
    keys = set(_keys(s3, f"{MLFLOW_PREFIX}/"))
    for what, root in artifact_roots.items():
        prefix = f"{MLFLOW_PREFIX}/{root.removeprefix('mlflow-artifacts:/').strip('/')}/"
        under = {k.removeprefix(prefix) for k in keys if k.startswith(prefix)}
        expected = "MLmodel" if what.endswith("model") else "config.json"
        assert expected in under, (what, root, sorted(under)[:20])
    forecaster_run = artifact_roots["fks-forecaster run"].removeprefix("mlflow-artifacts:/").strip("/")
    assert f"{MLFLOW_PREFIX}/{forecaster_run}/reference/train_features.parquet" in keys
    reference = mlflow.download_artifacts(
        str(mlflow.get_model_version("fks-forecaster", "1").run_id),
        "reference/train_features.parquet",
        str(tmp_path),
    )
    assert len(pd.read_parquet(reference)) > 100  # read back through the server, no S3 endpoint here
    for folder in (client_dir, stack.mlflow_cwd):
        assert not (folder / "mlruns").exists() and not (folder / "mlartifacts").exists()

    # bars, runs, features and the gate's record are in the FKS database on PostgreSQL
    store = create_engine(db_url)
    with store.connect() as conn:
        stored = {
            (r[0], r[1]): r[2]
            for r in conn.execute(
                text("SELECT symbol, timeframe, COUNT(*) FROM bars GROUP BY symbol, timeframe")
            )
        }
        run_states = {r[0] for r in conn.execute(text("SELECT DISTINCT status FROM ingest_runs"))}
        build_uris = {str(r[0]) for r in conn.execute(text("SELECT path FROM feature_builds"))}
        gates = conn.execute(text("SELECT model_name, decision FROM promotions")).all()
    store.dispose()
    assert {"SPX", "GOOGL", "EURUSD", "SYNA", "SYNH"} <= {symbol for symbol, _ in stored}
    sample_rows = len((REPO / "data" / "samples" / "sp500_daily.csv").read_text().splitlines()) - 1
    assert stored[("SPX", "1d")] == sample_rows
    assert run_states == {"success"} and len(build_uris) >= 3
    assert [(str(m), str(d)) for m, d in gates] == [("fks-forecaster", decision)]

    # the lake's Parquet objects are in the bucket under the lake URI: the feature builds, each at the
    # full URI its feature_builds row records (none under the local data dir), and the bars' partitions,
    # holding exactly the stored bars
    lake_keys = _keys(s3, f"{LAKE_PREFIX}/")
    feature_keys = {k for k in lake_keys if k.startswith(f"{LAKE_PREFIX}/features/")}
    assert {f"s3://{BUCKET}/{k}" for k in feature_keys} == build_uris
    assert not (client_dir / "data" / "features").exists()
    lake_keys = [k for k in lake_keys if k not in feature_keys]
    assert lake_keys and all(k.endswith("/bars.parquet") for k in lake_keys)
    assert f"{LAKE_PREFIX}/symbol=SPX/timeframe=1d/date=2018/bars.parquet" in lake_keys
    in_lake: dict[tuple[str, str], int] = {}
    for key in lake_keys:
        parts = dict(p.split("=", 1) for p in key.split("/")[1:-1])
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()  # type: ignore[attr-defined]
        series = (parts["symbol"], parts["timeframe"])
        in_lake[series] = in_lake.get(series, 0) + pq.read_table(io.BytesIO(body)).num_rows
    assert in_lake == stored

    # the flows ran on the session's Prefect server
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )

    with get_client(sync_client=True) as prefect:
        flows = {
            f.id: f.name
            for f in prefect.read_flows(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["pipeline", "lake-export"]))
            )
        }
        flow_runs = prefect.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(flows.values()))),
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=began)),
        )
    finished = {(flows[r.flow_id], r.state.type.value if r.state else "") for r in flow_runs}
    assert {("pipeline", "COMPLETED"), ("lake-export", "COMPLETED")} <= finished, finished
