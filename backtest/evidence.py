"""Evidence of a promotion gate's run: the tearsheet of the backtests it decided on, in a report
folder of its own (:func:`backtest.report.new_report_folder`), and its decision beside it.

Used by both gates (:func:`backtest.promotion.run_gate`,
:func:`backtest.allocation.run_allocation_gate`); the ``promotions`` row links the tearsheet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

    from backtest.engine import BacktestResult, Costs
    from config.settings import Settings
    from models.gate import ComparisonWindow
    from models.registry import ModelRef

__all__ = ["write_decision", "write_gate_tearsheet"]


def write_gate_tearsheet(
    settings: Settings,
    challenger: ModelRef,
    strategy: str,
    results: Mapping[str, BacktestResult],
    *,
    title: str,
    window: ComparisonWindow,
    costs: Costs,
    notes: Sequence[str] = (),
) -> Path:
    """The tearsheet of the backtests a gate decides on (the challenger first), in a new folder of
    its own (:func:`backtest.report.new_report_folder`, named ``<strategy>-<time>-<run id>`` under
    the challenger's ``reports/backtests/<model>-v<version>/``); returns the page's path, which
    the promotion record keeps."""
    from backtest.report import new_report_folder, write_tearsheet

    folder = new_report_folder(settings.data_dir, challenger.name, challenger.version, strategy)
    narrowed = ", narrowed" if window.narrowed else ""
    return write_tearsheet(
        results,
        folder,
        title=title,
        subtitle=f"comparison window {window.start:%Y-%m-%d} .. {window.end:%Y-%m-%d}{narrowed}, "
        "out of sample for both, net of costs",
        costs=costs,
        notes=notes,
    )


def write_decision(tearsheet: Path, summary: BaseModel) -> Path:
    """Write the gate's decision (``summary``, as JSON) as ``decision.json`` beside its tearsheet."""
    path = Path(tearsheet).parent / "decision.json"
    path.write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    return path
