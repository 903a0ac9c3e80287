"""Train a family's model on a stored series and record it: the training service behind ``fks train``.

:func:`train_and_register` is the whole stage, usable from a notebook without Prefect::

    from ingestion.features import features_root
    from models import get_family, train_and_register
    from storage import open_store

    outcome = train_and_register(
        get_family("forecaster"), ForecasterConfig(symbol="SPX"), settings,
        engine=open_store(settings.db_url), features_root=features_root(settings),
    )
    outcome.record.registered_name, outcome.record.version    # "fks-forecaster", "3"

Steps: the stored (validated) bars of ``config.symbol`` and the stored features of its feature
set (:func:`load_training_data`); Optuna tuning first when ``config.tuning`` asks for it (the
family's search space, :func:`models.tuning.tune_logged`; the best configuration is then
trained); the family's honest training; its MLflow run, registration and ``challenger`` alias;
then, when ``evaluate`` is given, figures computed on the trained model's test output (the
caller's backtests: ``backtest.evaluate.strategy_metrics``; ``models/`` itself never imports
``backtest/``) logged on the run as ``test_<strategy>_<metric>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from config.flows import InputError
from features import FeatureSet, get_feature_set
from models.family import FamilyConfig, ModelFamily, Trained, TrainingData
from models.tracking import TrainingRecord, log_run_metrics

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.settings import Settings
    from storage.feature_store import FeatureRootLike

__all__ = ["Evaluator", "TrainingOutcome", "load_training_data", "train_and_register"]

C = TypeVar("C", bound=FamilyConfig)
T = TypeVar("T", bound=Trained)

Evaluator = Callable[[ModelFamily[Any, Any], Trained, TrainingData], Mapping[str, Mapping[str, float]]]
"""``evaluate(family, trained, data) -> {strategy: {metric: value}}``: figures of a trained model
(e.g. its test output traded net of costs), logged on its run as ``test_<strategy>_<metric>``."""


@dataclass(frozen=True)
class TrainingOutcome(Generic[C, T]):
    """What :func:`train_and_register` produced.

    Attributes:
        config: the configuration trained (the tuned one when tuning ran).
        trained: the family's training result (its test metrics, fitted model, ...).
        record: where the run and the registered version landed.
        strategies: ``evaluate``'s figures, ``{strategy: {metric: value}}`` (empty without it).
        tuned: the tuning summary (:meth:`models.tuning.TuningResult.summary`), or None.
    """

    config: C
    trained: T
    record: TrainingRecord
    strategies: dict[str, dict[str, float]] = field(default_factory=dict)
    tuned: dict[str, Any] | None = None


def load_training_data(
    engine: Engine, features_root: FeatureRootLike, *, symbol: str, timeframe: str, feature_set: FeatureSet
) -> TrainingData:
    """The stored bars of a series, the feature set's stored features of them and the asset's calendar.

    Raises:
        InputError: no stored bars of the series.
    """
    from storage import get_asset, read_bars, read_features

    with engine.connect() as conn:
        bars = read_bars(conn, symbol, timeframe)
        stored = None
        asset = None
        if not bars.empty:
            stored = read_features(
                conn,
                features_root,
                set_name=feature_set.name,
                set_version=feature_set.version,
                symbol=symbol,
                timeframe=timeframe,
            )
            asset = get_asset(conn, symbol)
    if bars.empty:
        raise InputError(
            f"no stored {timeframe} bars for {symbol}; run `fks ingest` first (see `fks data list`)"
        )
    return TrainingData(
        bars=bars,
        feature_set=feature_set,
        features=stored,
        calendar=asset.calendar if asset else None,
        timeframe=timeframe,
    )


def train_and_register(
    family: ModelFamily[C, T],
    config: C,
    settings: Settings,
    *,
    engine: Engine,
    features_root: FeatureRootLike,
    evaluate: Evaluator | None = None,
) -> TrainingOutcome[C, T]:
    """Tune (when asked), train, log and register ``family``'s model on a stored series.

    Args:
        family: the model family (:func:`models.family.get_family`).
        config: its config (``symbol``, ``timeframe``, ``feature_set``, ``seed``, ``tuning``, ...).
        settings: the MLflow store (``mlflow_tracking_uri``, ``mlflow_artifact_root``) and the
            database holding the Optuna study (``db_url``).
        engine: the FKS store holding the bars and the feature-store index.
        features_root: where the feature builds are (:func:`ingestion.features.features_root`).
        evaluate: figures of the trained model to log on its run (see :data:`Evaluator`).

    Returns:
        The :class:`TrainingOutcome`; the new version has the alias ``challenger``.

    Raises:
        InputError: an unknown or research-only feature set, no stored bars, too little history
            for the config, or tuning asked of a family without a search space.
    """
    try:
        feature_set = get_feature_set(config.feature_set)
        _ = feature_set.min_history  # a research-only set cannot be trained for serving
    except ValueError as exc:
        raise InputError(str(exc)) from None
    data = load_training_data(
        engine, features_root, symbol=config.symbol, timeframe=config.timeframe, feature_set=feature_set
    )
    tuned: dict[str, Any] | None = None
    if config.tuning.trials > 0 or config.tuning.timeout_s:
        from models.tuning import tune_logged

        space = family.search_space
        if space is None:
            raise InputError(f"the {family.name} family cannot be tuned; set tuning.trials to 0")
        try:
            result = tune_logged(
                space,
                data.bars,
                feature_set,
                config,
                storage_url=settings.db_url,
                tracking_uri=settings.mlflow_tracking_uri,
                artifact_root=settings.mlflow_artifact_root,
                experiment=family.experiment,
            )
        except ValueError as exc:  # too little history for the config: bad input, as without tuning
            raise InputError(str(exc)) from None
        config = result.best_config
        tuned = result.summary()
    try:
        trained = family.train(data, config)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    record = family.log(trained, data, settings, tuning=tuned)
    strategies: dict[str, dict[str, float]] = {}
    if evaluate is not None:
        strategies = {name: dict(values) for name, values in evaluate(family, trained, data).items()}
        log_run_metrics(
            record.run_id,
            {f"test_{name}_{key}": v for name, values in strategies.items() for key, v in values.items()},
        )
    return TrainingOutcome(config=config, trained=trained, record=record, strategies=strategies, tuned=tuned)
