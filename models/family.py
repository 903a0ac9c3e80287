"""Model families: the one protocol through which the shared parts see a family.

A family (``forecaster`` today, ``allocator`` next) lives in its own subpackage
(``models/forecaster/``) and offers one object that implements :class:`ModelFamily`: its names
(registered model, experiment, baselines), how it trains on one series, how it logs and
registers a run, and how its model's output becomes positions. The shared parts take such an
object instead of a hard-coded name: :mod:`models.trainer` (train, tune, log, register),
:mod:`models.tuning` (through its :attr:`ModelFamily.search_space`), :mod:`models.registry`
(``family.registered_name``), :mod:`models.tracking` (``family.experiment``) and the evaluation
and promotion gate in ``backtest/`` (``family.positions``, ``family.baseline_outputs``)::

    from models import get_family

    forecaster = get_family("forecaster")        # models.forecaster.FORECASTER
    forecaster.registered_name                   # "fks-forecaster"
    positions = forecaster.positions(output, strategy="long_flat", threshold=0.0)

The names come from the family's config class (:func:`config.models.family_config`), so the
registered name is written in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pandas as pd

if TYPE_CHECKING:
    from config.models import TuningConfig
    from config.settings import Settings
    from features import FeatureSet
    from models.tracking import TrainingRecord
    from models.tuning import SearchSpace

__all__ = ["AnyFamily", "FamilyConfig", "ModelFamily", "Trained", "TrainingData", "get_family"]


class FamilyConfig(Protocol):
    """What the shared training parts read of a family's config (:class:`config.models.ForecasterConfig`)."""

    @property
    def symbol(self) -> str: ...
    @property
    def timeframe(self) -> str: ...
    @property
    def feature_set(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def tuning(self) -> TuningConfig: ...


class Trained(Protocol):
    """What a family's :meth:`ModelFamily.train` returns, as the shared parts see it."""

    @property
    def test_output(self) -> pd.DataFrame:
        """The model's output on its test block, one row per decision bar (UTC ``ts`` index), in
        the columns its pyfunc returns (what :meth:`ModelFamily.positions` takes)."""
        ...


@dataclass(frozen=True)
class TrainingData:
    """One stored series to train on.

    Attributes:
        bars: canonical bars (UTC ``ts`` index; ``open, high, low, close, volume``).
        feature_set: the feature set the model is trained on.
        features: that set's stored features of exactly these bars (the feature store), or None
            to build them.
        calendar: the asset's calendar name (``XNYS``, ``24/7``, ...), or None when the asset is
            not registered.
        timeframe: the bars' timeframe (``1m``, ``1h``, ``1d``), or None when not known.
    """

    bars: pd.DataFrame
    feature_set: FeatureSet
    features: pd.DataFrame | None = None
    calendar: str | None = None
    timeframe: str | None = None


ConfigT = TypeVar("ConfigT", bound=FamilyConfig)
TrainedT = TypeVar("TrainedT", bound=Trained)


class ModelFamily(Protocol[ConfigT, TrainedT]):
    """One model family, as the registry, the gate, tuning, tracking and evaluation see it.

    Names (read-only):

    - ``name``: the family's key (``"forecaster"``), as configs name it (``family:``).
    - ``registered_name``: its model in the MLflow registry (``"fks-forecaster"``).
    - ``experiment``: the MLflow experiment of its training runs (``"fks-forecaster"``).
    - ``baselines``: the baselines the promotion gate trades beside buy and hold by default.
    - ``train_command``: the command that trains and registers a version, for error messages.
    - ``search_space``: its Optuna search space (:class:`models.tuning.SearchSpace`), or None
      when it cannot be tuned.
    """

    @property
    def name(self) -> str: ...
    @property
    def registered_name(self) -> str: ...
    @property
    def experiment(self) -> str: ...
    @property
    def baselines(self) -> tuple[str, ...]: ...
    @property
    def train_command(self) -> str: ...
    @property
    def search_space(self) -> SearchSpace[ConfigT] | None: ...

    def train(self, data: TrainingData, config: ConfigT) -> TrainedT:
        """Train honestly on one series (splits, baselines, one test); nothing is logged.

        Raises:
            ValueError: the data cannot train this config (too little history, bad features).
        """
        ...

    def log(
        self,
        trained: TrainedT,
        data: TrainingData,
        settings: Settings,
        *,
        tuning: Mapping[str, Any] | None = None,
    ) -> TrainingRecord:
        """Log ``trained`` as one run of :attr:`experiment`, register the model as a new version
        of :attr:`registered_name` with the alias ``challenger``, and say where it landed."""
        ...

    def positions(self, output: pd.DataFrame | pd.Series, *, strategy: str, threshold: float) -> pd.Series:
        """Target exposure per decision bar, in [-1, 1], from the model's output (its pyfunc's
        output frame indexed by decision time, or one column of its logged test predictions).

        Raises:
            ValueError: an unknown ``strategy``.
        """
        ...

    def baseline_outputs(self, run_id: str, *, strict: bool = False) -> pd.DataFrame | None:
        """The baselines' test outputs logged by training run ``run_id``: one column per
        baseline, indexed by UTC decision time, each a series :meth:`positions` takes.

        Returns:
            The frame, or None when the run logged none (or they are unreadable) and not ``strict``.

        Raises:
            LookupError: with ``strict``, when they are missing or unreadable (the message says
                how to fix it).
        """
        ...


AnyFamily = ModelFamily[Any, Any]
"""A family of any config and training result (what the shared parts hold)."""

_FAMILY_MODULES: dict[str, str] = {
    "forecaster": "models.forecaster.family",
    "allocator": "models.allocator.family",
}
"""Where each family's object lives (``FAMILY`` in that module), imported on first use."""


def get_family(name: str) -> AnyFamily:
    """The family called ``name`` (``"forecaster"``), as configs name it.

    Raises:
        ValueError: an unknown family; the message lists the known ones.
    """
    if name not in _FAMILY_MODULES:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(_FAMILY_MODULES)}")
    family: AnyFamily = import_module(_FAMILY_MODULES[name]).FAMILY
    return family
