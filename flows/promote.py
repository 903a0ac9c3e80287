"""The ``promote`` flow: the gate between a model's challenger and its champion."""

from __future__ import annotations

from prefect import flow

from config.backtest import PromoteConfig
from config.settings import Settings, get_settings
from models.promotion import PromotionSummary
from tasks.promote import gate_model


@flow(name="promote", validate_parameters=False)
def promote(config: PromoteConfig | None = None, settings: Settings | None = None) -> PromotionSummary:
    """Promote ``config.model``'s challenger only if it beats the champion and the baselines, net of costs."""
    return gate_model(config or PromoteConfig(), settings or get_settings())


if __name__ == "__main__":
    promote()
