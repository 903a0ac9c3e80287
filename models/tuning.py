"""Optuna search over a family's hyperparameters, scored on validation folds only, never on test.

A family that can be tuned offers a :class:`SearchSpace` (``family.search_space``): what a trial
proposes, how the best trial's parameters fold into a config, and the objective of a candidate
(trained on walk-forward folds inside train + validation, reporting its validation loss after
every epoch). :func:`run_study` runs the study: TPE sampling (seeded) and a median pruner fed
those reports; the study lives in the project's SQL database (Optuna's RDB storage: several
workers on one PostgreSQL database share one study; Optuna creates and migrates its own tables
there). With ``tuning.jobs`` above 1, :func:`optimize` runs the trials in that many worker
processes (spawned, each with its own seeded sampler, ``seed + worker``) against the one stored
study: Optuna's RDB storage is what they share, as workers on other machines would. A trial's score
depends on its parameters and the config's seed only, so it is reproducible trial by trial; which
parameters the sampler proposes next depends on the trials already finished by every worker, so
the sequence of trials is reproducible only with one job. Each trial is a nested MLflow run when a
run is active (in a worker process, a run whose parent is that run). :func:`tune_logged` wraps the
study in a ``tuning-<symbol>-<timeframe>`` run of the family's experiment. The caller retrains the
best configuration once and evaluates it once on test::

    from models.forecaster import FORECASTER
    result = run_study(FORECASTER.search_space, bars, feature_set, config, settings.db_url)
    result.best_config, result.best_params, result.best_value
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import numpy as np
import pandas as pd

from features import FeatureSet
from models.family import FamilyConfig

if TYPE_CHECKING:
    import optuna

__all__ = [
    "EpochReport",
    "SearchSpace",
    "StudySpec",
    "TrialBudget",
    "TrialParent",
    "TuningResult",
    "optimize",
    "run_study",
    "trial_run",
    "tune_logged",
]

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


@dataclass(frozen=True)
class StudySpec:
    """Where a study lives and how it samples: what a worker process needs to open it again."""

    name: str
    storage_url: str
    direction: Literal["minimize", "maximize"]
    seed: int
    n_startup_trials: int = 2
    n_warmup_steps: int = 2

    def open(self, worker: int = 0) -> optuna.Study:
        """The study (created when missing) with a TPE sampler seeded ``seed + worker`` and the
        median pruner. On SQLite, connections wait up to 60 s for another process's write."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        engine_kwargs: dict[str, Any] = {}
        if self.storage_url.startswith("sqlite"):
            engine_kwargs["connect_args"] = {"timeout": 60}
        return optuna.create_study(
            study_name=self.name,
            storage=optuna.storages.RDBStorage(url=self.storage_url, engine_kwargs=engine_kwargs),
            direction=self.direction,
            sampler=optuna.samplers.TPESampler(seed=self.seed + worker),
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=self.n_startup_trials, n_warmup_steps=self.n_warmup_steps
            ),
            load_if_exists=True,
        )


Objective = Callable[["optuna.Trial"], float]
"""A trial's objective; with several jobs it is pickled into the worker processes, so it must be an
instance of a module-level class (no closure)."""


class TrialBudget(Protocol):
    """How many trials, for how long, in how many processes (a family's tuning config)."""

    @property
    def trials(self) -> int: ...

    @property
    def timeout_s(self) -> float | None: ...

    @property
    def jobs(self) -> int: ...


def optimize(spec: StudySpec, objective: Objective, budget: TrialBudget) -> optuna.Study:
    """Run ``budget.trials`` trials of ``objective`` (0: until ``budget.timeout_s``) on the study
    of ``spec``, in this process (``budget.jobs`` 1) or in ``jobs`` spawned worker processes sharing
    the stored study
    (worker ``i`` runs its share of the trials with the sampler seeded ``spec.seed + i`` and tags
    each trial with the user attribute ``worker``). Returns the study, read afresh.

    Raises:
        ValueError: ``jobs`` below 1, or several jobs with neither trials nor a timeout.
        Exception: what a worker process raised (the other workers finish first).
    """
    trials, timeout_s, jobs = budget.trials, budget.timeout_s, budget.jobs
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs == 1:
        study = spec.open()
        study.optimize(_Tagged(objective, 0), n_trials=trials or None, timeout=timeout_s)
        return study
    if not trials and timeout_s is None:
        raise ValueError("several tuning jobs need a number of trials or a timeout to stop at")
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spec.open()  # create the study (and Optuna's tables) once, before the workers race for it
    shares: list[int | None] = (
        [trials // jobs + (i < trials % jobs) for i in range(jobs)] if trials else [None] * jobs
    )
    with ProcessPoolExecutor(len(shares), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(_optimize_share, spec, objective, worker, share, timeout_s)
            for worker, share in enumerate(shares)
            if share != 0
        ]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return spec.open()


@dataclass(frozen=True)
class _Tagged:
    """``objective`` with the trial tagged by the worker that ran it."""

    objective: Objective
    worker: int

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", self.worker)
        return self.objective(trial)


def _optimize_share(
    spec: StudySpec, objective: Objective, worker: int, trials: int | None, timeout_s: float | None
) -> int:
    """A worker process's part of :func:`optimize`: its trials, on the stored study."""
    study = spec.open(worker)
    study.optimize(_Tagged(objective, worker), n_trials=trials, timeout=timeout_s)
    return worker


@dataclass(frozen=True)
class TrialParent:
    """The MLflow run that a trial's run is nested under, as plain data a worker process can take."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    @staticmethod
    def active() -> TrialParent | None:
        """The active MLflow run, or None."""
        import mlflow

        run = mlflow.active_run()
        if run is None:
            return None
        return TrialParent(mlflow.get_tracking_uri(), run.info.experiment_id, run.info.run_id)


@contextmanager
def trial_run(parent: TrialParent | None, trial: optuna.Trial) -> Iterator[bool]:
    """A ``trial-<number>`` MLflow run nested under ``parent`` (in this process, under the active
    run; in a worker process, tagged with the parent's id), logging the trial's parameters; yields
    whether a run is open (no parent: no run)."""
    import mlflow

    if parent is None:
        yield False
        return
    if mlflow.active_run() is not None:
        mlflow.start_run(experiment_id=parent.experiment_id, run_name=f"trial-{trial.number}", nested=True)
    else:
        mlflow.set_tracking_uri(parent.tracking_uri)
        mlflow.start_run(
            experiment_id=parent.experiment_id,
            run_name=f"trial-{trial.number}",
            tags={"mlflow.parentRunId": parent.run_id},
        )
    try:
        mlflow.log_params({f"trial.{k}": v for k, v in trial.params.items()})
        yield True
    finally:
        mlflow.end_run()


@dataclass(frozen=True)
class _SpaceObjective(Generic[C]):
    """The objective of :func:`run_study`: a candidate of ``space`` trained on validation folds."""

    space: SearchSpace[C]
    bars: pd.DataFrame
    feature_set: FeatureSet
    config: C
    parent: TrialParent | None

    def __call__(self, trial: optuna.Trial) -> float:
        import mlflow
        import optuna

        candidate = self.space.suggest(trial, self.config)
        try:
            score = self.space.objective_for(self.bars, self.feature_set, candidate)
        except ValueError as exc:  # this candidate does not fit the data (e.g. a longer lookback)
            raise optuna.TrialPruned(f"does not fit the data: {exc}") from None
        step = [0]

        def report(epoch: int, logs: dict[str, float]) -> None:
            trial.report(float(logs["val_loss"]), step[0])
            step[0] += 1
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step[0]}")

        with trial_run(self.parent, trial) as logging:
            value = score(report)
            if logging:
                mlflow.log_metric(self.space.objective, value)
            return value


def run_study(
    space: SearchSpace[C], bars: pd.DataFrame, feature_set: FeatureSet, config: C, storage_url: str
) -> TuningResult[C]:
    """Run ``config.tuning.trials`` trials (or until ``timeout_s``), in ``config.tuning.jobs``
    processes (:func:`optimize`), and return the best configuration.

    The study is named ``<tuning.study_name>-<symbol>-<timeframe>-<feature-set version>-<last bar>``
    (trials of other data never mix in) and resumed when it exists in ``storage_url``.

    Raises:
        RuntimeError: no trial finished.
        ValueError: the data does not fit the base config (too little history); a candidate that
            does not fit (e.g. a longer lookback) is pruned, not failed.
    """
    import optuna

    spec = StudySpec(
        # one study per series, feature-set version and data end: trials of other data never mix in
        name=(
            f"{config.tuning.study_name}-{config.symbol}-{config.timeframe}-{feature_set.version}"
            f"-{bars.index[-1]:%Y%m%d%H%M}"
        ),
        storage_url=storage_url,
        direction="minimize",
        seed=config.seed,
    )
    space.objective_for(bars, feature_set, config)  # the data must fit the base config: ValueError if not
    objective = _SpaceObjective(space, bars, feature_set, config, TrialParent.active())
    study = optimize(spec, objective, config.tuning)
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
