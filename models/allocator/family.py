"""The allocator as a model family (:class:`models.family.ModelFamily`): :data:`ALLOCATOR`.

Its names come from :class:`config.models.AllocatorConfig` (registered model and experiment
``fks-allocator``; baselines ``equal_weight``, ``min_variance``, ``max_sharpe``). The shared
single-series parts of the protocol (training on one stored series, positions from a forecast)
do not apply to a universe: the allocator trains with :func:`models.allocator.service.train_and_record`
(``fks train allocator``) and is judged by :func:`backtest.allocation.run_allocation_gate`, which
the promotion gate dispatches to for this family. The registry, aliases and records are shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import pandas as pd

from config.models import AllocatorConfig
from models.family import TrainingData

if TYPE_CHECKING:
    from config.settings import Settings
    from models.tracking import TrainingRecord

__all__ = ["ALLOCATOR", "FAMILY", "AllocatorFamily"]

_UNIVERSE = (
    "the allocator works on a universe of symbols, not one series: train it with "
    "`fks train allocator --symbols A,B,C,D,E` (models.allocator.service.train_and_record)"
)


class AllocatorFamily:
    """The RL allocator family; use the instance :data:`ALLOCATOR`."""

    name = AllocatorConfig.family
    registered_name = AllocatorConfig.registered_name
    experiment = AllocatorConfig.experiment
    baselines = AllocatorConfig.baselines
    train_command = "fks train allocator"
    search_space = None  # tuned by models.allocator.tuning on validation reward, not the shared search

    def train(self, data: TrainingData, config: AllocatorConfig) -> NoReturn:
        """Not a single-series family.

        Raises:
            ValueError: always; the message says how to train it.
        """
        raise ValueError(_UNIVERSE)

    def log(
        self, trained: Any, data: TrainingData, settings: Settings, *, tuning: Mapping[str, Any] | None = None
    ) -> TrainingRecord:
        """Not a single-series family.

        Raises:
            ValueError: always; the message says how to train and record it.
        """
        raise ValueError(_UNIVERSE)

    def positions(self, output: pd.DataFrame | pd.Series, *, strategy: str, threshold: float) -> pd.Series:
        """Not a single-series family: its output is already weights per symbol.

        Raises:
            ValueError: always.
        """
        raise ValueError("the allocator's output is target weights per symbol; trade them as they are")

    def baseline_outputs(self, run_id: str, *, strict: bool = False) -> pd.DataFrame | None:
        """None: the allocator's baselines are recomputed on the gate's window from the bars
        (:mod:`models.allocator.baselines`), never read from the run.

        Raises:
            LookupError: with ``strict``.
        """
        if strict:
            raise LookupError(
                "the allocator logs no baseline outputs; its baselines are recomputed from the bars"
            )
        return None


ALLOCATOR = AllocatorFamily()
"""The allocator family."""

FAMILY = ALLOCATOR
"""This subpackage's family, as :func:`models.family.get_family` finds it."""
