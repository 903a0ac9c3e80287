"""Configs of the model families. One config defines an experiment and is logged with its run.

Each family's config class also names the family (class attributes, never logged as params):
``family`` (its key, e.g. ``"forecaster"``), ``registered_name`` (its model in the MLflow
registry), ``experiment`` (the MLflow experiment of its training runs) and ``baselines`` (the
baselines the promotion gate trades beside buy and hold by default). :data:`FAMILY_CONFIGS` maps
each family to its config class; :func:`family_config` looks one up::

    family_config("forecaster").registered_name      # "fks-forecaster"
    ForecasterConfig.registered_name                 # the same
"""

from __future__ import annotations

from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

_FORECASTER = "fks-forecaster"
"""The forecaster's registered model, experiment and Optuna study prefix (see :class:`ForecasterConfig`)."""


class WalkForwardConfig(BaseModel):
    """Walk-forward folds for the reported out-of-sample metrics (inside train+validation only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    folds: int = Field(default=3, ge=1, le=20)
    mode: Literal["expanding", "rolling"] = "expanding"
    min_train_fraction: float = Field(default=0.4, gt=0.05, lt=0.95)


class TuningConfig(BaseModel):
    """Optuna search over the LSTM's hyperparameters (0 trials: no tuning)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trials: int = Field(default=0, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)
    epochs: int = Field(default=8, ge=1)
    study_name: str = _FORECASTER


class ExplainConfig(BaseModel):
    """SHAP attributions of the forecaster."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    background: int = Field(default=64, ge=1)
    samples: int = Field(default=128, ge=1)


class ForecasterConfig(BaseModel):
    """The LSTM forecaster experiment: data, model, training, evaluation, tuning, explanation.

    Samples are windows of ``lookback`` feature rows ending at bar t; the target is the forward
    log return from t to t + ``horizon`` (and its direction). Train, validation and test are
    chronological with a purge gap of ``lookback + horizon`` samples between them.

    Class attributes (not fields): ``family`` ``"forecaster"``; ``registered_name`` and
    ``experiment`` ``"fks-forecaster"``; ``baselines``, the forecaster baselines whose logged test
    forecasts the promotion gate trades beside buy and hold by default (``zero`` never trades and
    ``always_long`` traded long/flat is buy and hold).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: ClassVar[str] = "forecaster"
    registered_name: ClassVar[str] = _FORECASTER
    experiment: ClassVar[str] = _FORECASTER
    baselines: ClassVar[tuple[str, ...]] = ("last_return", "ridge", "hist_gb")

    symbol: str = "SPX"
    timeframe: Literal["1m", "1h", "1d"] = "1d"
    feature_set: str = "default"
    horizon: int = Field(default=1, ge=1, le=100)
    lookback: int = Field(default=30, ge=2, le=512)
    units: tuple[int, ...] = (32,)
    dropout: float = Field(default=0.1, ge=0.0, lt=0.9)
    learning_rate: float = Field(default=1e-3, gt=0, lt=1)
    batch_size: int = Field(default=64, ge=1)
    epochs: int = Field(default=30, ge=1)
    patience: int = Field(default=5, ge=1)
    seed: int = 7
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    walk_forward: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)

    @property
    def purge(self) -> int:
        """Samples dropped between consecutive splits so no window or label straddles two of them."""
        return self.lookback + self.horizon

    @model_validator(mode="after")
    def _check(self) -> ForecasterConfig:
        if not self.units or any(u < 1 for u in self.units):
            raise ValueError("units must list at least one positive layer size, e.g. [32] or [64, 32]")
        if self.val_fraction + self.test_fraction >= 0.7:
            raise ValueError("val_fraction + test_fraction must leave at least 30% of samples for training")
        return self


DEFAULT_FAMILY = ForecasterConfig.family
"""The family a backtest or promotion config means when it names none."""


class FamilyNames(Protocol):
    """What a family's config class says about the family (class attributes)."""

    family: ClassVar[str]
    registered_name: ClassVar[str]
    experiment: ClassVar[str]
    baselines: ClassVar[tuple[str, ...]]


FAMILY_CONFIGS: dict[str, type[FamilyNames]] = {ForecasterConfig.family: ForecasterConfig}
"""Each model family's config class, by family key (the allocator's joins it in its own issue)."""


def family_config(family: str) -> type[FamilyNames]:
    """The config class of ``family`` (its ``registered_name``, ``experiment``, ``baselines``).

    Raises:
        ValueError: an unknown family; the message lists the known ones.
    """
    try:
        return FAMILY_CONFIGS[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILY_CONFIGS)}") from None
