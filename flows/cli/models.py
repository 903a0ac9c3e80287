"""``fks models list``: the registered versions, their aliases, data windows, test metrics and
gate decisions.

Exit codes: 0 ok, 2 an unknown model name.
"""

from __future__ import annotations

import json
import math
from typing import Annotated

import typer

from flows.cli._ui import out, run_guarded, table

models_app = typer.Typer(
    help="Registered models: versions, aliases, metrics, gate decisions.", no_args_is_help=True
)

_SHOWN = ("test_rmse", "test_directional_accuracy", "test_ic")


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


@models_app.command("list")
def list_command(
    model: Annotated[str | None, typer.Option(help="Only this registered model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every field as JSON.")] = False,
) -> None:
    """Every registered version, newest first: aliases, data window, test metrics, gate decision."""
    from config.settings import get_settings
    from models.registry import list_versions
    from models.tracking import use_tracking

    def run() -> None:
        use_tracking(get_settings().mlflow_tracking_uri)
        versions = list_versions(model)
        if as_json:
            records = [
                {**v.__dict__, "aliases": list(v.aliases), "created": v.created.isoformat()} for v in versions
            ]
            out.print_json(json.dumps(records, default=str))
            return
        if not versions:
            out.print("No registered models. Train one with `fks train forecaster` (or `fks pipeline`).")
            return
        rows = [
            [
                v.name,
                v.version,
                ", ".join(v.aliases) or "-",
                f"{v.created:%Y-%m-%d %H:%M}",
                v.data_window or "-",
                *(_num(v.metrics.get(k)) for k in _SHOWN),
                v.gate or "-",
            ]
            for v in versions
        ]
        columns = [
            "model",
            "version",
            "aliases",
            "registered (UTC)",
            "data window",
            "test RMSE",
            "dir. acc.",
            "IC",
            "gate",
        ]
        out.print(table("Registered models", columns, rows, {"test RMSE", "dir. acc.", "IC"}))

    run_guarded(run)
