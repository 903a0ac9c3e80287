"""Configs of the backtest and promotion flows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from config.promotion import PromotionPolicy


class CostsConfig(BaseModel):
    """Trading costs charged on every trade, entry and exit (see ``backtest.Costs``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    commission_bps: float = Field(default=1.0, ge=0)
    slippage_bps: float = Field(default=2.0, ge=0)
    min_fee: float = Field(default=0.0, ge=0)


class BacktestConfig(BaseModel):
    """Evaluate a registered model version on its out-of-sample window, net of costs.

    ``model`` is ``name@alias`` or ``name/version``. The model's forecasts become positions:
    ``long_flat`` holds 1 when the forecast exceeds ``threshold`` (log return), else 0;
    ``long_short`` holds the forecast's sign. Positions are decided at a bar's close and filled
    at the next bar's open. ``windows`` splits the out-of-sample window into consecutive
    walk-forward blocks reported one by one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "fks-forecaster@challenger"
    strategy: Literal["long_flat", "long_short"] = "long_flat"
    threshold: float = 0.0
    costs: CostsConfig = Field(default_factory=CostsConfig)
    windows: int = Field(default=3, ge=1, le=24)
    history: int = Field(default=200, ge=10, description="Raw bars sent with each forecast request.")


class PromoteConfig(BaseModel):
    """The promotion gate: ``model``'s challenger against its champion and the baselines.

    Both are backtested on the challenger's out-of-sample window with ``backtest``'s strategy and
    costs; ``policy`` sets the primary metric, margins and guards. ``include_buy_and_hold`` counts
    buy and hold among the baselines to beat. ``force`` promotes regardless and records that.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "fks-forecaster"
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    policy: PromotionPolicy = Field(default_factory=PromotionPolicy)
    include_buy_and_hold: bool = True
    force: bool = False
    actor: str = "fks"
