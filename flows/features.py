"""The ``features`` flow: one mapped task per stored series builds, validates and stores a feature set.

``python -m flows.features --feature-set default`` runs it without the CLI (see ``--help``).
"""

from __future__ import annotations

from prefect import flow, unmapped

from config.flows import FeaturesConfig
from config.settings import Settings, get_settings
from flows._main import run_from_argv
from ingestion.features import FeaturesSummary
from tasks.features import build_series_features, plan_features
from tasks.runners import fanned_out


@flow(name="features", validate_parameters=False)
def features(config: FeaturesConfig | None = None, settings: Settings | None = None) -> FeaturesSummary:
    """Build the named feature set for stored series; unchanged inputs are cache hits."""
    config = config or FeaturesConfig()
    settings = settings or get_settings()
    targets = plan_features(config, settings)
    futures = build_series_features.map(targets, settings=unmapped(settings))
    return FeaturesSummary(batch_id=config.batch_id, outcomes=[f.result() for f in futures])


if __name__ == "__main__":
    run_from_argv(fanned_out(features, get_settings()), FeaturesConfig)
