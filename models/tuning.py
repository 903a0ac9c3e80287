"""Optuna search over the LSTM's hyperparameters, scored on walk-forward validation folds only.

The objective never sees the test block: it trains on walk-forward folds inside train +
validation and returns the mean validation RMSE of the LSTM. TPE sampling (seeded) and a median
pruner fed the validation loss after every epoch of every fold. The study lives in the project's
SQL database (Optuna's RDB storage: several workers on one PostgreSQL database share one study);
Optuna creates and migrates its own tables there. Each trial is a nested MLflow run when a run is
active. The caller retrains the best configuration once and evaluates it once on test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from config.models import ForecasterConfig
from features import FeatureSet
from models.splits import chronological_split
from models.training import LSTM, prepare_dataset, walk_forward

UNITS_CHOICES = ("16", "32", "64", "32-16")
LOOKBACK_CHOICES = (10, 20, 30, 60)


@dataclass(frozen=True)
class TuningResult:
    """The study's outcome: the best trial's parameters folded into a config."""

    study_name: str
    best_config: ForecasterConfig
    best_params: dict[str, Any]
    best_value: float
    trials: int
    pruned: int


def suggest(trial: Any, base: ForecasterConfig) -> ForecasterConfig:
    """The configuration a trial proposes: units, dropout, learning rate and lookback."""
    units = trial.suggest_categorical("units", UNITS_CHOICES)
    return base.model_copy(
        update={
            "units": tuple(int(u) for u in str(units).split("-")),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "lookback": trial.suggest_categorical("lookback", LOOKBACK_CHOICES),
            "epochs": base.tuning.epochs,
        }
    )


def tune(
    bars: pd.DataFrame, feature_set: FeatureSet, config: ForecasterConfig, storage_url: str
) -> TuningResult:
    """Run ``config.tuning.trials`` trials (or until ``timeout_s``) and return the best configuration."""
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

    def objective(trial: optuna.Trial) -> float:
        candidate = suggest(trial, config)
        dataset = prepare_dataset(bars, feature_set, candidate)
        split = chronological_split(
            dataset.n_samples,
            val_fraction=candidate.val_fraction,
            test_fraction=candidate.test_fraction,
            purge=candidate.purge,
        )
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
            folds = walk_forward(
                dataset,
                candidate,
                slice(split.train.start, split.val.stop),
                epoch_callback=report,
                with_baselines=False,
            )
            value = float(np.mean([f.metrics[LSTM]["rmse"] for f in folds]))
            if run is not None:
                mlflow.log_metric("wf_val_rmse", value)
            return value
        finally:
            if run is not None:
                mlflow.end_run()

    study.optimize(objective, n_trials=config.tuning.trials or None, timeout=config.tuning.timeout_s)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise RuntimeError(f"study {study.study_name}: no trial finished; raise tuning.trials or timeout_s")
    best = study.best_trial
    best_config = config.model_copy(
        update={
            "units": tuple(int(u) for u in str(best.params["units"]).split("-")),
            "dropout": best.params["dropout"],
            "learning_rate": best.params["learning_rate"],
            "lookback": best.params["lookback"],
        }
    )
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return TuningResult(
        study_name=study.study_name,
        best_config=best_config,
        best_params=dict(best.params),
        best_value=float(best.value if best.value is not None else np.nan),
        trials=len(study.trials),
        pruned=pruned,
    )
