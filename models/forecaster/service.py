"""Train the forecaster on a stored series and record it: what ``fks train forecaster`` runs.

:func:`train_and_record` is :func:`models.trainer.train_and_register` with :data:`FORECASTER`,
summarised as a :class:`TrainingSummary` (the table ``fks train forecaster`` and ``fks pipeline``
print)::

    from backtest.evaluate import strategy_metrics
    from ingestion.features import features_root
    summary = train_and_record(ForecasterConfig(symbol="SPX"), settings, engine=engine,
                               features_root=features_root(settings), evaluate=strategy_metrics)
    summary.test["lstm"]["rmse"], summary.strategies["long_flat"]["sharpe"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from config.models import ForecasterConfig
from models.forecaster.family import FORECASTER
from models.trainer import Evaluator, TrainingOutcome, train_and_register

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.settings import Settings
    from models.forecaster.training import ForecasterResult
    from storage.feature_store import FeatureRootLike

__all__ = ["TrainingSummary", "train_and_record"]


class TrainingSummary(BaseModel):
    """What a forecaster training run produced, for people and for the pipeline summary."""

    symbol: str
    timeframe: str
    run_id: str
    experiment_id: str
    model_uri: str
    registered_name: str
    version: str
    alias: str = "challenger"
    walk_forward_rmse: dict[str, float]
    test: dict[str, dict[str, float]]
    uplift: dict[str, Any]
    strategies: dict[str, dict[str, float]] = {}
    tuned: dict[str, Any] | None = None
    data_window: str

    @classmethod
    def from_outcome(cls, outcome: TrainingOutcome[ForecasterConfig, ForecasterResult]) -> TrainingSummary:
        """The summary of a forecaster's :class:`models.trainer.TrainingOutcome`."""
        config, trained, record = outcome.config, outcome.trained, outcome.record
        lo, hi = trained.windows["train"][0], trained.windows["test"][1]
        return cls(
            symbol=config.symbol,
            timeframe=config.timeframe,
            run_id=record.run_id,
            experiment_id=record.experiment_id,
            model_uri=record.model_uri,
            registered_name=record.registered_name,
            version=record.version,
            walk_forward_rmse={m: s["rmse_mean"] for m, s in trained.walk_forward.items()},
            test=trained.test_metrics,
            uplift=trained.uplift,
            tuned=outcome.tuned,
            strategies=outcome.strategies,
            data_window=f"{lo:%Y-%m-%d} .. {hi:%Y-%m-%d}",
        )


def train_and_record(
    config: ForecasterConfig,
    settings: Settings,
    *,
    engine: Engine,
    features_root: FeatureRootLike,
    evaluate: Evaluator | None = None,
) -> TrainingSummary:
    """Tune (when ``config.tuning`` asks), train, log and register the forecaster; summarise it.

    See :func:`models.trainer.train_and_register` for the arguments; ``evaluate`` is usually
    ``backtest.evaluate.strategy_metrics`` (the test forecasts traded net of default costs).

    Raises:
        InputError: no stored bars, an unknown feature set, or too little history.
    """
    outcome = train_and_register(
        FORECASTER, config, settings, engine=engine, features_root=features_root, evaluate=evaluate
    )
    return TrainingSummary.from_outcome(outcome)
