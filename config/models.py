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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.costs import CostsConfig

_FORECASTER = "fks-forecaster"
"""The forecaster's registered model, experiment and Optuna study prefix (see :class:`ForecasterConfig`)."""

_ALLOCATOR = "fks-allocator"
"""The allocator's registered model, experiment and Optuna study prefix (see :class:`AllocatorConfig`)."""


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
    jobs: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes running trials at once against the shared RDB study.",
    )
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


class AllocatorTuningConfig(BaseModel):
    """Optuna search over the allocator's hyperparameters on validation reward only (0 trials: none).

    Each trial trains for ``timesteps`` (default: a quarter of the config's) with its own early
    stopping, and is scored by its best deterministic validation episode.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    trials: int = Field(default=0, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)
    timesteps: int | None = Field(default=None, ge=64)
    jobs: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes running trials at once against the shared RDB study.",
    )
    study_name: str = _ALLOCATOR


class AllocatorConfig(BaseModel):
    """The RL allocator experiment: universe, environment, agent, training, evaluation, tuning.

    An agent (Stable-Baselines3 PPO, or SAC) allocates an account between ``symbols`` and cash in
    :class:`envs.PortfolioEnv` (``window`` feature rows per asset, the weights held, long only by
    default, net of ``costs``). The aligned rows are cut chronologically into train, validation
    and test (``val_fraction`` and ``test_fraction`` of them, or the dates ``train_end`` and
    ``validation_end``); the first ``purge`` rows of validation and of test (default ``window``)
    only feed windows, so no observation of a later span holds a row of an earlier one, and the
    scaler and the observation statistics are fitted on training rows only. Early stopping and
    tuning read deterministic validation episodes only; the test span is evaluated once, beside
    the baselines (equal weight, buy and hold, minimum variance, maximum Sharpe) net of the same
    costs. With several ``seeds`` one agent is trained per seed and the best on validation kept.

    Class attributes (not fields): ``family`` ``"allocator"``; ``registered_name`` and
    ``experiment`` ``"fks-allocator"``; ``baselines``, the allocation baselines beside buy and hold.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: ClassVar[str] = "allocator"
    registered_name: ClassVar[str] = _ALLOCATOR
    experiment: ClassVar[str] = _ALLOCATOR
    baselines: ClassVar[tuple[str, ...]] = ("equal_weight", "min_variance", "max_sharpe")

    symbols: tuple[str, ...] = ("SPY", "QQQ", "AAPL", "BTC-USD", "ETH-USD")
    timeframe: Literal["1m", "1h", "1d"] = "1d"
    feature_set: str = "minimal"
    window: int = Field(default=5, ge=1, le=256)
    algo: Literal["ppo", "sac"] = "ppo"
    timesteps: int = Field(default=50_000, ge=64)
    n_envs: int = Field(default=8, ge=1, le=256)
    subproc: bool = Field(
        default=False,
        description="Step the training environments in worker processes (SB3's SubprocVecEnv, one "
        "PortfolioEnv per process) instead of the vectorised PortfolioVecEnv in this process.",
    )
    episode_length: int = Field(default=64, ge=2)
    seeds: tuple[int, ...] = (7,)
    costs: CostsConfig = Field(default_factory=CostsConfig)
    max_weight: float = Field(default=1.0, gt=0, le=1)
    rebalance_band: float = Field(default=0.02, ge=0, le=2)
    long_short: bool = False
    gross_cap: float = Field(default=1.0, gt=0, le=1)
    penalty: Literal["none", "volatility", "drawdown"] = "none"
    penalty_coef: float = Field(default=0.0, ge=0)
    purge_bars: int | None = Field(default=None, ge=0)
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    train_end: str | None = None
    validation_end: str | None = None
    learning_rate: float = Field(default=1e-3, gt=0, lt=1)
    gamma: float = Field(default=0.5, gt=0, le=1)
    n_steps: int = Field(default=128, ge=8)
    batch_size: int = Field(default=128, ge=8)
    n_epochs: int = Field(default=10, ge=1)
    ent_coef: float = Field(default=0.0, ge=0)
    net_arch: tuple[int, ...] = (64, 64)
    log_std_init: float = Field(default=-0.5, ge=-5, le=2)
    eval_every: int = Field(default=4096, ge=64)
    patience: int = Field(default=5, ge=1)
    baseline_window: int = Field(default=60, ge=10)
    tuning: AllocatorTuningConfig = Field(default_factory=AllocatorTuningConfig)

    @field_validator("symbols", mode="before")
    @classmethod
    def _split_symbols(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(str(s).strip().upper() for s in value)
        return value

    @property
    def seed(self) -> int:
        """The first seed (what the shared training parts read: the Optuna sampler's seed)."""
        return self.seeds[0]

    @property
    def symbol(self) -> str:
        """The universe as one label (``SPX,NDX,...``), for names of runs and studies."""
        return ",".join(self.symbols)

    @property
    def purge(self) -> int:
        """Rows at the start of validation and of test that only feed windows (default ``window``)."""
        return self.window if self.purge_bars is None else self.purge_bars

    @model_validator(mode="after")
    def _check(self) -> AllocatorConfig:
        if len(self.symbols) < 2 or any(not s for s in self.symbols):
            raise ValueError("symbols must name at least two assets, e.g. SPX,NDX,GOOGL")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols repeat: {', '.join(self.symbols)}; name each asset once")
        if not self.seeds or any(s < 0 or s >= 2**32 for s in self.seeds):
            raise ValueError("seeds must list at least one seed in [0, 2**32), e.g. [7] or [7, 8, 9]")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {list(self.seeds)}; give each seed once")
        if not self.net_arch or any(u < 1 for u in self.net_arch):
            raise ValueError("net_arch must list at least one positive layer size, e.g. [64, 64]")
        if self.val_fraction + self.test_fraction >= 0.7:
            raise ValueError("val_fraction + test_fraction must leave at least 30% of rows for training")
        if (self.train_end is None) != (self.validation_end is None):
            raise ValueError("give train_end and validation_end together, or neither (fractions then)")
        return self


DEFAULT_FAMILY = ForecasterConfig.family
"""The family a backtest or promotion config means when it names none."""


class FamilyNames(Protocol):
    """What a family's config class says about the family (class attributes)."""

    family: ClassVar[str]
    registered_name: ClassVar[str]
    experiment: ClassVar[str]
    baselines: ClassVar[tuple[str, ...]]


FAMILY_CONFIGS: dict[str, type[FamilyNames]] = {
    ForecasterConfig.family: ForecasterConfig,
    AllocatorConfig.family: AllocatorConfig,
}
"""Each model family's config class, by family key."""


def family_of_model(registered_name: str) -> str:
    """The family whose registered model is ``registered_name`` (``fks-allocator`` -> ``allocator``),
    or :data:`DEFAULT_FAMILY` for a name no family registers (e.g. a model registered by hand)."""
    for family, names in FAMILY_CONFIGS.items():
        if names.registered_name == registered_name:
            return family
    return DEFAULT_FAMILY


def family_config(family: str) -> type[FamilyNames]:
    """The config class of ``family`` (its ``registered_name``, ``experiment``, ``baselines``).

    Raises:
        ValueError: an unknown family; the message lists the known ones.
    """
    try:
        return FAMILY_CONFIGS[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILY_CONFIGS)}") from None
