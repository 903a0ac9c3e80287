"""Trading costs as configured (the same fields as ``backtest.Costs``), shared by the configs of
the backtest and promotion flows and of the model families that trade their output (the allocator)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CostsConfig"]


class CostsConfig(BaseModel):
    """Trading costs charged on every trade, entry and exit (see ``backtest.Costs``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    commission_bps: float = Field(default=1.0, ge=0)
    slippage_bps: float = Field(default=2.0, ge=0)
    min_fee: float = Field(default=0.0, ge=0)
