"""The desk's sizing rule: served answers -> target weights -> signed order quantities.

Weights (:func:`forecast_weights`) follow :class:`config.trading.SizingConfig`: the backtest's
position rule (``long_flat`` / ``long_short`` around ``threshold``, the very function
:func:`models.forecaster.family.forecast_positions`), a confidence floor, optional volatility
targeting, and an equal split of the account over the universe.

Quantities (:func:`rebalance_quantities`) are the backtest's rebalance (:mod:`market.rebalance`,
the model :func:`backtest.engine.run` documents): only symbols whose target *changed* are traded;
the account is marked at the quotes the orders will fill at (``E = cash + sum(units * quote)``),
``X`` is what is left of it once the fees of those fills are paid
(:func:`market.rebalance.value_after_costs_nb`), and each traded symbol goes to
``units = weight * X / quote``. So a replay whose quotes are the next bars' opens, with a broker
that fills market orders at the open with no spread, no slippage in price, no volume cap and the
backtest's cost rate as its fee, holds exactly the backtest's units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from config.trading import SizingConfig
from market.rebalance import value_after_costs_nb
from models.forecaster.family import forecast_positions

__all__ = ["confidence", "forecast_weights", "rebalance_quantities", "vol_scale"]

_MIN_QUANTITY = 1e-9
"""Relative size (of the account) below which a trade is not worth an order."""


def confidence(prob_up: float) -> float:
    """How sure a forecast is, in [0, 1]: ``|2 * prob_up - 1|`` (0 at a coin flip)."""
    return min(1.0, abs(2.0 * float(prob_up) - 1.0))


def vol_scale(
    closes: Sequence[float] | np.ndarray, *, target: float, window: int, bars_per_year: float
) -> float:
    """``min(1, target / realised volatility)`` from the last ``window`` log returns of
    ``closes`` (annualised with ``bars_per_year``); 1 when there are fewer returns or none vary.

    Raises:
        ValueError: a non-positive ``target`` or ``bars_per_year``.
    """
    if target <= 0 or bars_per_year <= 0:
        raise ValueError("vol targeting needs a positive target and bars per year")
    prices = np.asarray(closes, dtype="float64")[-(window + 1) :]
    if len(prices) < 3:
        return 1.0
    returns = np.diff(np.log(prices))
    vol = float(np.std(returns, ddof=1)) * math.sqrt(bars_per_year)
    return 1.0 if vol <= 0 or not math.isfinite(vol) else min(1.0, target / vol)


def forecast_weights(
    forecasts: Mapping[str, tuple[float, float]],
    config: SizingConfig,
    *,
    universe: int,
    scales: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Target weights from forecasts ``{symbol: (forecast_log_return, prob_up)}``.

    Each symbol's weight is its position by the backtest's rule (``config.strategy``,
    ``config.threshold``), 0 when its confidence is below ``config.min_confidence``, times its
    volatility scale (``scales``, default 1), divided by ``universe`` (the number of symbols
    the account trades), so absolute weights sum to at most 1, and capped at ``config.max_weight``.

    Raises:
        ValueError: ``universe`` < 1.
    """
    if universe < 1:
        raise ValueError("the universe has at least one symbol")
    out: dict[str, float] = {}
    for symbol, (forecast, prob_up) in forecasts.items():
        position = float(forecast_positions(pd.Series([forecast]), config.strategy, config.threshold).iloc[0])
        if confidence(prob_up) < config.min_confidence:
            position = 0.0
        scale = 1.0 if scales is None else float(scales.get(symbol, 1.0))
        weight = position * scale / universe
        out[symbol] = max(-config.max_weight, min(config.max_weight, weight))
    return out


def rebalance_quantities(
    weights: Mapping[str, float],
    previous: Mapping[str, float],
    positions: Mapping[str, float],
    cash: float,
    quotes: Mapping[str, float],
    *,
    fee_rate: float,
    min_fee: float = 0.0,
) -> dict[str, float]:
    """Signed units to trade per symbol to reach ``weights`` from ``positions``.

    Symbols whose weight equals ``previous`` (exactly; missing counts as 0) are not traded (their
    weight drifts with their price, as in the backtest). ``quotes`` are the prices the orders are
    expected to fill at; every symbol held or targeted needs one. ``fee_rate`` is the broker's
    proportional fee (``fee_bps / 1e4``) and ``min_fee`` its fixed fee per fill. Trades smaller
    than a billionth of the account are dropped.

    Raises:
        ValueError: a missing or non-positive quote.
    """
    symbols = sorted(set(weights) | {s for s, q in positions.items() if q != 0})
    missing = [s for s in symbols if not (quotes.get(s, 0.0) > 0 and math.isfinite(quotes[s]))]
    if missing:
        raise ValueError(f"no usable quote for {', '.join(missing)}; every symbol held or targeted needs one")
    price = np.array([quotes[s] for s in symbols], dtype="float64")
    units = np.array([positions.get(s, 0.0) for s in symbols], dtype="float64")
    target = np.array([weights.get(s, previous.get(s, 0.0)) for s in symbols], dtype="float64")
    trading = np.array([s in weights and weights[s] != previous.get(s, 0.0) for s in symbols], dtype=np.bool_)
    if not trading.any():
        return {}
    held = units * price
    value = float(cash + held.sum())
    after = value_after_costs_nb(value, held, target, trading, fee_rate, min_fee)
    out: dict[str, float] = {}
    for i, symbol in enumerate(symbols):
        if not trading[i]:
            continue
        delta = target[i] * after / price[i] - units[i]
        if abs(delta * price[i]) > _MIN_QUANTITY * max(abs(value), 1.0):
            out[symbol] = float(delta)
    return out
