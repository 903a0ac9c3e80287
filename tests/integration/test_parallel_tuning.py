"""Optuna trials in two worker processes against one study stored in the FKS database (SQLite).

Both processes contribute trials to the one study, each trial is an MLflow run nested under the
tuning run, and a trial's score is reproducible from its parameters and the config's seed:
re-scoring a finished trial of each worker in this process gives its stored value.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest

import models.forecaster.tuning as tuning
from config.models import ForecasterConfig
from config.settings import Settings
from features import get_feature_set
from models.tuning import tune_logged
from providers.csv import parse_bars_csv
from tasks.store import store_for

pytestmark = pytest.mark.slow


def test_two_jobs_share_one_study_and_each_trial_is_reproducible(settings: Settings) -> None:
    bars = parse_bars_csv(Path(__file__).parents[2] / "data" / "samples" / "googl_daily.csv").bars
    feature_set = get_feature_set("minimal")
    config = ForecasterConfig(
        symbol="GOOGL",
        units=(4,),
        walk_forward={"folds": 2},
        tuning={"trials": 2, "epochs": 1, "jobs": 2},
        seed=3,
    )
    store_for(settings)  # the FKS schema first: Optuna's tables live beside it in the same file
    result = tune_logged(
        tuning.SEARCH,
        bars,
        feature_set,
        config,
        storage_url=settings.db_url,
        tracking_uri=settings.mlflow_tracking_uri,
        artifact_root=settings.mlflow_artifact_root,
        experiment="fks-forecaster",
    )
    assert result.trials == 2
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("fks-forecaster").experiment_id])
    parent = next(r for r in runs if r.info.run_name.startswith("tuning-"))
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["trial-0", "trial-1"]

    study = optuna.load_study(study_name=result.study_name, storage=settings.db_url)
    by_worker: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.trials:
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial)
    assert {w: len(t) for w, t in by_worker.items()} == {0: 1, 1: 1}
    # the two workers' samplers are seeded apart: their first proposals differ
    assert by_worker[0][0].params != by_worker[1][0].params

    for worker, trials in sorted(by_worker.items()):
        # the median pruner waits for two finished trials: the first trial of each worker completes
        trial = trials[0]
        assert trial.state == optuna.trial.TrialState.COMPLETE, worker
        candidate = tuning.suggest(optuna.trial.FixedTrial(trial.params), config)
        score = tuning.SEARCH.objective_for(bars, feature_set, candidate)(lambda epoch, logs: None)
        assert score == pytest.approx(trial.value, rel=1e-9), (worker, trial.params)
    assert result.best_value == min(t.value for t in study.trials if t.value is not None)
