"""``fks train``: train models, tracked in MLflow and registered with the alias challenger."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar, cast

import typer
from pydantic import BaseModel

from flows.cli._ui import err, run_guarded
from flows.cli.render import print_allocator_training, print_training

if TYPE_CHECKING:
    from config.models import AllocatorConfig, ForecasterConfig

M = TypeVar("M", bound=BaseModel)

train_app = typer.Typer(
    help="Train models (tracked in MLflow, registered with the alias challenger).", no_args_is_help=True
)

QUICK_FORECASTER: dict[str, int | list[int]] = {
    "units": [16],
    "epochs": 5,
    "patience": 2,
    "walk_forward.folds": 2,
    "tuning.trials": 3,
    "tuning.epochs": 2,
}
"""The ``--quick`` preset of ``fks train forecaster`` (ForecasterConfig fields, dotted for nested ones)."""


QUICK_ALLOCATOR: dict[str, int] = {
    "timesteps": 4096,
    "n_envs": 4,
    "n_steps": 128,
    "eval_every": 1024,
    "patience": 3,
    "tuning.timesteps": 1024,
}
"""The ``--quick`` preset of ``fks train allocator`` (AllocatorConfig fields): a smoke run in seconds."""


def forecaster_config(
    config_file: Path | None, preset: Mapping[str, object], overrides: Mapping[str, object]
) -> ForecasterConfig:
    """ForecasterConfig from an optional YAML/JSON file, then a preset, then command-line overrides
    (``None`` values are skipped; ``outer.inner`` keys set a nested field).

    Raises :class:`config.flows.InputError` when the file cannot be read or is not a mapping, and
    pydantic's ``ValidationError`` when the fields are invalid.
    """
    from config.models import ForecasterConfig

    return model_config(ForecasterConfig, config_file, preset, overrides)


def allocator_config(
    config_file: Path | None, preset: Mapping[str, object], overrides: Mapping[str, object]
) -> AllocatorConfig:
    """AllocatorConfig from an optional YAML/JSON file, then a preset, then command-line overrides
    (as :func:`forecaster_config`)."""
    from config.models import AllocatorConfig

    return model_config(AllocatorConfig, config_file, preset, overrides)


def read_mapping(config_file: Path, what: str) -> dict[str, object]:
    """The mapping in a YAML or JSON file (an empty file is an empty mapping).

    Raises :class:`config.flows.InputError` naming the file when it cannot be read or parsed, or
    holds something other than a mapping of ``what`` fields.
    """
    import yaml

    from config.flows import InputError

    try:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{config_file}: cannot read the config ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{config_file}: expected a mapping of {what} fields")
    return data


def model_config(
    cls: type[M], config_file: Path | None, preset: Mapping[str, object], overrides: Mapping[str, object]
) -> M:
    """``cls`` from an optional YAML/JSON file, then a preset, then command-line overrides
    (``None`` values are skipped; ``outer.inner`` keys set a nested field).

    Raises :class:`config.flows.InputError` when the file cannot be read or is not a mapping, and
    pydantic's ``ValidationError`` when the fields are invalid.
    """
    data = read_mapping(config_file, cls.__name__) if config_file is not None else {}
    for key, value in [*preset.items(), *overrides.items()]:
        if value is not None:
            if "." in key:
                outer, inner = key.split(".", 1)
                # the nested field's mapping, from the file or new (a non-mapping fails as before)
                cast("dict[str, object]", data.setdefault(outer, {}))[inner] = value
            else:
                data[key] = value
    return cls.model_validate(data)


@train_app.command("forecaster")
def forecaster_command(
    symbol: Annotated[str | None, typer.Option(help="Stored series to train on (default SPX).")] = None,
    timeframe: Annotated[str | None, typer.Option(help="1m, 1h or 1d (default 1d).")] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="YAML/JSON of ForecasterConfig fields.")
    ] = None,
    feature_set: Annotated[str | None, typer.Option("--set", help="Feature set (default: default).")] = None,
    horizon: Annotated[int | None, typer.Option(help="Forecast horizon in bars.")] = None,
    lookback: Annotated[int | None, typer.Option(help="Window length in bars.")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Maximum epochs (early stopping may stop sooner).")
    ] = None,
    folds: Annotated[int | None, typer.Option(help="Walk-forward folds.")] = None,
    trials: Annotated[int | None, typer.Option(help="Optuna trials before training (0: no tuning).")] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Worker processes running Optuna trials at once (one shared study).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of everything random.")] = None,
    quick: Annotated[
        bool, typer.Option(help="A small model and 3 short trials: a first look in a minute or two.")
    ] = False,
) -> None:
    """Train the LSTM forecaster (purged splits, walk-forward, baselines, one test) and register it."""
    from config.settings import get_settings
    from flows.train_forecaster import train_forecaster

    def run() -> None:
        preset = QUICK_FORECASTER if quick else {}
        config = forecaster_config(
            config_file,
            preset,
            {
                "symbol": symbol.upper() if symbol else None,
                "timeframe": timeframe,
                "feature_set": feature_set,
                "horizon": horizon,
                "lookback": lookback,
                "epochs": epochs,
                "walk_forward.folds": folds,
                "tuning.trials": trials,
                "tuning.jobs": jobs,
                "seed": seed,
            },
        )
        with err.status(f"training the forecaster on {config.symbol} {config.timeframe}"):
            summary = train_forecaster(config, get_settings())
        print_training(summary)

    run_guarded(run)


@train_app.command("allocator")
def allocator_command(
    symbols: Annotated[
        str | None, typer.Option(help="The universe, comma separated (at least two stored symbols).")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="1m, 1h or 1d (default 1d).")] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="YAML/JSON of AllocatorConfig fields.")
    ] = None,
    feature_set: Annotated[str | None, typer.Option("--set", help="Feature set (default: minimal).")] = None,
    timesteps: Annotated[
        int | None, typer.Option(help="Training steps per seed (early stopping may stop sooner).")
    ] = None,
    algo: Annotated[str | None, typer.Option(help="ppo (default) or sac.")] = None,
    window: Annotated[int | None, typer.Option(help="Feature rows per asset in an observation.")] = None,
    trials: Annotated[int | None, typer.Option(help="Optuna trials before training (0: no tuning).")] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Worker processes running Optuna trials at once (one shared study).")
    ] = None,
    envs: Annotated[int | None, typer.Option(help="Training environments stepped together.")] = None,
    subproc: Annotated[
        bool,
        typer.Option("--subproc", help="Step each training environment in its own process (SubprocVecEnv)."),
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of everything random (one agent).")] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="Several seeds, comma separated: one agent each, the best on validation kept."),
    ] = None,
    quick: Annotated[bool, typer.Option(help="A few thousand steps: a smoke run in seconds.")] = False,
) -> None:
    """Train the RL allocator (purged spans, early stopping on validation, one test beside the
    baselines, net of costs) and register it."""
    from config.settings import get_settings
    from flows.train_allocator import train_allocator

    def run() -> None:
        from config.flows import InputError

        if seed is not None and seeds is not None:
            raise InputError("give --seed or --seeds, not both")
        chosen: list[int] | None = [seed] if seed is not None else None
        if seeds is not None:
            try:
                chosen = [int(s) for s in seeds.split(",") if s.strip()]
            except ValueError:
                raise InputError(
                    f"--seeds must be whole numbers separated by commas, got {seeds!r}"
                ) from None
        config = allocator_config(
            config_file,
            QUICK_ALLOCATOR if quick else {},
            {
                "symbols": symbols,
                "timeframe": timeframe,
                "feature_set": feature_set,
                "timesteps": timesteps,
                "algo": algo,
                "window": window,
                "tuning.trials": trials,
                "tuning.jobs": jobs,
                "n_envs": envs,
                "subproc": True if subproc else None,
                "seeds": chosen,
            },
        )
        with err.status(f"training the allocator on {', '.join(config.symbols)} {config.timeframe}"):
            summary = train_allocator(config, get_settings())
        print_allocator_training(summary)

    run_guarded(run)
