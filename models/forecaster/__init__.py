"""The forecaster family: a Keras LSTM forecasting the forward log return of one series.

Modules: :mod:`~models.forecaster.network` (build, fit, predict, save and load the network),
:mod:`~models.forecaster.training` (the honest recipe: purged splits, walk-forward folds,
baselines, one test), :mod:`~models.forecaster.tuning` (its Optuna search space),
:mod:`~models.forecaster.pyfunc` (the MLflow pyfunc that carries its preprocessing),
:mod:`~models.forecaster.tracking` (its MLflow run, model card and registration),
:mod:`~models.forecaster.family` (:data:`FORECASTER`, the :class:`models.family.ModelFamily`) and
:mod:`~models.forecaster.service` (:func:`train_and_record`, the ``fks train forecaster`` stage).
Its config is :class:`config.models.ForecasterConfig`, whose class attributes name the registered
model and experiment (``fks-forecaster``).

Names are imported on first use: ``import models.forecaster`` loads no Keras, TensorFlow, SHAP or
matplotlib::

    from models.forecaster import FORECASTER, train_forecaster
    result = train_forecaster(bars, get_feature_set("default"), ForecasterConfig(symbol="SPX"))
    result.test_metrics["lstm"], result.uplift
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.exports import lazy_exports

if TYPE_CHECKING:
    from models.forecaster.family import FORECASTER, ForecasterFamily, forecast_positions
    from models.forecaster.network import (
        DIR_LOSS_WEIGHT,
        EpochCallback,
        FitResult,
        build_lstm,
        fit_lstm,
        learning_curve_figure,
        load_model,
        predict_lstm,
        save_model,
    )
    from models.forecaster.pyfunc import ForecasterModel, build_preprocess, log_forecaster
    from models.forecaster.service import TrainingSummary, train_and_record
    from models.forecaster.tracking import PREDICTIONS_ARTIFACT, baseline_predictions, log_training
    from models.forecaster.training import (
        LSTM,
        Dataset,
        ForecasterResult,
        prepare_dataset,
        train_forecaster,
        walk_forward,
    )
    from models.forecaster.tuning import SEARCH, tune

_EXPORTS: dict[str, str] = {
    "FORECASTER": "models.forecaster.family",
    "ForecasterFamily": "models.forecaster.family",
    "forecast_positions": "models.forecaster.family",
    "DIR_LOSS_WEIGHT": "models.forecaster.network",
    "EpochCallback": "models.forecaster.network",
    "FitResult": "models.forecaster.network",
    "build_lstm": "models.forecaster.network",
    "fit_lstm": "models.forecaster.network",
    "learning_curve_figure": "models.forecaster.network",
    "load_model": "models.forecaster.network",
    "predict_lstm": "models.forecaster.network",
    "save_model": "models.forecaster.network",
    "ForecasterModel": "models.forecaster.pyfunc",
    "build_preprocess": "models.forecaster.pyfunc",
    "log_forecaster": "models.forecaster.pyfunc",
    "TrainingSummary": "models.forecaster.service",
    "train_and_record": "models.forecaster.service",
    "PREDICTIONS_ARTIFACT": "models.forecaster.tracking",
    "baseline_predictions": "models.forecaster.tracking",
    "log_training": "models.forecaster.tracking",
    "LSTM": "models.forecaster.training",
    "Dataset": "models.forecaster.training",
    "ForecasterResult": "models.forecaster.training",
    "prepare_dataset": "models.forecaster.training",
    "train_forecaster": "models.forecaster.training",
    "walk_forward": "models.forecaster.training",
    "SEARCH": "models.forecaster.tuning",
    "tune": "models.forecaster.tuning",
}

__all__ = [
    "DIR_LOSS_WEIGHT",
    "FORECASTER",
    "LSTM",
    "PREDICTIONS_ARTIFACT",
    "SEARCH",
    "Dataset",
    "EpochCallback",
    "FitResult",
    "ForecasterFamily",
    "ForecasterModel",
    "ForecasterResult",
    "TrainingSummary",
    "baseline_predictions",
    "build_lstm",
    "build_preprocess",
    "fit_lstm",
    "forecast_positions",
    "learning_curve_figure",
    "load_model",
    "log_forecaster",
    "log_training",
    "predict_lstm",
    "prepare_dataset",
    "save_model",
    "train_and_record",
    "train_forecaster",
    "tune",
    "walk_forward",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
