"""The promotion policy: when a challenger may replace the champion in the registry.

:func:`models.gate.decide` applies it to a challenger's out-of-sample backtest metrics::

    policy = PromotionPolicy()                         # Sharpe, +0.05 vs champion, >= 0 vs baseline
    policy = PromotionPolicy(primary_metric="sortino", min_margin_vs_champion=0.1)

A challenger is promoted only when every check passes:

* **champion** (when there is one): it beats the champion on ``primary_metric`` by at least
  ``min_margin_vs_champion``;
* **baseline**: it beats the best baseline on ``primary_metric`` by at least
  ``min_margin_vs_baseline``;
* **drawdown**: its ``max_drawdown`` is not worse than ``max_drawdown_floor``;
* **trades**: the backtest made at least ``min_trades`` trades;
* **data**: the backtest window's data passed validation (when ``require_validated_data``).

The comparison window is out of sample for both models: the part of the challenger's test window
after the end of each model's training and validation data (see
:func:`models.gate.comparison_window`). When the champion's data reaches into that window the
window is narrowed; when fewer than ``min_window_bars`` bars remain, or the champion is on another
symbol or timeframe, the champion check fails with that reason. The baselines the gate compares
against are listed in :class:`config.backtest.PromoteConfig` (``baselines``, default
:data:`DEFAULT_BASELINES`); one that cannot be evaluated fails the baseline check.

Direction of the primary metric: **higher is better** for every key of the backtest metrics
dict (``sharpe``, ``sortino``, ``calmar``, ``total_return``, ``cagr``, ``win_rate``, ...),
except the metrics in :data:`CLOSER_TO_ZERO_IS_BETTER`: ``max_drawdown`` is a negative fraction
(``-0.20`` is a 20 % peak-to-trough loss) and the one closer to 0 is better, so ``-0.12`` beats
``-0.20`` by ``0.08``. Drawdowns are compared by magnitude, so a drawdown reported as a positive
fraction (``0.20``) is read the same way. Margins are in the unit of the primary metric (Sharpe
units for the default) and are met when the improvement is at least the margin; "beats" is
strict, so a tie never passes even with a margin of 0.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.models import ForecasterConfig

CLOSER_TO_ZERO_IS_BETTER: frozenset[str] = frozenset({"max_drawdown"})
"""Metrics whose value closest to 0 is best (compared by magnitude); every other is higher-is-better."""

DRAWDOWN_METRIC = "max_drawdown"
"""The backtest metric the drawdown guard reads."""

BUY_AND_HOLD = "buy and hold"
"""The benchmark that is always long: needs only the bars."""

DEFAULT_BASELINES: tuple[str, ...] = (BUY_AND_HOLD, *ForecasterConfig.baselines)
"""The baselines the gate compares against by default for the forecaster: buy and hold, and the
forecaster baselines whose logged test forecasts are traded like the model's (``last_return``,
``ridge``, ``hist_gb``; ``zero`` never trades, and ``always_long`` traded long/flat is buy and
hold). Another family's default is buy and hold and its config's ``baselines``."""


class PromotionPolicy(BaseModel):
    """Thresholds of the promotion gate (see the module docstring for the checks).

    Attributes:
        primary_metric: the backtest metric the challenger is ranked on (a key of the metrics
            dict; higher is better except ``max_drawdown``, closer to 0 is better).
        min_margin_vs_champion: how much better than the champion the challenger must be, in
            units of ``primary_metric`` (>= 0; default 0.05 Sharpe).
        min_margin_vs_baseline: how much better than the best baseline (>= 0; default 0).
        max_drawdown_floor: the worst max drawdown allowed, a fraction in [-1, 0]; a challenger
            whose max drawdown is worse (further below 0) is refused. Default -0.35.
        min_trades: the fewest trades a backtest needs for its metrics to count (>= 0).
        require_validated_data: refuse when the backtest window's data did not pass validation.
        min_window_bars: the fewest bars the window comparing challenger and champion must hold
            (out of sample for both, see :func:`models.gate.comparison_window`); fewer fails the
            champion check (>= 1; default 60, about a quarter of daily bars).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    primary_metric: str = "sharpe"
    min_margin_vs_champion: float = Field(default=0.05, ge=0.0, allow_inf_nan=False)
    min_margin_vs_baseline: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    max_drawdown_floor: float = Field(default=-0.35, ge=-1.0, le=0.0, allow_inf_nan=False)
    min_trades: int = Field(default=10, ge=0)
    require_validated_data: bool = True
    min_window_bars: int = Field(default=60, ge=1)

    @field_validator("primary_metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        name = value.strip()
        if not name:
            raise ValueError("primary_metric must name a backtest metric, e.g. 'sharpe'")
        return name
