"""``fks promote`` and ``fks rollback``: move the registry's champion alias, through the gate or back.

Exit codes: 0 promoted (or rolled back), 4 refused by the gate (the reasons are printed), 2 bad input.
"""

from __future__ import annotations

from typing import Annotated

import typer

from config.models import ForecasterConfig
from flows.cli._ui import EXIT_REFUSED, actor, err, out, run_guarded
from flows.cli.render import print_promotion

_DEFAULT_MODEL = ForecasterConfig.registered_name


def promote_command(
    model: Annotated[str, typer.Option(help="Registered model name.")] = _DEFAULT_MODEL,
    force: Annotated[
        bool, typer.Option(help="Promote even if the gate refuses (recorded as forced).")
    ] = False,
    metric: Annotated[str, typer.Option(help="Primary metric of the gate.")] = "sharpe",
    margin: Annotated[float, typer.Option(help="Required margin over the champion.")] = 0.05,
    min_trades: Annotated[int, typer.Option(help="Guard: fewest trades the challenger must make.")] = 10,
    max_drawdown: Annotated[
        float, typer.Option(help="Guard: worst max drawdown allowed (e.g. -0.35).")
    ] = -0.35,
) -> None:
    """The gate: promote the challenger only if it beats the champion and the baselines net of costs.

    Exit 0 when promoted, 4 when refused (the reasons are printed).
    """
    from config.backtest import PromoteConfig
    from config.settings import get_settings
    from flows.promote import promote

    def run() -> None:
        from config.models import family_of_model

        config = PromoteConfig.model_validate(
            {
                "family": family_of_model(model),
                "model": model,
                "force": force,
                "actor": actor(),
                "policy": {
                    "primary_metric": metric,
                    "min_margin_vs_champion": margin,
                    "min_trades": min_trades,
                    "max_drawdown_floor": max_drawdown,
                },
            }
        )
        with err.status(f"judging {model}@challenger"):
            summary = promote(config, get_settings())
        print_promotion(summary)
        if not summary.promoted:
            raise typer.Exit(EXIT_REFUSED)

    run_guarded(run)


def rollback_command(
    model: Annotated[str, typer.Option(help="Registered model name.")] = _DEFAULT_MODEL,
    reason: Annotated[str, typer.Option(help="Why: kept on the version and in the promotions table.")] = "",
) -> None:
    """Give the champion alias back to the previous champion."""
    from config.settings import get_settings
    from tasks.promote import rollback_model

    def run() -> None:
        restored = rollback_model(model, get_settings(), actor=actor(), reason=reason)
        out.print(f"{model}@champion is version {restored} again")

    run_guarded(run)
