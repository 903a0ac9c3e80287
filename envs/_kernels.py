"""Numeric kernels of :mod:`envs.portfolio`: one numba call steps every episode of an environment.

The account itself (fills, costs, marking) is :func:`market.rebalance.advance_nb`, the kernel of
:func:`backtest.run`; what is here maps actions to target weights, applies the environment's
trading rules, computes the reward and writes the observation.

Arrays (``M`` episodes, ``N`` assets, ``F`` features, ``T`` rows, ``W`` window):

* ``market (3, T, N)``: open, close and tradable (1.0 where the asset's market is open);
  ``features (T * N * F,)`` float32;
* ``state (M, N_HEAD + 4 * N + H)``: one row per episode: the ``S_*`` entries, whose first three
  are the account of :func:`~market.rebalance.advance_nb` (cash, equity at the current bar's
  close, dead), then the ``O_*`` results of its last step, its bar, the ``P_*`` parameters of the
  environment (the same in every row); from ``N_HEAD`` on four blocks of ``N``: the units held,
  the target in force, the last target executed, the target being executed (``U_*``); then,
  when the ``P_RECORD`` parameter is 1, the episode's history: ``L + 1`` records of ``N + 1``
  values, for each of its bars the targets decided at its close and the equity at its close
  (``H = 0`` when not recording);
* ``actions`` and ``obs``: the episodes' scores (``N + 1`` each) and observations
  (``W * N * F + N + 1`` float32 each), one after the other.

Few arguments and few allocations (work space once per call, not per episode): a single
environment calls :func:`step_nb` from Python at every step, where each array argument costs
about 0.1 microsecond to dispatch and the whole step about 1 microsecond for 10 assets.

Everything compiles lazily on first call (``cache=True`` keeps the machine code on disk).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from market.rebalance import advance_nb

S_CASH, S_EQUITY, S_DEAD = 0, 1, 2
O_REWARD, O_EQUITY, O_COSTS, O_TURNOVER, O_TERMINATED, O_TRUNCATED = 3, 4, 5, 6, 7, 8
S_BAR, S_END, S_START, S_PEAK = 9, 10, 11, 12
P_LONG_SHORT, P_MAX_WEIGHT, P_GROSS_CAP, P_BAND, P_FEE_RATE, P_MIN_FEE = 13, 14, 15, 16, 17, 18
P_PENALTY, P_PENALTY_COEF, P_WINDOW, P_RECORD = 19, 20, 21, 22
N_HEAD = 23
U_UNITS, U_WEIGHT, U_PREV, U_TARGET = 0, 1, 2, 3  # blocks of N after N_HEAD
PENALTY_NONE, PENALTY_VOLATILITY, PENALTY_DRAWDOWN = 0, 1, 2

WEIGHT_BOUND = 10.0
"""Weights in an observation are clipped to ``[-WEIGHT_BOUND, WEIGHT_BOUND]`` (drift only)."""
MIN_GROWTH = 1e-12
"""The smallest equity ratio a reward takes the log of: a ruined account's step reward is ``log(1e-12)``."""


@njit(cache=True, inline="always")
def target_weights_nb(
    scores: np.ndarray, long_short: bool, max_weight: float, gross_cap: float, out: np.ndarray
) -> None:
    """Map ``N + 1`` action scores to ``N`` target weights in ``out``.

    Long only: each score is clipped to ``[-1, 1]`` and shifted to ``p = score + 1`` in
    ``[0, 2]``; the weights are ``p / sum(p)`` over the N assets and cash (all cash when every
    ``p`` is 0), each asset's then capped at ``max_weight``. Long/short: asset ``a``'s weight is
    its score clipped to ``[-max_weight, max_weight]`` (the cash score is not used). Then, in both
    modes, weights whose absolute sum exceeds ``gross_cap`` are scaled down to it. What is not
    invested is cash.

    Raises:
        ValueError: a score is NaN or infinite.
    """
    k = out.shape[0]
    for a in range(k + 1):
        if not math.isfinite(scores[a]):
            raise ValueError("the action holds a NaN or infinite score; actions are N + 1 finite scores")
    gross = 0.0
    if long_short:
        for a in range(k):
            w = min(max(scores[a], -max_weight), max_weight)
            out[a] = w
            gross += abs(w)
    else:
        total = 0.0
        for a in range(k + 1):
            total += min(max(scores[a], -1.0), 1.0) + 1.0
        for a in range(k):
            w = 0.0
            if total > 0.0:
                w = min((min(max(scores[a], -1.0), 1.0) + 1.0) / total, max_weight)
            out[a] = w
            gross += w
    if gross > gross_cap:
        scale = gross_cap / gross
        for a in range(k):
            out[a] *= scale


@njit(cache=True, inline="always")
def observe_nb(close: np.ndarray, features: np.ndarray, state: np.ndarray, obs: np.ndarray) -> None:
    """Write the observation of the episode of ``state`` (its row) at its bar ``t`` into ``obs``.

    ``obs[:W * N * F]`` are the feature rows ``t - W + 1 .. t`` (oldest first, each row asset by
    asset, each asset feature by feature); then the weights at the close of ``t``: each asset's
    ``units * close / equity`` and cash's ``cash / equity`` (0 when the equity is not positive),
    clipped to ``[-WEIGHT_BOUND, WEIGHT_BOUND]``.
    """
    t = int(state[S_BAR])
    k = close.shape[1]
    window = int(state[P_WINDOW])
    units = state[N_HEAD + U_UNITS * k : N_HEAD + (U_UNITS + 1) * k]
    size = features.shape[0] // close.shape[0]  # N * F
    n = window * size
    base = (t - window + 1) * size
    src = features[base : base + n]
    dst = obs[:n]
    for j in range(n):  # on slices, so that the copy vectorises
        dst[j] = src[j]
    value = state[S_EQUITY]
    scale = 1.0 / value if value > 0.0 else 0.0
    for a in range(k):
        obs[n + a] = min(max(units[a] * close[t, a] * scale, -WEIGHT_BOUND), WEIGHT_BOUND)
    obs[n + k] = min(max(state[S_CASH] * scale, -WEIGHT_BOUND), WEIGHT_BOUND)


@njit(cache=True, inline="always")
def _episode_step_nb(
    scores: np.ndarray,
    market: np.ndarray,
    features: np.ndarray,
    row: np.ndarray,
    obs: np.ndarray,
    scratch: np.ndarray,
    where: np.ndarray,
) -> None:
    """:func:`step_nb` for one episode: its ``state`` row and ``obs``; ``scratch (8, N)`` floats
    and ``where (2, N)`` ints are work space."""
    open_ = market[0]
    close = market[1]
    k = close.shape[1]
    if row[S_BAR] >= row[S_END]:
        raise ValueError("the episode is over: reset it before stepping")
    long_short = row[P_LONG_SHORT] != 0.0
    max_weight = row[P_MAX_WEIGHT]
    gross_cap = row[P_GROSS_CAP]
    band = row[P_BAND]
    fee_rate = row[P_FEE_RATE]
    min_fee = row[P_MIN_FEE]
    penalty = int(row[P_PENALTY])
    coef = row[P_PENALTY_COEF]
    record = row[P_RECORD] != 0.0
    desired, before, moving = scratch[0], scratch[1], scratch[2]
    fill_units, fill_price, fill_fee = scratch[3], scratch[4], scratch[5]
    held, equity, returns = scratch[6:7], scratch[7, :1], scratch[7, 1:2]
    fill_bar, fill_asset = where[0], where[1]
    target_weights_nb(scores, long_short, max_weight, gross_cap, desired)
    units = row[N_HEAD + U_UNITS * k : N_HEAD + (U_UNITS + 1) * k]
    weight = row[N_HEAD + U_WEIGHT * k : N_HEAD + (U_WEIGHT + 1) * k]
    prev = row[N_HEAD + U_PREV * k : N_HEAD + (U_PREV + 1) * k]
    target = row[N_HEAD + U_TARGET * k : N_HEAD + (U_TARGET + 1) * k].reshape((1, k))
    t = int(row[S_BAR])
    nxt = t + 1
    value = row[S_EQUITY]
    kept = 0.0
    traded = 0.0
    for a in range(k):
        d = desired[a]
        now = units[a] * close[t, a] / value
        move = market[2, nxt, a] != 0.0 and d != prev[a] and abs(d - now) >= band
        moving[a] = 1.0 if move else 0.0
        if move:
            target[0, a] = d
            traded += abs(d)
        else:
            target[0, a] = prev[a]
            kept += abs(prev[a])
    if kept + traded > gross_cap and traded > 0.0:
        scale = max(gross_cap - kept, 0.0) / traded
        for a in range(k):
            if moving[a] != 0.0:
                target[0, a] *= scale
    for a in range(k):
        before[a] = units[a]
    m = advance_nb(
        open_, close, target, False, fee_rate, min_fee, nxt, nxt + 1, t,
        row[S_CASH : S_DEAD + 1], units, weight, prev,
        equity, returns, held, fill_bar, fill_asset, fill_units, fill_price, fill_fee, 0,
    )  # fmt: skip
    costs = 0.0
    notional = 0.0
    for j in range(m):
        costs += fill_fee[j]
        notional += abs(fill_units[j] - before[fill_asset[j]]) * fill_price[j]
    now_value = equity[0]
    growth = math.log(max(now_value / value, MIN_GROWTH))
    reward = growth
    if penalty == PENALTY_VOLATILITY:
        reward -= coef * growth * growth
    elif penalty == PENALTY_DRAWDOWN:
        peak = row[S_PEAK]
        new_peak = max(peak, now_value)
        rise = math.log(new_peak / value) - growth - math.log(peak / value)
        reward -= coef * max(rise, 0.0)
    row[S_PEAK] = max(row[S_PEAK], now_value)
    row[S_BAR] = nxt
    terminated = row[S_DEAD] != 0.0 or now_value <= 0.0
    row[O_REWARD] = reward
    row[O_EQUITY] = now_value
    row[O_COSTS] = costs
    row[O_TURNOVER] = notional
    row[O_TERMINATED] = 1.0 if terminated else 0.0
    row[O_TRUNCATED] = 1.0 if (not terminated and nxt >= row[S_END]) else 0.0
    if record:
        at = N_HEAD + 4 * k + (nxt - int(row[S_START])) * (k + 1)  # this bar's record
        for a in range(k):
            row[at - (k + 1) + a] = target[0, a]  # the previous bar's decision
        row[at + k] = now_value
    observe_nb(close, features, row, obs)


@njit(cache=True)
def step_nb(
    actions: np.ndarray,
    market: np.ndarray,
    features: np.ndarray,
    state: np.ndarray,
    obs: np.ndarray,
) -> None:
    """Step every episode once: decide at the close of its bar ``t``, fill at the open of ``t + 1``.

    ``actions`` holds the ``M`` episodes' ``N + 1`` scores one after the other, ``obs`` their
    observations one after the other (both 1-D: a single environment passes its action and
    observation as they are, a vector of them a flat view of its matrices).

    For episode ``i``: its scores become desired weights (:func:`target_weights_nb`). Asset ``a``
    is traded when its market is open at ``t + 1`` (``market[2]``), its desired weight differs
    from the target last executed, and it differs by at least the band from its weight at the
    close of ``t``; otherwise its target stays the last executed one. If the targets' absolute
    sum would exceed the gross cap, the traded assets' targets are scaled down to fit. The
    account then advances one bar (:func:`market.rebalance.advance_nb` at ``t + 1``: fills at
    the open, marked at the close) and ``state[i, O_*]`` get the reward ``log(E[t+1] / E[t])``
    (ratio floored at ``MIN_GROWTH``) minus the penalty (volatility: ``coef * r ** 2``;
    drawdown: ``coef`` times the increase of ``log(peak / equity)``, if any), the equity, the
    costs and the traded notional of the fills, and whether the episode is terminated (the
    account is dead or its equity is not positive) or truncated (it reached its last bar). Its
    observation at ``t + 1`` is written to its part of ``obs``.

    Raises:
        ValueError: an action score is NaN or infinite, or an episode is already at its last bar
            (nothing has moved for that episode).
    """
    episodes = state.shape[0]
    width = actions.shape[0] // episodes
    size = obs.shape[0] // episodes
    scratch = np.empty((8, market.shape[2]))
    where = np.empty((2, market.shape[2]), dtype=np.int64)
    for i in range(episodes):
        _episode_step_nb(
            actions[i * width : (i + 1) * width],
            market,
            features,
            state[i],
            obs[i * size : (i + 1) * size],
            scratch,
            where,
        )
