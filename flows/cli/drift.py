"""``fks drift``: input drift of a served model, its served features against its training data.

Per feature: served inputs, PSI over the training deciles, the Kolmogorov-Smirnov statistic and
p-value, and the verdict (``stable``, ``shift``, ``drift``, ``too few inputs``); then the overall
verdict. See :mod:`models.drift`.

Exit codes: 0 the report was made (drifted or not: it is a report), 1 it could not be made (an
unknown model or version, a training reference that cannot be read or rebuilt).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from config.models import ForecasterConfig
from flows.cli._ui import EXIT_UNEXPECTED, err, fmt_ts, out, run_guarded, table

if TYPE_CHECKING:
    from models.drift import DriftReport

_DEFAULT_MODEL = ForecasterConfig.registered_name
_COLOURS = {"stable": "green", "too few inputs": "yellow", "shift": "yellow", "drift": "red"}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_drift(report: DriftReport) -> None:
    """The report as a table (feature | n | PSI | KS | p | verdict) and the overall verdict."""
    rows = [
        [
            f.feature,
            str(f.n_served),
            _fmt(f.psi, ".3f"),
            _fmt(f.ks_statistic, ".3f"),
            _fmt(f.ks_pvalue, ".3g"),
            f"[{_COLOURS.get(f.verdict, 'white')}]{f.verdict}[/]",
        ]
        for f in report.features
    ]
    title = f"Input drift of {report.model} v{report.version}"
    out.print(table(title, ["feature", "n", "PSI", "KS", "p", "verdict"], rows, {"n", "PSI", "KS", "p"}))
    t = report.thresholds
    colour = _COLOURS.get(report.verdict, "white")
    out.print(
        f"{report.n_served} served input(s) from {fmt_ts(report.window_start)} to "
        f"{fmt_ts(report.window_end)} UTC against the training features; shift from PSI "
        f"{t.get('psi_warn')} or KS p < {t.get('ks_pvalue')}, drift from PSI {t.get('psi_alert')}, "
        f"a verdict from {int(t.get('min_samples', 0))} inputs",
        soft_wrap=True,
        highlight=False,
    )
    out.print(f"overall: [bold {colour}]{report.verdict}[/]")


def drift_command(
    model: Annotated[str, typer.Option(help="Registered model name.")] = _DEFAULT_MODEL,
    version: Annotated[
        str | None, typer.Option(help="Model version (default: @champion, else @challenger).")
    ] = None,
    hours: Annotated[
        float | None, typer.Option(help="Served inputs of the last H hours (default FKS_DRIFT_WINDOW_HOURS).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Input drift of a served model: PSI and Kolmogorov-Smirnov per feature against its training data.

    Exit 0 with the report (drifted or not), 1 when it cannot be made."""
    from pydantic import ValidationError

    from config.settings import get_settings
    from models.drift import model_drift
    from tasks.store import store_for

    def run() -> None:
        settings = get_settings()
        with err.status(f"drift of {model}"):
            report = model_drift(settings, store_for(settings), model, version=version, hours=hours)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            print_drift(report)

    # bad settings: the standard handling (exit 2); no report: exit 1 with the message
    run_guarded(run, (ValidationError, None), (LookupError, EXIT_UNEXPECTED), (ValueError, EXIT_UNEXPECTED))
