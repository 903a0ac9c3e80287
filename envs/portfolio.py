"""``PortfolioEnv``: allocate an account between N assets and cash, one bar at a time.

Importing this module registers the environment with Gymnasium as ``fks/Portfolio-v0``
(:data:`ENV_ID`), as Gymnasium's own environment packages do; that registration is the only work
done at import. Build the data once, then make environments from it::

    from envs.data import portfolio_data
    from envs.portfolio import PortfolioEnv
    from features import get_feature_set
    from market.rebalance import Costs  # the same class as backtest.Costs

    data = portfolio_data(bars, get_feature_set("minimal"), train_end="2023-01-01",
                          validation_end="2024-01-01")
    env = PortfolioEnv(data, window=30, costs=Costs(commission_bps=5, slippage_bps=5))
    # or: gymnasium.make("fks/Portfolio-v0", data=data, window=30)
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

The contract (:class:`PortfolioEnvConfig` holds the options):

* **Timing.** An episode sits at a bar ``t``. The action is decided at the close of ``t`` with
  the observation of ``t``; its trades fill at the open of ``t + 1``; the step ends at the close
  of ``t + 1``. This is :func:`backtest.run` with ``execution="next_open"`` exactly (the same
  kernel, :func:`market.rebalance.advance_nb`): :meth:`PortfolioEnv.episode_equity` equals
  ``backtest.run(data.prices(rows), env.episode_targets(), costs, "next_open",
  initial_capital).equity`` to rounding.
* **Observation** (``float32``, ``W * N * F + N + 1`` values): the scaled features of the last
  ``W`` bars up to ``t`` (oldest first; each row asset by asset, each asset feature by feature),
  then the weights at the close of ``t``: each asset's ``units * close / equity`` and the cash
  weight (clipped to +-10; they leave ``[-1, 1]`` only by drift).
* **Action**: ``N + 1`` scores in ``[-1, 1]`` (assets, then cash). Long only (default): weights
  ``(score + 1) / sum(score + 1)`` over assets and cash, so the weights lie on the simplex (all
  cash when every score is -1); long/short: asset weights are their scores, the cash score is
  unused. Then each asset's absolute weight is capped at ``max_weight`` (the excess stays in
  cash) and the absolute sum at ``gross_cap`` (scaled down).
* **Trading rules.** An asset is traded only when its market is open at ``t + 1``, its new
  target differs from the target last executed, and by at least ``rebalance_band`` from its
  weight at the close of ``t``; otherwise its target stays the last executed one and it keeps
  its units (its weight drifts). If the targets' absolute sum (those kept included) would then
  exceed ``gross_cap``, the traded assets' targets are scaled down to fit. A traded asset goes
  to ``target * X / price`` where ``X`` is the account left after the costs of the bar's fills.
* **Costs.** Every fill pays ``(commission_bps + slippage_bps) / 1e4 * |traded notional| +
  min_fee`` (:class:`market.rebalance.Costs`), from cash.
* **Reward**: ``r = log(E[t+1] / E[t])``, the log return of the account net of costs (never its
  level; a ruined account's ratio is floored at 1e-12), minus an optional penalty:
  ``volatility`` subtracts ``coef * r ** 2``, ``drawdown`` subtracts ``coef`` times the
  increase, if any, of the log drawdown ``log(peak / E)``.
* **Episodes** start at a bar drawn uniformly (``self.np_random``, the only randomness) among
  those of the span that leave room for the window and ``episode_length`` steps, or at the
  span's first such bar with ``random_start=False``, or at ``reset(options={"start": bar})``.
  ``truncated`` when the episode has taken ``episode_length`` steps (default: it reaches the
  span's last bar); ``terminated`` when the account is ruined (equity not positive, or the
  costs of a rebalance would exceed it).

``info``: ``equity`` (account currency), ``costs`` and ``turnover`` (traded notional) of the
step, and ``bar`` (the row of ``data`` the episode is at).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium
import numpy as np
import pandas as pd
from gymnasium import spaces

from envs import _kernels as _k
from envs.data import SPANS, PortfolioData, SpanName
from market.rebalance import Costs

__all__ = ["ENV_ID", "PortfolioEnv", "PortfolioEnvConfig", "action_weights"]

ENV_ID = "fks/Portfolio-v0"
Penalty = Literal["none", "volatility", "drawdown"]
_FLOAT32 = np.dtype(np.float32)
_FLOATS = frozenset({_FLOAT32, np.dtype(np.float64)})
_PENALTIES: dict[str, int] = {
    "none": _k.PENALTY_NONE,
    "volatility": _k.PENALTY_VOLATILITY,
    "drawdown": _k.PENALTY_DRAWDOWN,
}


def _number(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must lie in {bracket}{low:g}, {high:g}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PortfolioEnvConfig:
    """Options of :class:`PortfolioEnv` (the module docstring is the contract).

    Attributes:
        span: the rows episodes run on: ``train``, ``validation`` or ``test``.
        window: feature rows per asset in an observation (>= 1).
        episode_length: steps per episode; ``None`` runs to the span's last bar.
        random_start: draw each episode's first bar (True) or start at the span's first
            possible bar (False).
        costs: commission, slippage and minimum fee per fill.
        initial_capital: the account at each episode's start (account currency, > 0).
        long_short: allow short weights (the cash score is then unused).
        max_weight: cap on each asset's absolute weight, in ``(0, 1]``.
        gross_cap: cap on the sum of absolute weights, in ``(0, 1]`` (no leverage).
        rebalance_band: no trade in an asset whose target is closer than this to its current
            weight (a fraction of equity, ``>= 0``).
        penalty: ``none``, ``volatility`` or ``drawdown`` (see the module docstring).
        penalty_coef: the penalty's coefficient (``>= 0``).

    Raises:
        ValueError: an option outside its range; the message names it.
    """

    span: SpanName = "train"
    window: int = 30
    episode_length: int | None = None
    random_start: bool = True
    costs: Costs = field(default_factory=Costs)
    initial_capital: float = 1.0
    long_short: bool = False
    max_weight: float = 1.0
    gross_cap: float = 1.0
    rebalance_band: float = 0.0
    penalty: Penalty = "none"
    penalty_coef: float = 0.0

    def __post_init__(self) -> None:
        if self.span not in SPANS:
            raise ValueError(f"span must be one of {', '.join(SPANS)}, got {self.span!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"window must be a positive number of bars, got {self.window!r}")
        length = self.episode_length
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ValueError(f"episode_length must be a positive number of steps or None, got {length!r}")
        if not isinstance(self.costs, Costs):
            raise ValueError(f"costs must be a market.rebalance.Costs (backtest.Costs), got {self.costs!r}")
        _number("initial_capital", self.initial_capital, 0.0, math.inf, low_open=True)
        _number("max_weight", self.max_weight, 0.0, 1.0, low_open=True)
        _number("gross_cap", self.gross_cap, 0.0, 1.0, low_open=True)
        _number("rebalance_band", self.rebalance_band, 0.0, 2.0)
        _number("penalty_coef", self.penalty_coef, 0.0, math.inf)
        if self.penalty not in _PENALTIES:
            raise ValueError(f"penalty must be one of {', '.join(_PENALTIES)}, got {self.penalty!r}")

    def write_params(self, state: np.ndarray, record: bool) -> None:
        """Write the ``P_*`` columns of every row of a :func:`envs._kernels.step_nb` ``state``."""
        state[:, _k.P_LONG_SHORT] = float(self.long_short)
        state[:, _k.P_MAX_WEIGHT] = self.max_weight
        state[:, _k.P_GROSS_CAP] = self.gross_cap
        state[:, _k.P_BAND] = self.rebalance_band
        state[:, _k.P_FEE_RATE] = self.costs.rate
        state[:, _k.P_MIN_FEE] = self.costs.min_fee
        state[:, _k.P_PENALTY] = _PENALTIES[self.penalty]
        state[:, _k.P_PENALTY_COEF] = self.penalty_coef
        state[:, _k.P_WINDOW] = self.window
        state[:, _k.P_RECORD] = float(record)


def action_weights(
    action: np.ndarray, *, long_short: bool = False, max_weight: float = 1.0, gross_cap: float = 1.0
) -> np.ndarray:
    """The ``N`` target weights that an action of ``N + 1`` scores means (the module docstring's
    **Action**, :func:`envs._kernels.target_weights_nb`): what the environment trades toward
    before its band and closed markets. Cash is ``1 - sum`` (long only).

    Raises:
        ValueError: an action with fewer than two scores, or with NaN or infinite scores.
    """
    scores = np.ascontiguousarray(action, dtype=np.float64).reshape(-1)
    if scores.shape[0] < 2:
        raise ValueError(f"an action holds N + 1 >= 2 scores (assets, then cash), got {scores.shape[0]}")
    out = np.empty(scores.shape[0] - 1)
    _k.target_weights_nb(scores, bool(long_short), float(max_weight), float(gross_cap), out)
    return out


def make_config(config: PortfolioEnvConfig | None, options: dict[str, Any]) -> PortfolioEnvConfig:
    """``config``, or one built from keyword ``options`` (not both).

    Raises:
        ValueError: both given, or an unknown or invalid option.
    """
    if config is None:
        try:
            return PortfolioEnvConfig(**options)
        except TypeError as exc:
            raise ValueError(f"{exc}; the options are the fields of envs.PortfolioEnvConfig") from None
    if options:
        raise ValueError(f"pass either config or options ({', '.join(options)}), not both")
    if not isinstance(config, PortfolioEnvConfig):
        raise ValueError(f"config must be a PortfolioEnvConfig, got {type(config).__name__}")
    return config


class Episodes:
    """The arrays of ``count`` episodes of one environment and the calls into its kernels.

    Shared by :class:`PortfolioEnv` (one episode) and :class:`envs.vector.PortfolioVecEnv`
    (many). ``record`` keeps each episode's targets and equity (:class:`PortfolioEnv` only).

    Raises:
        ValueError: ``data`` is not a :class:`PortfolioData`, or its span is too short for the
            window and the episode length.
    """

    def __init__(self, data: PortfolioData, config: PortfolioEnvConfig, count: int, record: bool) -> None:
        if not isinstance(data, PortfolioData):
            raise ValueError(
                "data must be an envs.PortfolioData (build it with envs.portfolio_data), got "
                f"{type(data).__name__}"
            )
        span = data.span(config.span)
        steps = config.episode_length or 1
        self.first = max(span.start, config.window - 1)
        self.last = span.stop - 1 - steps  # the last bar an episode may start at
        if self.last < self.first:
            raise ValueError(
                f"span {config.span!r} has {span.stop - span.start} rows: too few for a window of "
                f"{config.window} bars (the first {config.window - 1} rows of the data only feed windows) "
                f"and {steps} step(s); use a longer span, a shorter window or episode_length"
            )
        self.data, self.config, self.span_stop = data, config, span.stop
        n, f = data.n_assets, data.n_features
        self.market = np.stack([data.open, data.close, data.tradable.astype(np.float64)])
        self.features = np.ascontiguousarray(data.features, dtype=np.float32).reshape(-1)
        length = (config.episode_length or span.stop - self.first - 1) if record else -1
        self.history_at = _k.N_HEAD + 4 * n  # where each state row's history starts
        self.state = np.zeros((count, self.history_at + (length + 1) * (n + 1)))
        config.write_params(self.state, record)
        self.actions = np.zeros((count, n + 1))
        self.obs_size = config.window * n * f + n + 1
        clip = data.scaler.clip if data.scaler is not None and data.scaler.clip is not None else np.inf
        low = np.concatenate([np.full(self.obs_size - n - 1, -clip), np.full(n + 1, -_k.WEIGHT_BOUND)])
        self.observation_space = spaces.Box(low.astype(np.float32), -low.astype(np.float32), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(n + 1,), dtype=np.float32)

    def start(self, rng: np.random.Generator, requested: object) -> int:
        """The first bar of a new episode: ``requested``, or drawn from ``rng`` (or the first).

        Raises:
            ValueError: a requested bar outside the episodes' range.
        """
        if requested is None:
            if not self.config.random_start:
                return self.first
            return int(rng.integers(self.first, self.last + 1))
        if isinstance(requested, bool) or not isinstance(requested, int | np.integer):
            raise ValueError(f"options['start'] must be a row number, got {requested!r}")
        if not self.first <= requested <= self.last:
            raise ValueError(
                f"options['start'] must lie in [{self.first}, {self.last}] for span {self.config.span!r}, "
                f"got {requested}"
            )
        return int(requested)

    def begin(self, i: int, start: int, obs: np.ndarray) -> None:
        """Put episode ``i`` at bar ``start`` with all its capital in cash; its observation into ``obs``."""
        capital = self.config.initial_capital
        length = self.config.episode_length
        end = start + length if length is not None else self.span_stop - 1
        state = self.state[i]
        state[: _k.P_LONG_SHORT] = 0.0
        state[_k.N_HEAD :] = 0.0  # flat: no units, no targets, no history
        state[[_k.S_CASH, _k.S_EQUITY, _k.S_PEAK]] = capital
        state[_k.S_BAR], state[_k.S_END], state[_k.S_START] = start, end, start
        if state.shape[0] > self.history_at:
            self.history(i)[0, -1] = capital
        _k.observe_nb(self.market[1], self.features, state, obs)

    def history(self, i: int) -> np.ndarray:
        """Episode ``i``'s history (a view): per bar from its start, the targets decided at the
        bar's close and the equity at its close, ``(L + 1, N + 1)``."""
        return self.state[i, self.history_at :].reshape(-1, self.data.n_assets + 1)

    def step(self, obs: np.ndarray) -> None:
        """Step every episode with ``self.actions``: observations into ``obs``, results into
        ``self.state``."""
        _k.step_nb(self.actions.reshape(-1), self.market, self.features, self.state, obs.reshape(-1))


class PortfolioEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """Allocate between N assets and cash, net of costs; the module docstring is the contract.

    Args:
        data: the assets, features and spans (:func:`envs.data.portfolio_data`).
        config: the options as a :class:`PortfolioEnvConfig`, or
        **options: its fields as keywords (``window=30, costs=Costs(...)``, ...).

    Raises:
        ValueError: bad data or options, or a span too short for the window and episode length.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (Gymnasium's class attribute)

    def __init__(self, data: PortfolioData, config: PortfolioEnvConfig | None = None, **options: Any) -> None:
        self.config = make_config(config, options)
        self.data = data
        self._episodes = Episodes(data, self.config, 1, record=True)
        self.observation_space = self._episodes.observation_space
        self.action_space = self._episodes.action_space
        self.render_mode = None
        self._done = True
        episodes = self._episodes
        self._obs_size = episodes.obs_size
        self._shape = self.action_space.shape
        self._step_nb = _k.step_nb
        self._market, self._features, self._state = episodes.market, episodes.features, episodes.state
        self._results = episodes.state[0, _k.O_REWARD : _k.S_BAR + 1]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``options={"start": bar}`` picks its first bar (a row of ``data``).

        Returns:
            The first observation and ``info`` (``equity``, ``bar``).

        Raises:
            ValueError: a ``start`` outside the span's possible first bars.
        """
        super().reset(seed=seed)
        episodes = self._episodes
        start = episodes.start(self.np_random, (options or {}).get("start"))
        obs = np.empty(self._obs_size, dtype=np.float32)
        episodes.begin(0, start, obs)
        self._done = False
        return obs, {"equity": self.config.initial_capital, "bar": start}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decide target weights at this bar's close, fill them at the next open, move to the next bar.

        Args:
            action: ``N + 1`` scores (assets, then cash); see the module docstring.

        Returns:
            ``(observation, reward, terminated, truncated, info)``.

        Raises:
            ValueError: an action of the wrong shape or with NaN.
            RuntimeError: the episode is over (call :meth:`reset`).
        """
        if self._done:
            raise RuntimeError("the episode is over or not started: call reset() before step()")
        if type(action) is not np.ndarray or action.shape != self._shape or action.dtype not in _FLOATS:
            action = np.ascontiguousarray(action, dtype=np.float64)
            if action.shape != self._shape:
                raise ValueError(f"action must have shape {self._shape} (N + 1 scores), got {action.shape}")
        obs = np.empty(self._obs_size, _FLOAT32)
        self._step_nb(action, self._market, self._features, self._state, obs)  # the hot path
        reward, equity, costs, turnover, terminated, truncated, bar = self._results.tolist()
        ended, cut = terminated != 0.0, truncated != 0.0
        self._done = ended or cut
        return (
            obs,
            reward,
            ended,
            cut,
            {"equity": equity, "costs": costs, "turnover": turnover, "bar": int(bar)},
        )

    @property
    def start_range(self) -> tuple[int, int]:
        """The first and last bars (rows of ``data``) an episode can start at: the span's bars that
        leave room for the window before and ``episode_length`` steps (at least one) after."""
        return self._episodes.first, self._episodes.last

    def _rows(self) -> slice:
        state = self._episodes.state[0]
        return slice(int(state[_k.S_START]), int(state[_k.S_BAR]) + 1)

    def episode_equity(self) -> pd.Series:
        """The account at the close of each bar of the episode so far (from its first bar)."""
        rows = self._rows()
        values = self._episodes.history(0)[: rows.stop - rows.start, -1].copy()
        return pd.Series(values, index=self.data.index[rows], name="equity")

    def episode_targets(self) -> pd.DataFrame:
        """The target weights executed after each bar's close, one column per asset.

        Row ``t`` is filled at the open of ``t + 1``; the last row repeats the target in force
        (never filled), so the frame can go to :func:`backtest.run` with ``execution="next_open"``.
        """
        rows = self._rows()
        n = rows.stop - rows.start
        values = self._episodes.history(0)[:n, :-1].copy()
        values[-1] = values[-2] if n > 1 else 0.0
        return pd.DataFrame(values, index=self.data.index[rows], columns=list(self.data.assets))


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="envs.portfolio:PortfolioEnv")
