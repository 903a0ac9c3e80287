"""The forecaster as a model family (:class:`models.family.ModelFamily`): :data:`FORECASTER`.

Its names come from :class:`config.models.ForecasterConfig` (registered model and experiment
``fks-forecaster``; baselines ``last_return``, ``ridge``, ``hist_gb``). Its output, a forecast
forward log return per decision bar, becomes positions by :func:`forecast_positions`
(``long_flat``: 1 above the threshold, else 0; ``long_short``: +1 above it, -1 below minus it).
Heavy modules (Keras, MLflow, scikit-learn) are imported by the methods that need them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from config.models import ForecasterConfig
from models.family import TrainingData

if TYPE_CHECKING:
    from config.settings import Settings
    from models.forecaster.training import ForecasterResult
    from models.tracking import TrainingRecord
    from models.tuning import SearchSpace

__all__ = ["FAMILY", "FORECASTER", "ForecasterFamily", "forecast_positions"]

FORECAST = "forecast_log_return"
"""The column of the pyfunc's output that :meth:`ForecasterFamily.positions` trades."""


def forecast_positions(forecast: pd.Series, strategy: str, threshold: float) -> pd.Series:
    """Target exposure from forecasts: ``long_flat`` 1/0 above/below ``threshold``, ``long_short`` +-1.

    Raises:
        ValueError: an unknown ``strategy``.
    """
    if strategy == "long_flat":
        return (forecast > threshold).astype("float64")
    if strategy == "long_short":
        return pd.Series(
            np.where(forecast > threshold, 1.0, np.where(forecast < -threshold, -1.0, 0.0)),
            index=forecast.index,
        )
    raise ValueError(f"unknown strategy {strategy!r}: use long_flat or long_short")


class ForecasterFamily:
    """The LSTM forecaster family; use the instance :data:`FORECASTER`."""

    name = ForecasterConfig.family
    registered_name = ForecasterConfig.registered_name
    experiment = ForecasterConfig.experiment
    baselines = ForecasterConfig.baselines
    train_command = "fks train forecaster"

    @property
    def search_space(self) -> SearchSpace[ForecasterConfig]:
        """Units, dropout, learning rate and lookback (:mod:`models.forecaster.tuning`)."""
        from models.forecaster.tuning import SEARCH

        return SEARCH

    def train(self, data: TrainingData, config: ForecasterConfig) -> ForecasterResult:
        """:func:`models.forecaster.training.train_forecaster` on ``data``."""
        from models.forecaster.training import train_forecaster

        return train_forecaster(data.bars, data.feature_set, config, features=data.features)

    def log(
        self,
        trained: ForecasterResult,
        data: TrainingData,
        settings: Settings,
        *,
        tuning: Mapping[str, Any] | None = None,
    ) -> TrainingRecord:
        """:func:`models.forecaster.tracking.log_training` into the settings' MLflow store."""
        from models.forecaster.tracking import log_training

        return log_training(
            trained,
            bars=data.bars,
            feature_set=data.feature_set,
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.mlflow_artifact_root,
            tuning=dict(tuning) if tuning else None,
        )

    def positions(self, output: pd.DataFrame | pd.Series, *, strategy: str, threshold: float) -> pd.Series:
        """:func:`forecast_positions` of the forecast: the pyfunc output's ``forecast_log_return``
        column, or a series of forecasts (a column of the logged test predictions)."""
        forecast = output[FORECAST] if isinstance(output, pd.DataFrame) else output
        return forecast_positions(forecast, strategy, threshold)

    def baseline_outputs(self, run_id: str, *, strict: bool = False) -> pd.DataFrame | None:
        """The baselines' logged test forecasts (:func:`models.forecaster.tracking.baseline_predictions`
        less ``actual``, ``lstm`` and ``prob_up``): one column per baseline the run logged."""
        from models.forecaster.tracking import PREDICTION_COLUMNS, baseline_predictions

        frame = baseline_predictions(run_id, strict=strict)
        if frame is None:
            return None
        return frame[[c for c in frame.columns if c not in PREDICTION_COLUMNS]]


FORECASTER = ForecasterFamily()
"""The forecaster family."""

FAMILY = FORECASTER
"""This subpackage's family, as :func:`models.family.get_family` finds it."""
