"""The paper desk's configuration: which account trades what, on which served models, how answers
become positions (the sizing rule), and how the paper broker fills.

:class:`TradeConfig` is the one parameter of the ``execute`` flow (``fks trade --paper``); its
defaults are the documented desk. Risk limits are not here: they are the account's
:class:`config.risk.RiskConfig` (``config/risk.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.risk import DEFAULT_ACCOUNT

__all__ = ["PaperCostsConfig", "SizingConfig", "TradeConfig"]


class PaperCostsConfig(BaseModel):
    """How the paper broker fills (``execution.broker.PaperCosts``): slippage and the full spread
    in basis points of the price (half the spread is paid per market fill), a commission in basis
    points of each fill's notional with a minimum per fill, the share of a bar's volume the
    account may take (None: no cap, no partial fills) and the latency in whole bars (1: the next
    bar's open)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slippage_bps: float = Field(default=1.0, ge=0)
    spread_bps: float = Field(default=2.0, ge=0)
    fee_bps: float = Field(default=1.0, ge=0)
    min_fee: float = Field(default=0.0, ge=0)
    volume_share: float | None = Field(default=0.1, gt=0, le=1)
    latency_bars: int = Field(default=1, ge=1)


class SizingConfig(BaseModel):
    """How served answers become target weights (fractions of the account's equity).

    For a forecaster, per symbol: ``long_flat`` holds 1 when the forecast log return is above
    ``threshold``, else 0; ``long_short`` holds +1 above it and -1 below minus it (the backtest's
    rule: ``fks backtest`` with the same strategy and threshold holds the same positions). A
    forecast whose confidence ``|2 * prob_up - 1|`` is below ``min_confidence`` holds 0. With
    ``vol_target`` (annualised, e.g. 0.15) the weight is scaled by ``min(1, vol_target /
    realised volatility)`` of the last ``vol_window`` log returns. The account is split equally:
    each of the ``n`` symbols gets at most ``1 / n``, and no symbol more than ``max_weight`` either
    way. For an allocator the served weights are the targets as they are.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Literal["long_flat", "long_short"] = "long_flat"
    threshold: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    vol_target: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    vol_window: int = Field(default=20, ge=2)
    max_weight: float = Field(default=1.0, gt=0, le=1)


class TradeConfig(BaseModel):
    """One paper account's desk.

    Attributes:
        account: the paper account (its risk limits are ``config/risk.yaml``'s entry of that name).
        symbols: the universe; each must be a registered asset with stored bars.
        model: the served forecaster asked on ``/v1/forecast``.
        allocator: a served allocator asked on ``/v1/allocate`` instead (its universe's weights are
            the targets); None uses the forecaster.
        sizing: the sizing rule.
        paper: how the paper broker fills.
        initial_cash: the account's starting cash, in ``base_currency``.
        base_currency: the account's currency.
        risk_file: the risk limits file; None for the shipped ``config/risk.yaml``.
        ingest: ingest the universe's latest bars at the start of each live cycle (never in a replay).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str = Field(default=DEFAULT_ACCOUNT, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.\-]+$")
    symbols: tuple[str, ...] = Field(default=("SPX",), min_length=1, max_length=64)
    model: str = Field(default="fks-forecaster", min_length=1)
    allocator: str | None = None
    sizing: SizingConfig = Field(default_factory=SizingConfig)
    paper: PaperCostsConfig = Field(default_factory=PaperCostsConfig)
    initial_cash: float = Field(default=100_000.0, gt=0, allow_inf_nan=False)
    base_currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    risk_file: Path | None = None
    ingest: bool = True

    @field_validator("symbols")
    @classmethod
    def _unique(cls, symbols: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols must be unique, got {list(symbols)}")
        return symbols
