"""``fks backtest``: a registered model on its out-of-sample window, net of costs, with a tearsheet.

Exit codes: 0 done, 2 bad input (an unknown model, a threshold that is not a number, a history
shorter than the model needs or longer than the stored bars allow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from config.models import ForecasterConfig
from flows.cli._ui import err, run_guarded
from flows.cli.render import print_backtest

if TYPE_CHECKING:
    from config.settings import Settings

_DEFAULT_MODEL = f"{ForecasterConfig.registered_name}@challenger"


def check_history(model: str, family: str, history: int, settings: Settings) -> None:
    """Refuse ``--history`` below the model's ``min_bars`` or beyond the bars stored before its window.

    Raises:
        InputError: naming the model's ``min_bars`` or the bars stored before its test window.
        LookupError: an unknown model, alias or version (the message names ``fks train``).
    """
    import mlflow

    from config.flows import InputError
    from models.family import get_family
    from models.registry import resolve_model
    from models.tracking import use_tracking
    from storage import read_bars
    from tasks.store import store_for

    use_tracking(settings.mlflow_tracking_uri)
    ref = resolve_model(model, family=get_family(family))
    logged = mlflow.MlflowClient().get_run(ref.run_id).data.params.get("min_bars")
    if logged is not None and history < int(logged):
        raise InputError(
            f"--history {history} is below the {logged} raw bars {ref.name} v{ref.version} needs per "
            f"forecast (its min_bars); give --history {logged} or more, or leave it out"
        )
    with store_for(settings).connect() as conn:
        before = len(read_bars(conn, ref.symbol, ref.timeframe, end=ref.test_start))
    if before + 1 < history:
        raise InputError(
            f"--history {history} needs {history - 1} {ref.symbol} {ref.timeframe} bars before the "
            f"test window ({ref.test_start:%Y-%m-%d}), {before} are stored; give --history "
            f"{max(before + 1, int(logged or 1))} or less, or ingest earlier history (`fks backfill`)"
        )


def backtest_command(
    model: Annotated[str, typer.Option(help="name@alias or name/version.")] = _DEFAULT_MODEL,
    strategy: Annotated[str, typer.Option(help="long_flat or long_short.")] = "long_flat",
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Forecast log return to act on: long_flat is long above it, long_short long above "
            "it and short below minus it (default 0). Forecasters only."
        ),
    ] = None,
    history: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Raw bars sent with each forecast request (default the model's min_bars; any number "
            "from min_bars on gives the same forecasts). Forecasters only.",
        ),
    ] = None,
    commission_bps: Annotated[float, typer.Option(help="Commission per trade, bps of notional.")] = 1.0,
    slippage_bps: Annotated[float, typer.Option(help="Slippage per trade, bps of notional.")] = 2.0,
    windows: Annotated[int, typer.Option(help="Walk-forward blocks in the out-of-sample window.")] = 3,
) -> None:
    """Backtest a registered model on its out-of-sample window net of costs; write the tearsheet."""
    from config.backtest import BacktestConfig
    from config.settings import get_settings
    from flows.backtest import backtest

    def run() -> None:
        import math

        from config.flows import InputError
        from config.models import AllocatorConfig, family_of_model

        family = family_of_model(model.split("@", 1)[0].split("/", 1)[0])
        options = (("--threshold", threshold), ("--history", history))
        given = [name for name, value in options if value is not None]
        if family == AllocatorConfig.family and given:
            raise InputError(
                f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} to a forecaster; "
                "the allocator's output is target "
                "weights, traded as they are from each symbol's min_bars raw bars"
            )
        if threshold is not None and not math.isfinite(threshold):
            raise InputError(f"--threshold must be a finite log return (e.g. 0.001), got {threshold}")
        config = BacktestConfig.model_validate(
            {
                "family": family,
                "model": model,
                "strategy": strategy,
                "windows": windows,
                "costs": {"commission_bps": commission_bps, "slippage_bps": slippage_bps},
                **({} if threshold is None else {"threshold": threshold}),
                **({} if history is None else {"history": history}),
            }
        )
        settings = get_settings()
        if history is not None:
            check_history(config.model, family, history, settings)
        with err.status(f"backtesting {model}"):
            summary = backtest(config, settings)
        print_backtest(summary)

    run_guarded(run)
