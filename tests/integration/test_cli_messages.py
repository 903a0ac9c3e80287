"""What the ``fks`` command tells a user: each message names the command to type (never a Python
call), whole (no stray quote); ``fks backtest --threshold --history``; and an MLproject entry point
run the way ``mlflow run`` runs it, without ``--experiment-name``, lands in the family's experiment
under ``FKS_MLFLOW_ARTIFACT_ROOT``.

One forecaster is trained for the module, by the ``train_forecaster`` entry point's own command.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import yaml
from typer.testing import CliRunner, Result

from config.settings import PROJECT_ROOT, Settings
from flows.cli._ui import message

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

PYTHON_NAMES = re.compile(
    r"list_quarantine|set_alias|open_account|initial_cash=|load_risk_config|resolve_model|mlflow\.\w+\("
)


@dataclass
class Desk:
    env: dict[str, str]
    settings: Settings
    launcher_run_id: str
    version: str

    def fks(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        return CliRunner().invoke(_app(), list(args), env={**self.env, **(env or {})})


def _app():  # type: ignore[no-untyped-def]
    from flows.cli import app

    return app


def entry_point_args(name: str, **params: str) -> list[str]:
    """The ``fks`` arguments of MLproject entry point ``name`` with ``params`` over its defaults, as
    ``mlflow run`` formats its command."""
    spec = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"][name]
    values = {k: str(v.get("default", "")) for k, v in spec.get("parameters", {}).items()} | params
    words = shlex.split(spec["command"].format(**values))
    assert words[0] == "fks"
    return words[1:]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    from config.flows import IngestConfig
    from flows.ingest import ingest

    root = tmp_path_factory.mktemp("cli-messages")
    settings = Settings(
        data_dir=root / "data",
        db_url=f"sqlite:///{root / 'fks.db'}",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        mlflow_artifact_root=root / "artifacts",
    )
    env = {
        "FKS_DATA_DIR": str(settings.data_dir),
        "FKS_DB_URL": settings.db_url,
        "FKS_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "FKS_MLFLOW_ARTIFACT_ROOT": str(settings.mlflow_artifact_root),
        "COLUMNS": "200",
    }
    ingest(IngestConfig(symbols=["GOOGL"]), settings)
    # what `mlflow run . -e train_forecaster` does before the command: a run in the experiment
    # named on its command line, `Default` when none, handed over in MLFLOW_RUN_ID
    (root / "mlruns").mkdir(exist_ok=True)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    launcher = client.create_run(
        "0",
        tags={
            "mlflow.project.entryPoint": "train_forecaster",
            "mlflow.source.type": "PROJECT",
            "mlflow.source.name": str(PROJECT_ROOT),
        },
    )
    run_id = launcher.info.run_id
    args = entry_point_args("train_forecaster", symbol="GOOGL", epochs="1", folds="1", lookback="10")
    desk = Desk(env=env, settings=settings, launcher_run_id=run_id, version="")
    trained = desk.fks(
        *args, env={"MLFLOW_RUN_ID": run_id, "MLFLOW_EXPERIMENT_ID": "0", "MLFLOW_RUN_CONTEXT": None}
    )
    assert trained.exit_code == 0, trained.output
    desk.version = client.get_model_version_by_alias("fks-forecaster", "challenger").version
    yield desk


def test_an_entry_point_without_experiment_name_trains_in_the_family_experiment(desk: Desk) -> None:
    client = mlflow.MlflowClient(desk.settings.mlflow_tracking_uri)
    version = client.get_model_version("fks-forecaster", desk.version)
    run = client.get_run(version.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "fks-forecaster"
    root = desk.settings.mlflow_artifact_root.resolve()
    assert experiment.artifact_location == (root / "fks-forecaster").as_uri()
    assert run.info.artifact_uri.startswith((root / "fks-forecaster").as_uri())
    tags = run.data.tags
    assert tags["mlflow.project.entryPoint"] == "train_forecaster"  # the project's run, by its tags
    assert tags["fks.launcher_run_id"] == desk.launcher_run_id
    launcher = client.get_run(desk.launcher_run_id)
    assert launcher.info.experiment_id == "0" and launcher.data.tags["fks.experiment"] == "fks-forecaster"
    assert not client.list_artifacts(desk.launcher_run_id)  # nothing under ./mlruns/0


def test_backtest_threshold_and_history_are_applied(desk: Desk) -> None:
    client = mlflow.MlflowClient(desk.settings.mlflow_tracking_uri)
    version = client.get_model_version("fks-forecaster", desk.version)
    min_bars = int(client.get_run(version.run_id).data.params["min_bars"])
    done = desk.fks("backtest", "--threshold", "1", "--history", str(min_bars + 5), "--windows", "1")
    assert done.exit_code == 0, done.output
    page = Path(done.output.split("Tearsheet:", 1)[1].split()[0])
    assert f"the last {min_bars + 5} raw bars" in page.read_text()
    metrics = client.get_run(version.run_id).data.metrics
    assert metrics["backtest_trades"] == 0  # a forecast never reaches a log return of 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--history", "3"], r"--history 3 is below the \d+ raw bars fks-forecaster v1 needs"),
        (["--history", "100000"], r"--history 100000 needs 99999 GOOGL 1d bars before the test window"),
        (["--history", "0"], r"Invalid value for '--history'"),
        (["--threshold", "nan"], r"--threshold must be a finite log return"),
        (
            ["--model", "fks-allocator@challenger", "--threshold", "0.01"],
            r"--threshold applies to a forecaster",
        ),
    ],
)
def test_backtest_refuses_a_bad_threshold_or_history(desk: Desk, args: list[str], says: str) -> None:
    refused = desk.fks("backtest", *args)
    assert refused.exit_code == 2, refused.output
    assert re.search(says, " ".join(refused.output.split())), refused.output


def test_messages_name_the_command_and_keep_their_quotes(desk: Desk) -> None:
    released = desk.fks("quarantine", "release", "999999")
    assert released.exit_code == 2
    assert "no quarantined row with id 999999; list them with `fks quarantine list`" in released.output
    rolled = desk.fks("rollback")
    assert rolled.exit_code == 2
    text = " ".join(rolled.output.split())
    assert "error: 'fks-forecaster' has no 'previous-champion' version" in text
    assert "`fks promote`" in text
    unknown = desk.fks("backtest", "--model", "nope@champion")
    assert unknown.exit_code == 2 and "`fks train forecaster`" in unknown.output
    for result in (released, rolled, unknown):
        assert not PYTHON_NAMES.search(result.output), result.output


def test_quick_training_on_a_short_series_is_bad_input(desk: Desk) -> None:
    from market.bars import canonical_bars
    from providers.csv import parse_bars_csv
    from storage import upsert_bars
    from tasks.store import store_for

    spx = parse_bars_csv(PROJECT_ROOT / "data" / "samples" / "sp500_daily.csv").bars
    with store_for(desk.settings).begin() as conn:
        upsert_bars(conn, "SHORT", "1d", canonical_bars(spx.iloc[:300]), source="csv")
    refused = desk.fks("train", "forecaster", "--symbol", "SHORT", "--quick")
    assert refused.exit_code == 2, refused.output
    assert re.search(
        r"error: .*300 bars give 0 samples; .*ingest more history", " ".join(refused.output.split())
    )


def test_a_key_error_is_printed_without_its_repr_quotes() -> None:
    assert message(KeyError("no account 'x'")) == "no account 'x'"
    assert message(ValueError("'fks-forecaster' has no champion")) == "'fks-forecaster' has no champion"
    assert message(KeyError(3)) == "3"


def test_data_list_of_an_empty_store_says_so_and_its_json_is_an_empty_list(tmp_path: Path) -> None:
    env = {"FKS_DATA_DIR": str(tmp_path / "data"), "FKS_DB_URL": f"sqlite:///{tmp_path / 'fks.db'}"}
    listed = CliRunner().invoke(_app(), ["data", "list"], env=env)
    assert listed.exit_code == 0 and "The store is empty: run `fks ingest`" in listed.output
    as_json = CliRunner().invoke(_app(), ["data", "list", "--json"], env=env)
    assert as_json.exit_code == 0 and as_json.output.strip() == "[]"
