"""The allocator's Optuna search, scored on validation reward only, never on test.

Each trial proposes a learning rate, a discount, an entropy coefficient, a rollout length and the
observation window (:func:`suggest`), trains one agent (the config's first seed) for
``tuning.timesteps`` steps (default a quarter of ``timesteps``) with the usual early stopping,
and scores its best deterministic validation episode reward (``val_reward``, maximised); every
validation evaluation is reported to a median pruner. The study is stored in the project's SQL
database (Optuna's RDB storage, as the forecaster's: :mod:`models.tuning`), named
``<study_name>-<symbols>-<timeframe>-<feature-set version>-<last bar>`` and resumed when it
exists; each trial is a nested MLflow run of a ``tuning-allocator`` run (:func:`tune_logged`).
With ``tuning.jobs`` above 1 the trials run in that many worker processes against the one stored
study (:func:`models.tuning.optimize`).
The caller retrains the best configuration once and evaluates it once on test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from config.models import AllocatorConfig
from features import FeatureSet
from models.tuning import StudySpec, TrialParent, optimize, trial_run

if TYPE_CHECKING:
    import optuna

    from config.settings import Settings

__all__ = ["WINDOW_CHOICES", "AllocatorTuning", "study_name", "suggest", "tune", "tune_logged"]

WINDOW_CHOICES = (1, 3, 5, 10)
N_STEPS_CHOICES = (64, 128, 256)


def suggest(trial: optuna.trial.BaseTrial, base: AllocatorConfig) -> AllocatorConfig:
    """The configuration a trial proposes (``base`` with the searched values set)."""
    return base.model_copy(
        update={
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
            "gamma": trial.suggest_float("gamma", 0.3, 0.99),
            "ent_coef": trial.suggest_float("ent_coef", 0.0, 0.01),
            "n_steps": trial.suggest_categorical("n_steps", N_STEPS_CHOICES),
            "window": trial.suggest_categorical("window", WINDOW_CHOICES),
        }
    )


@dataclass(frozen=True)
class AllocatorTuning:
    """The study's outcome: the best trial's parameters folded into the config."""

    study_name: str
    best_config: AllocatorConfig
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int

    def summary(self) -> dict[str, Any]:
        """The best parameters with the study's name, trial and pruned counts and best ``val_reward``."""
        return {
            **self.best_params,
            "study": self.study_name,
            "trials": self.trials,
            "pruned": self.pruned,
            "best_val_reward": self.best_value,
        }


def study_name(bars: Mapping[str, pd.DataFrame], feature_set: FeatureSet, config: AllocatorConfig) -> str:
    """One study per universe, timeframe, feature-set version and data end: trials of other data never mix."""
    last = min(bars[s].index[-1] for s in config.symbols)
    return (
        f"{config.tuning.study_name}-{'.'.join(config.symbols)}-{config.timeframe}-{feature_set.version}"
        f"-{last:%Y%m%d%H%M}"
    )


@dataclass(frozen=True)
class _AllocatorObjective:
    """A trial: the candidate agent trained for ``timesteps``, scored by its validation reward."""

    bars: Mapping[str, pd.DataFrame]
    feature_set: FeatureSet
    config: AllocatorConfig
    timesteps: int
    parent: TrialParent | None

    def __call__(self, trial: optuna.Trial) -> float:
        import mlflow
        import optuna

        from models.allocator.training import allocator_data, train_agent

        candidate = suggest(trial, self.config)
        data = allocator_data(self.bars, self.feature_set, candidate)
        reports = [0]

        def report(step: int, value: float) -> None:
            trial.report(value, reports[0])
            reports[0] += 1
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")

        with trial_run(self.parent, trial) as logging:
            agent = train_agent(data, candidate, candidate.seed, timesteps=self.timesteps, report=report)
            if logging:
                mlflow.log_metric("val_reward", agent.val_reward)
            return agent.val_reward


def tune(
    bars: Mapping[str, pd.DataFrame], feature_set: FeatureSet, config: AllocatorConfig, storage_url: str
) -> AllocatorTuning:
    """Run ``config.tuning.trials`` trials (or until ``timeout_s``), in ``config.tuning.jobs``
    processes (:func:`models.tuning.optimize`), and return the best configuration.

    Raises:
        RuntimeError: no trial finished.
        ValueError: the data cannot train a candidate (too little history).
    """
    import optuna

    spec = StudySpec(
        name=study_name(bars, feature_set, config),
        storage_url=storage_url,
        direction="maximize",
        seed=config.seed,
        n_warmup_steps=1,
    )
    timesteps = config.tuning.timesteps or max(config.timesteps // 4, 64)
    objective = _AllocatorObjective(dict(bars), feature_set, config, timesteps, TrialParent.active())
    study = optimize(spec, objective, config.tuning)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise RuntimeError(f"study {study.study_name}: no trial finished; raise tuning.trials or timeout_s")
    best = study.best_trial
    return AllocatorTuning(
        study_name=study.study_name,
        best_config=suggest(optuna.trial.FixedTrial(best.params), config),
        best_params=dict(best.params),
        best_value=float(best.value) if best.value is not None else float("nan"),
        trials=len(study.trials),
        pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
    )


def tune_logged(
    bars: Mapping[str, pd.DataFrame], feature_set: FeatureSet, config: AllocatorConfig, settings: Settings
) -> AllocatorTuning:
    """:func:`tune` inside an MLflow run ``tuning-allocator`` of the ``fks-allocator`` experiment
    (each trial a nested run), logging ``best_val_reward`` and the ``best.*`` parameters; the
    study lives in ``settings.db_url``."""
    import mlflow

    from models.tracking import ensure_experiment

    experiment_id = ensure_experiment(
        settings.mlflow_tracking_uri, settings.mlflow_artifact_root, AllocatorConfig.experiment
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"tuning-allocator-{config.timeframe}"):
        result = tune(bars, feature_set, config, settings.db_url)
        mlflow.log_metric("best_val_reward", result.best_value)
        mlflow.log_params({f"best.{k}": v for k, v in result.best_params.items()})
    return result
