"""Prefect tasks of the features stage: list the stored series, then build, validate and store a
feature set per series (:mod:`ingestion.features` does the work)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from config.flows import FeaturesConfig
from config.settings import Settings
from ingestion.features import (
    FeaturesOutcome,
    FeaturesTarget,
    feature_targets,
    featurise_series,
)
from tasks.store import store_for

__all__ = ["build_series_features", "plan_features"]


@task(name="plan-features", cache_policy=NONE)
def plan_features(config: FeaturesConfig, settings: Settings) -> list[FeaturesTarget]:
    """The stored series to featurise (:func:`ingestion.features.feature_targets`)."""
    return feature_targets(store_for(settings), config)


@task(name="build-features", task_run_name="features-{target.symbol}-{target.timeframe}", cache_policy=NONE)
def build_series_features(target: FeaturesTarget, settings: Settings) -> FeaturesOutcome:
    """Build ``target``'s feature set unless an identical build exists, validate and store it
    (:func:`ingestion.features.featurise_series`)."""
    return featurise_series(store_for(settings), settings, target)
