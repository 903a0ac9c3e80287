"""``fks features``: build a feature set from stored bars, validate it and store it."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli._ui import err, run_guarded, symbol_list
from flows.cli.render import print_features


def features_command(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: every stored series).")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe: 1m, 1h or 1d.")] = None,
    feature_set: Annotated[
        str, typer.Option("--set", help="Feature set name (config/feature_sets.yaml).")
    ] = "default",
) -> None:
    """Build a feature set from stored bars, validate it and store it (unchanged bars are a cache hit)."""
    from config.flows import FeaturesConfig
    from config.settings import get_settings
    from flows.features import features as features_flow
    from tasks.runners import fanned_out

    def run() -> None:
        config = FeaturesConfig(
            symbols=symbol_list(None, symbols), timeframe=timeframe, feature_set=feature_set
        )
        settings = get_settings()
        with err.status("building features"):
            summary = fanned_out(features_flow, settings)(config, settings)
        print_features(summary.outcomes)

    run_guarded(run)
