"""Configs of the scheduled model work: a retraining (train, evaluate, gate) and the check that
starts one when served inputs drift or the paper account under-performs.

:class:`RetrainConfig` is the one parameter of the ``retrain`` flow (the weekly deployments, and
the runs :class:`RetrainCheckConfig`'s check starts); the thresholds of the check are settings
(``FKS_RETRAIN_*``, :class:`config.settings.Settings`) so that operators tune them without
redeploying.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.backtest import BacktestConfig, PromoteConfig
from config.flows import SYNTHETIC_UNIVERSE
from config.models import AllocatorConfig, ForecasterConfig

__all__ = ["RetrainCheckConfig", "RetrainConfig"]

Family = Literal["forecaster", "allocator"]


class RetrainConfig(BaseModel):
    """One retraining: train ``family``'s model (the new version becomes ``@challenger``), then,
    with ``evaluate``, backtest it out of sample net of costs (the forecaster; the allocator's
    training already backtests its test span) and run the promotion gate, whose decision (promoted
    or refused) is sent to the webhooks (``FKS_WEBHOOK_URLS``).

    ``backtest`` and ``promote`` default to the family's registered model.
    """

    model_config = ConfigDict(extra="forbid")

    family: Family = "forecaster"
    forecaster: ForecasterConfig = Field(default_factory=ForecasterConfig)
    allocator: AllocatorConfig = Field(
        default_factory=lambda: AllocatorConfig(symbols=SYNTHETIC_UNIVERSE, timesteps=30_000, seeds=(7,))
    )
    source: str = "stored bars"
    evaluate: bool = True
    backtest: BacktestConfig | None = None
    promote: PromoteConfig | None = None

    @model_validator(mode="after")
    def _family_defaults(self) -> RetrainConfig:
        if self.backtest is None:
            self.backtest = BacktestConfig.model_validate({"family": self.family})
        if self.promote is None:
            self.promote = PromoteConfig.model_validate({"family": self.family})
        if self.promote.family != self.family:
            raise ValueError(
                f"promote.family is {self.promote.family!r} but this retraining trains the {self.family}; "
                "leave promote out to gate the model just trained"
            )
        return self


class RetrainCheckConfig(BaseModel):
    """What the retraining check looks at and which deployment it starts.

    ``model`` is the served model whose inputs are checked for drift (``fks drift``); ``account``
    the paper account whose live performance is checked (``fks pnl``); ``deployment`` the
    retraining deployment started (``flow/deployment``) when a threshold of the settings is
    crossed (``FKS_RETRAIN_DRIFT_PSI``, ``FKS_RETRAIN_MIN_PNL``, ``FKS_RETRAIN_MIN_HIT_RATE``).
    With ``start`` false the check only reports (and notifies).
    """

    model_config = ConfigDict(extra="forbid")

    model: str = ForecasterConfig.registered_name
    account: str = "default"
    deployment: str = "retrain/forecaster-weekly"
    start: bool = True
