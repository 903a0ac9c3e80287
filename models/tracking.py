"""MLflow helpers every model family uses: the store, the experiment, params, commits, metrics.

One experiment per model family (``family.experiment``, ``fks-forecaster`` for the forecaster,
see :mod:`models.family`). A family's run logs its flattened config (:func:`flatten`), the git
commit (:func:`git_commit`), and whatever the family records (the forecaster's: see
:mod:`models.forecaster.tracking`); :class:`TrainingRecord` says where it landed::

    use_tracking(settings.mlflow_tracking_uri)
    experiment_id = ensure_experiment(settings.mlflow_tracking_uri, settings.mlflow_artifact_root,
                                      family.experiment)
    log_run_metrics(record.run_id, {"test_long_flat_sharpe": 0.4})
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class TrainingRecord:
    """Where a training run landed in MLflow."""

    run_id: str
    experiment_id: str
    model_uri: str
    registered_name: str
    version: str


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"a.b.c": "value"}`` strings, the way MLflow params want it."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(value) if isinstance(value, list | tuple) else str(value)}


def git_commit(root: Path | None = None) -> str:
    """The checked-out commit (``+dirty`` when the tree has changes), or ``unknown`` outside git."""
    cwd = root or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def use_tracking(tracking_uri: str) -> None:
    """Point MLflow (runs and the model registry) at the store ``tracking_uri``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)


def ensure_experiment(tracking_uri: str, artifact_root: Path, name: str) -> str:
    """Point MLflow at ``tracking_uri`` and return the experiment id of ``name`` (created if needed).

    On a local store (a path or ``sqlite:``) a new experiment keeps its artifacts under
    ``artifact_root / name``. ``name`` is a family's ``experiment``. Under ``mlflow run`` the run it
    opened is used only when it is in this experiment (see :func:`claim_launcher_run`).
    """
    import mlflow

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if "://" not in tracking_uri or tracking_uri.startswith("sqlite:"):
            location = (artifact_root.resolve() / name).as_uri()
        experiment_id = str(mlflow.create_experiment(name, artifact_location=location))
    else:
        experiment_id = str(experiment.experiment_id)
    claim_launcher_run(experiment_id, name)
    return experiment_id


PROJECT_TAGS = ("mlflow.project.", "mlflow.source.", "mlflow.gitRepoURL", "mlflow.user")
"""Tags (and tag prefixes) of a run ``mlflow run`` started that say which project and entry point ran."""

LAUNCHER_TAG = "fks.launcher_run_id"
"""Tag of a run started under ``mlflow run`` in another experiment: the run ``mlflow run`` opened."""


def claim_launcher_run(experiment_id: str, name: str) -> None:
    """Under ``mlflow run``, keep this process's runs in the experiment ``experiment_id`` (``name``).

    ``mlflow run . -e <entry point>`` opens a run before the entry point's command starts and hands
    it over in ``MLFLOW_RUN_ID``, in the experiment its caller named (``--experiment-name``), else
    ``Default`` with artifacts under ``./mlruns/0``. When that run is in this experiment, it is
    kept: the family's run is that run. When it is in another, it is left as it is, tagged with
    where the work went (``fks.experiment``), and the runs this process starts are new ones in
    this experiment (so under ``FKS_MLFLOW_ARTIFACT_ROOT`` on a local store) carrying the
    launcher's project tags (entry point, source, commit) and :data:`LAUNCHER_TAG`. Outside
    ``mlflow run`` (no ``MLFLOW_RUN_ID``) nothing changes.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return
    client = mlflow.MlflowClient()
    try:
        launcher = client.get_run(run_id)
    except MlflowException:
        return  # not a run of this store: start_run reports it
    if str(launcher.info.experiment_id) == experiment_id:
        return
    tags = {
        key: value
        for key, value in launcher.data.tags.items()
        if any(key == t or (t.endswith(".") and key.startswith(t)) for t in PROJECT_TAGS)
    }
    context = json.loads(os.environ.get("MLFLOW_RUN_CONTEXT") or "{}")
    os.environ["MLFLOW_RUN_CONTEXT"] = json.dumps({**context, **tags, LAUNCHER_TAG: run_id})
    del os.environ["MLFLOW_RUN_ID"]
    client.set_tag(run_id, "fks.experiment", name)
    client.set_tag(
        run_id,
        "mlflow.note.content",
        f"FKS logs this entry point's work in the experiment {name!r}, on the run(s) tagged "
        f"{LAUNCHER_TAG}={run_id}.",
    )


def log_run_metrics(run_id: str, metrics: Mapping[str, float]) -> None:
    """Log ``metrics`` on the finished run ``run_id``, skipping values that are not finite."""
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in metrics.items():
        if math.isfinite(value):
            client.log_metric(run_id, key, value)
