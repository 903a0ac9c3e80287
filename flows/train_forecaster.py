"""The ``train-forecaster`` flow: features if stale, tune (optionally), train honestly, record, register."""

from __future__ import annotations

from prefect import flow

from config.flows import FeaturesConfig
from config.models import ForecasterConfig
from config.settings import Settings, get_settings
from flows.features import features
from models.forecaster.service import TrainingSummary
from tasks.models import train_forecaster_task


@flow(name="train-forecaster", validate_parameters=False)
def train_forecaster(
    config: ForecasterConfig | None = None, settings: Settings | None = None
) -> TrainingSummary:
    """Train the LSTM forecaster on stored bars; the new version gets the alias ``challenger``.

    The features it needs are built first when they are missing or stale (a cache hit otherwise).
    """
    config = config or ForecasterConfig()
    settings = settings or get_settings()
    features(
        FeaturesConfig(symbols=[config.symbol], timeframe=config.timeframe, feature_set=config.feature_set),
        settings,
    )
    return train_forecaster_task(config, settings)


if __name__ == "__main__":
    train_forecaster()
