"""The RL allocator family: a Stable-Baselines3 agent allocating between N assets and cash.

Modules: :mod:`~models.allocator.training` (the honest recipe: chronological spans with a purge,
``VecNormalize``, early stopping on validation, one test), :mod:`~models.allocator.baselines`
(equal weight, buy and hold, minimum variance, maximum Sharpe as target weights, no look-ahead),
:mod:`~models.allocator.report` (the test backtests' figures, filled by
:mod:`backtest.allocation`), :mod:`~models.allocator.pyfunc` (the MLflow pyfunc that carries its
preprocessing), :mod:`~models.allocator.tracking` (its MLflow run, plots, model card and
registration) and :mod:`~models.allocator.service` (:func:`train_and_record`, the
``fks train allocator`` stage). Its config is :class:`config.models.AllocatorConfig`, whose class
attributes name the registered model and experiment (``fks-allocator``).

Names are imported on first use: ``import models.allocator`` loads no PyTorch or
Stable-Baselines3::

    from models.allocator import train_allocator
    result = train_allocator(bars, get_feature_set("minimal"), AllocatorConfig(symbols=syms))
    result.test.decisions.tail(1)          # the agent's weights at the last test bar
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.exports import lazy_exports

if TYPE_CHECKING:
    from models.allocator.baselines import (
        BASELINES,
        BaselineOptions,
        banded_targets,
        baseline_targets,
        max_sharpe_weights,
        min_variance_weights,
    )
    from models.allocator.pyfunc import AllocatorModel, build_spec, log_allocator
    from models.allocator.report import ALLOCATION_METRICS, AllocationReport
    from models.allocator.service import AllocatorSummary, train_and_record
    from models.allocator.tracking import log_training
    from models.allocator.training import (
        AGENT,
        CASH,
        AllocatorResult,
        PolicyRun,
        SeedRun,
        allocator_data,
        run_policy,
        train_agent,
        train_allocator,
    )
    from models.allocator.tuning import AllocatorTuning, tune, tune_logged

_EXPORTS: dict[str, str] = {
    "BASELINES": "models.allocator.baselines",
    "BaselineOptions": "models.allocator.baselines",
    "banded_targets": "models.allocator.baselines",
    "baseline_targets": "models.allocator.baselines",
    "max_sharpe_weights": "models.allocator.baselines",
    "min_variance_weights": "models.allocator.baselines",
    "AllocatorModel": "models.allocator.pyfunc",
    "build_spec": "models.allocator.pyfunc",
    "log_allocator": "models.allocator.pyfunc",
    "ALLOCATION_METRICS": "models.allocator.report",
    "AllocationReport": "models.allocator.report",
    "AllocatorSummary": "models.allocator.service",
    "train_and_record": "models.allocator.service",
    "log_training": "models.allocator.tracking",
    "AllocatorTuning": "models.allocator.tuning",
    "tune": "models.allocator.tuning",
    "tune_logged": "models.allocator.tuning",
    "AGENT": "models.allocator.training",
    "CASH": "models.allocator.training",
    "AllocatorResult": "models.allocator.training",
    "PolicyRun": "models.allocator.training",
    "SeedRun": "models.allocator.training",
    "allocator_data": "models.allocator.training",
    "run_policy": "models.allocator.training",
    "train_agent": "models.allocator.training",
    "train_allocator": "models.allocator.training",
}

__all__ = [
    "AGENT",
    "ALLOCATION_METRICS",
    "BASELINES",
    "CASH",
    "AllocationReport",
    "AllocatorModel",
    "AllocatorResult",
    "AllocatorSummary",
    "AllocatorTuning",
    "BaselineOptions",
    "PolicyRun",
    "SeedRun",
    "allocator_data",
    "banded_targets",
    "baseline_targets",
    "build_spec",
    "log_allocator",
    "log_training",
    "max_sharpe_weights",
    "min_variance_weights",
    "run_policy",
    "train_agent",
    "train_allocator",
    "train_and_record",
    "tune",
    "tune_logged",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
