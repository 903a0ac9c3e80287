"""Configs of the backtest and promotion flows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.promotion import BUY_AND_HOLD, DEFAULT_BASELINES, PromotionPolicy


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
    history: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Raw bars sent with each forecast request; default the model's min_bars (the least it "
            "accepts). Any number at or beyond min_bars gives the same forecast."
        ),
    )


class PromoteConfig(BaseModel):
    """The promotion gate: ``model``'s challenger against its champion and the baselines.

    Both are backtested with ``backtest``'s strategy and costs on the challenger's out-of-sample
    window, narrowed to the part that is out of sample for the champion too (see
    :func:`models.gate.comparison_window`); ``policy`` sets the primary metric, margins, guards
    and the fewest bars that window may hold. ``force`` promotes regardless and records that.

    ``baselines`` are the baselines the challenger must beat (the best of them on the primary
    metric counts): ``"buy and hold"`` (always long; ``buy_and_hold`` is accepted too) and names
    of the forecaster's baselines (``last_return``, ``ridge``, ``hist_gb``, ``zero``,
    ``always_long``), whose test forecasts logged by the challenger's training run
    (``predictions/test_predictions.csv``) are traded like the model's. A listed baseline that
    cannot be evaluated (no logged predictions, no such column, no forecast in the window) fails
    the gate's baseline check with the reason; it is never skipped silently. Default
    :data:`config.promotion.DEFAULT_BASELINES`. ``include_buy_and_hold=False`` (kept for older
    configs) drops buy and hold from the list.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "fks-forecaster"
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    policy: PromotionPolicy = Field(default_factory=PromotionPolicy)
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    include_buy_and_hold: bool = True
    force: bool = False
    actor: str = "fks"

    @field_validator("baselines", mode="before")
    @classmethod
    def _baseline_names(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list | tuple):
            return value  # pydantic reports the type error
        names: list[str] = []
        for raw in value:
            if not isinstance(raw, str) or not raw.strip():
                raise ValueError(
                    f"baselines must be non-empty names, got {raw!r}; e.g. {list(DEFAULT_BASELINES)}"
                )
            name = " ".join(raw.strip().lower().replace("-", " ").split())
            name = BUY_AND_HOLD if name in (BUY_AND_HOLD, "buy_and_hold") else name.replace(" ", "_")
            if name in names:
                raise ValueError(f"baseline {name!r} is listed twice in baselines; list each once")
            names.append(name)
        if not names:
            raise ValueError(f"baselines must list at least one baseline, e.g. {list(DEFAULT_BASELINES)}")
        return tuple(names)

    @model_validator(mode="after")
    def _something_to_beat(self) -> PromoteConfig:
        if not self.gate_baselines:
            raise ValueError(
                "include_buy_and_hold=False leaves no baseline to beat; "
                "list at least one other baseline in baselines, e.g. ['ridge']"
            )
        return self

    @property
    def gate_baselines(self) -> tuple[str, ...]:
        """The baselines the gate compares against: ``baselines`` less buy and hold when
        ``include_buy_and_hold`` is False."""
        if self.include_buy_and_hold:
            return self.baselines
        return tuple(name for name in self.baselines if name != BUY_AND_HOLD)
