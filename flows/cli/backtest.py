"""``fks backtest``: a registered model on its out-of-sample window, net of costs, with a tearsheet."""

from __future__ import annotations

from typing import Annotated

import typer

from config.models import ForecasterConfig
from flows.cli._ui import err, run_guarded
from flows.cli.render import print_backtest

_DEFAULT_MODEL = f"{ForecasterConfig.registered_name}@challenger"


def backtest_command(
    model: Annotated[str, typer.Option(help="name@alias or name/version.")] = _DEFAULT_MODEL,
    strategy: Annotated[str, typer.Option(help="long_flat or long_short.")] = "long_flat",
    commission_bps: Annotated[float, typer.Option(help="Commission per trade, bps of notional.")] = 1.0,
    slippage_bps: Annotated[float, typer.Option(help="Slippage per trade, bps of notional.")] = 2.0,
    windows: Annotated[int, typer.Option(help="Walk-forward blocks in the out-of-sample window.")] = 3,
) -> None:
    """Backtest a registered model on its out-of-sample window net of costs; write the tearsheet."""
    from config.backtest import BacktestConfig
    from config.settings import get_settings
    from flows.backtest import backtest

    def run() -> None:
        from config.models import family_of_model

        config = BacktestConfig.model_validate(
            {
                "family": family_of_model(model.split("@", 1)[0].split("/", 1)[0]),
                "model": model,
                "strategy": strategy,
                "windows": windows,
                "costs": {"commission_bps": commission_bps, "slippage_bps": slippage_bps},
            }
        )
        with err.status(f"backtesting {model}"):
            summary = backtest(config, get_settings())
        print_backtest(summary)

    run_guarded(run)
