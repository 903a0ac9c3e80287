"""Configs of the model families. One config defines an experiment and is logged with its run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    study_name: str = "fks-forecaster"


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
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

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
