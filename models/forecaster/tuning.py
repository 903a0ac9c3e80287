"""The forecaster's Optuna search: units, dropout, learning rate and lookback, on validation folds only.

The objective never sees the test block: it trains on walk-forward folds inside train +
validation (:func:`models.forecaster.training.walk_forward`) and returns the mean validation RMSE
of the LSTM (``wf_val_rmse``); every epoch's validation loss feeds the pruner. The study itself
(sampler, pruner, storage in the project's database, nested MLflow runs) is the shared
:func:`models.tuning.run_study`; :func:`tune` runs it with :data:`SEARCH`. The caller retrains the
best configuration once and evaluates it once on test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from config.models import ForecasterConfig
from features import FeatureSet
from models.forecaster.training import LSTM, prepare_dataset, walk_forward
from models.splits import chronological_split
from models.tuning import EpochReport, TuningResult, run_study

if TYPE_CHECKING:
    import optuna

__all__ = ["LOOKBACK_CHOICES", "SEARCH", "UNITS_CHOICES", "ForecasterSearch", "suggest", "tune"]

UNITS_CHOICES = ("16", "32", "64", "32-16")
LOOKBACK_CHOICES = (10, 20, 30, 60)


def _units(value: object) -> tuple[int, ...]:
    return tuple(int(u) for u in str(value).split("-"))


def suggest(trial: optuna.Trial, base: ForecasterConfig) -> ForecasterConfig:
    """The configuration a trial proposes: units, dropout, learning rate and lookback."""
    units = trial.suggest_categorical("units", UNITS_CHOICES)
    return base.model_copy(
        update={
            "units": _units(units),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "lookback": trial.suggest_categorical("lookback", LOOKBACK_CHOICES),
            "epochs": base.tuning.epochs,
        }
    )


class ForecasterSearch:
    """The forecaster's :class:`models.tuning.SearchSpace`."""

    objective = "wf_val_rmse"

    def suggest(self, trial: optuna.Trial, base: ForecasterConfig) -> ForecasterConfig:
        """See :func:`suggest`."""
        return suggest(trial, base)

    def best(self, base: ForecasterConfig, params: Mapping[str, Any]) -> ForecasterConfig:
        """``base`` with the best trial's units, dropout, learning rate and lookback (and the
        full number of epochs of ``base``)."""
        return base.model_copy(
            update={
                "units": _units(params["units"]),
                "dropout": params["dropout"],
                "learning_rate": params["learning_rate"],
                "lookback": params["lookback"],
            }
        )

    def objective_for(
        self, bars: pd.DataFrame, feature_set: FeatureSet, candidate: ForecasterConfig
    ) -> Callable[[EpochReport], float]:
        """The candidate's dataset and split, then its objective: the mean validation RMSE of the
        LSTM over the walk-forward folds inside train + validation (never test)."""
        dataset = prepare_dataset(bars, feature_set, candidate)
        split = chronological_split(
            dataset.n_samples,
            val_fraction=candidate.val_fraction,
            test_fraction=candidate.test_fraction,
            purge=candidate.purge,
        )

        def score(report: EpochReport) -> float:
            folds = walk_forward(
                dataset,
                candidate,
                slice(split.train.start, split.val.stop),
                epoch_callback=report,
                with_baselines=False,
            )
            return float(np.mean([f.metrics[LSTM]["rmse"] for f in folds]))

        return score


SEARCH = ForecasterSearch()
"""The forecaster's search space (``FORECASTER.search_space``)."""


def tune(
    bars: pd.DataFrame, feature_set: FeatureSet, config: ForecasterConfig, storage_url: str
) -> TuningResult[ForecasterConfig]:
    """Run ``config.tuning.trials`` trials (or until ``timeout_s``) and return the best configuration.

    :func:`models.tuning.run_study` with :data:`SEARCH`; see there for the study and its storage.
    """
    return run_study(SEARCH, bars, feature_set, config, storage_url)
