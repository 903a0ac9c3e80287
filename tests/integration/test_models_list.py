"""``fks models list`` and :func:`models.registry.list_versions`: versions, aliases, windows, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.registry import TAG_GATE_DECISION, list_versions, set_alias
from tests.serving_support import NAME, make_registry

pytestmark = pytest.mark.slow


def test_versions_are_listed_with_aliases_metrics_and_gate(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from flows.cli import app

    registry = make_registry(tmp_path)  # version 1 @challenger
    second = registry.log_version(seed=3)
    set_alias(NAME, "champion", second)
    client = MlflowClient()
    client.set_model_version_tag(NAME, second, "test_rmse", "0.0123")
    client.set_model_version_tag(NAME, second, TAG_GATE_DECISION, "promoted")
    listed = list_versions(NAME)
    assert [(v.version, v.aliases) for v in listed] == [(second, ("champion",)), ("1", ("challenger",))]
    assert listed[0].metrics == {"test_rmse": pytest.approx(0.0123)} and listed[0].gate == "promoted"
    assert listed[1].data_window == "1999-01-04..2018-12-28" and listed[1].gate is None
    with pytest.raises(LookupError, match=r"no registered model 'nope'; registered: fks-forecaster"):
        list_versions("nope")
    env = {
        "FKS_MLFLOW_TRACKING_URI": registry.tracking_uri,
        "FKS_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
    }
    runner = CliRunner()
    shown = runner.invoke(app, ["models", "list", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert [(r["version"], r["aliases"], r["gate"]) for r in rows] == [
        (second, ["champion"], "promoted"),
        ("1", ["challenger"], None),
    ]
    table = runner.invoke(app, ["models", "list"], env=env)
    assert table.exit_code == 0 and "champion" in table.output and "0.0123" in table.output
    unknown = runner.invoke(app, ["models", "list", "--model", "nope"], env=env)
    assert unknown.exit_code == 2 and "no registered model 'nope'" in unknown.output
