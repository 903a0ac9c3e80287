"""Optuna search over a family's hyperparameters, scored on validation folds only, never on test.

A family that can be tuned offers a :class:`SearchSpace` (``family.search_space``): what a trial
proposes, how the best trial's parameters fold into a config, and the objective of a candidate
(trained on walk-forward folds inside train + validation, reporting its validation loss after
every epoch). :func:`run_study` runs the study: TPE sampling (seeded) and a median pruner fed
those reports; the study lives in the project's SQL database (Optuna's RDB storage: several
workers on one PostgreSQL database share one study; Optuna creates and migrates its own tables
there). Each trial is a nested MLflow run when a run is active. :func:`tune_logged` wraps the
study in a ``tuning-<symbol>-<timeframe>`` run of the family's experiment. The caller retrains the
best configuration once and evaluates it once on test::

    from models.forecaster import FORECASTER
    result = run_study(FORECASTER.search_space, bars, feature_set, config, settings.db_url)
    result.best_config, result.best_params, result.best_value
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
import pandas as pd

from features import FeatureSet
from models.family import FamilyConfig

if TYPE_CHECKING:
    import optuna

__all__ = ["EpochReport", "SearchSpace", "TuningResult", "run_study", "tune_logged"]

EpochReport = Callable[[int, dict[str, float]], None]
"""What a candidate's training calls after every epoch: ``report(epoch, logs)`` with ``val_loss``
in the logs; it raises ``optuna.TrialPruned`` to stop an unpromising trial."""

C = TypeVar("C", bound=FamilyConfig)


class SearchSpace(Protocol[C]):
    """A family's hyperparameter search (the forecaster's: :mod:`models.forecaster.tuning`)."""

    @property
    def objective(self) -> str:
        """Name of the score to minimise, as the trials log it (``wf_val_rmse``)."""
        ...

    def suggest(self, trial: optuna.Trial, base: C) -> C:
        """The configuration ``trial`` proposes: ``base`` with the searched values set."""
        ...

    def best(self, base: C, params: Mapping[str, Any]) -> C:
        """``base`` with the best trial's ``params`` folded in (retrained and tested by the caller)."""
        ...

    def objective_for(
        self, bars: pd.DataFrame, feature_set: FeatureSet, candidate: C
    ) -> Callable[[EpochReport], float]:
        """Prepare ``candidate``'s data (no training yet) and return its objective: train on
        validation folds only, call ``report`` after every epoch, return the score to minimise.

        Raises:
            ValueError: the data cannot train ``candidate``.
        """
        ...


@dataclass(frozen=True)
class TuningResult(Generic[C]):
    """The study's outcome: the best trial's parameters folded into a config."""

    study_name: str
    best_config: C
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int

    def summary(self) -> dict[str, Any]:
        """The best parameters with the study's name and its trial and pruned counts (what a
        training summary reports as ``tuned`` and the run logs as ``tuning.best.*``)."""
        return {**self.best_params, "study": self.study_name, "trials": self.trials, "pruned": self.pruned}


def run_study(
    space: SearchSpace[C], bars: pd.DataFrame, feature_set: FeatureSet, config: C, storage_url: str
) -> TuningResult[C]:
    """Run ``config.tuning.trials`` trials (or until ``timeout_s``) and return the best configuration.

    The study is named ``<tuning.study_name>-<symbol>-<timeframe>-<feature-set version>-<last bar>``
    (trials of other data never mix in) and resumed when it exists in ``storage_url``.

    Raises:
        RuntimeError: no trial finished.
        ValueError: the data does not fit the base config (too little history); a candidate that
            does not fit (e.g. a longer lookback) is pruned, not failed.
    """
    import mlflow
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        # one study per series, feature-set version and data end: trials of other data never mix in
        study_name=(
            f"{config.tuning.study_name}-{config.symbol}-{config.timeframe}-{feature_set.version}"
            f"-{bars.index[-1]:%Y%m%d%H%M}"
        ),
        storage=optuna.storages.RDBStorage(url=storage_url),
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        load_if_exists=True,
    )

    space.objective_for(bars, feature_set, config)  # the data must fit the base config: ValueError if not

    def objective(trial: optuna.Trial) -> float:
        candidate = space.suggest(trial, config)
        try:
            score = space.objective_for(bars, feature_set, candidate)
        except ValueError as exc:  # this candidate does not fit the data (e.g. a longer lookback)
            raise optuna.TrialPruned(f"does not fit the data: {exc}") from None
        step = [0]

        def report(epoch: int, logs: dict[str, float]) -> None:
            trial.report(float(logs["val_loss"]), step[0])
            step[0] += 1
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step[0]}")

        parent = mlflow.active_run()
        run = None
        if parent is not None:
            run = mlflow.start_run(
                experiment_id=parent.info.experiment_id, run_name=f"trial-{trial.number}", nested=True
            )
        try:
            if run is not None:
                mlflow.log_params({f"trial.{k}": v for k, v in trial.params.items()})
            value = score(report)
            if run is not None:
                mlflow.log_metric(space.objective, value)
            return value
        finally:
            if run is not None:
                mlflow.end_run()

    study.optimize(objective, n_trials=config.tuning.trials or None, timeout=config.tuning.timeout_s)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise RuntimeError(f"study {study.study_name}: no trial finished; raise tuning.trials or timeout_s")
    best = study.best_trial
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return TuningResult(
        study_name=study.study_name,
        best_config=space.best(config, best.params),
        best_params=dict(best.params),
        best_value=float(best.value if best.value is not None else np.nan),
        trials=len(study.trials),
        pruned=pruned,
    )


def tune_logged(
    space: SearchSpace[C],
    bars: pd.DataFrame,
    feature_set: FeatureSet,
    config: C,
    *,
    storage_url: str,
    tracking_uri: str,
    artifact_root: Path,
    experiment: str,
) -> TuningResult[C]:
    """:func:`run_study` inside an MLflow run ``tuning-<symbol>-<timeframe>`` of ``experiment``
    (each trial a nested run), logging ``best_<objective>`` and the ``best.*`` parameters."""
    import mlflow

    from models.tracking import ensure_experiment

    experiment_id = ensure_experiment(tracking_uri, artifact_root, experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"tuning-{config.symbol}-{config.timeframe}"):
        result = run_study(space, bars, feature_set, config, storage_url)
        mlflow.log_metric(f"best_{space.objective}", result.best_value)
        mlflow.log_params({f"best.{k}": v for k, v in result.best_params.items()})
    return result
