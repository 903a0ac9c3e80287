"""Honest training of the RL allocator: chronological spans with a purge, early stopping on
validation, one test.

The recipe (:func:`train_allocator`):

1. The universe's bars on one calendar with their features (:func:`envs.portfolio_data`; the
   feature scaler is fitted on training rows only), cut chronologically into train, validation
   and test (:func:`split_dates`: the config's fractions of the aligned rows, or its dates).
2. The first ``config.purge`` rows of validation and of test (default ``window``) only feed
   windows: their episodes start after them (:func:`first_bar`), so no observation of a later
   span holds a feature row of an earlier one, and training episodes never pass the training
   span's last bar.
3. Per seed: Stable-Baselines3 PPO (or SAC) on :class:`envs.PortfolioVecEnv` episodes of
   ``episode_length`` bars drawn from the training span, under ``VecNormalize`` (observations
   and rewards normalised with running statistics of training steps only). Every
   ``eval_every`` steps a :class:`ValidationCallback` runs one deterministic episode over the
   validation span with the statistics frozen and keeps the best policy and statistics; it stops
   after ``patience`` evaluations without improvement. The best seed on validation is kept.
4. The kept agent runs ONE deterministic episode over the test span (:func:`run_policy`), beside
   the baselines' targets on the same rows (:mod:`models.allocator.baselines`); the backtests
   net of costs are :mod:`backtest.allocation`'s (``models/`` never imports ``backtest/``).

Everything is seeded: ``stable_baselines3.common.utils.set_random_seed`` (Python, NumPy,
PyTorch), the environments' generators (``venv.seed``) and the algorithm's ``seed``. Training
sets PyTorch to :data:`TORCH_THREADS` threads (process-wide), the fastest for these small
networks. Importing this module imports Stable-Baselines3 and PyTorch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from stable_baselines3.common.callbacks import BaseCallback

from config.models import AllocatorConfig
from envs.data import AlignedAssets, PortfolioData, SpanName, align_assets, portfolio_data
from features import FeatureSet
from market.bars import as_utc
from market.rebalance import Costs
from models.allocator.baselines import BASELINES, BaselineOptions, baseline_targets

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecNormalize

    from envs.portfolio import PortfolioEnvConfig

__all__ = [
    "AGENT",
    "CASH",
    "TORCH_THREADS",
    "AllocatorResult",
    "PolicyRun",
    "SeedRun",
    "ValidationCallback",
    "allocator_data",
    "costs_of",
    "env_config",
    "first_bar",
    "run_policy",
    "split_dates",
    "train_agent",
    "train_allocator",
    "training_reference",
]

AGENT = "agent"
"""The trained policy's name among the strategies of a report."""
CASH = "CASH"
"""The cash column of decisions and weights."""
TORCH_THREADS = 1
"""PyTorch threads while training: one is the fastest for these networks (see benchmarks/env.py)."""
_MIN_EVAL_STEPS = 20


def costs_of(config: AllocatorConfig) -> Costs:
    """The config's costs as :class:`market.rebalance.Costs` (the same class as ``backtest.Costs``)."""
    c = config.costs
    return Costs(commission_bps=c.commission_bps, slippage_bps=c.slippage_bps, min_fee=c.min_fee)


def split_dates(index: pd.DatetimeIndex, config: AllocatorConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(train_end, validation_end)``: the config's dates, or the first bars of the validation and
    test spans when the aligned rows ``index`` are cut by ``val_fraction`` and ``test_fraction``."""
    if config.train_end is not None and config.validation_end is not None:
        return as_utc(config.train_end, "train_end"), as_utc(config.validation_end, "validation_end")
    n = len(index)
    n_test = round(n * config.test_fraction)
    n_val = round(n * config.val_fraction)
    if n_test < 2 or n_val < 2 or n - n_test - n_val < 2:
        raise ValueError(
            f"{n} aligned rows are too few to split into train / validation / test; ingest more history"
        )
    return index[n - n_test - n_val], index[n - n_test]


def _prepare(
    bars: Mapping[str, pd.DataFrame], feature_set: FeatureSet, config: AllocatorConfig
) -> tuple[PortfolioData, AlignedAssets]:
    missing = [s for s in config.symbols if s not in bars]
    if missing:
        raise ValueError(f"no bars for {', '.join(missing)}; ingest every symbol of the universe first")
    frames = {s: bars[s] for s in config.symbols}
    aligned = align_assets(frames, feature_set, timeframe=config.timeframe)
    train_end, validation_end = split_dates(aligned.index, config)
    data = portfolio_data(
        frames, feature_set, train_end=train_end, validation_end=validation_end, timeframe=config.timeframe
    )
    train_rows = data.train.stop - data.train.start
    if train_rows < config.window + config.episode_length + 1:
        raise ValueError(
            f"the training span has {train_rows} rows: too few for a window of {config.window} and "
            f"episodes of {config.episode_length} bars; ingest more history or shorten them"
        )
    for name in ("validation", "test"):
        span = data.span(name)
        steps = span.stop - 1 - first_bar(data, name, config)
        if steps < _MIN_EVAL_STEPS:
            raise ValueError(
                f"the {name} span has {span.stop - span.start} rows: after the purge of {config.purge} "
                f"rows it leaves {steps} steps (at least {_MIN_EVAL_STEPS}); ingest more history, or "
                "raise its fraction or lower the purge"
            )
    return data, aligned


def allocator_data(
    bars: Mapping[str, pd.DataFrame], feature_set: FeatureSet, config: AllocatorConfig
) -> PortfolioData:
    """The universe's :class:`envs.PortfolioData` with the config's spans, checked long enough.

    Raises:
        ValueError: a symbol without bars, too little history for the feature set, or spans too
            short for the window, the purge and the episode length (the message says which).
    """
    return _prepare(bars, feature_set, config)[0]


def training_reference(aligned: AlignedAssets, data: PortfolioData) -> pd.DataFrame:
    """The raw (unscaled) feature rows the scaler was fitted on: every asset's rows of the training
    span where its market was open, pooled (one column per feature, the rows' ``ts`` as index,
    repeated once per asset): the drift reference (:func:`models.reference.log_reference`)."""
    rows = data.train
    mask = aligned.tradable[rows]
    values = aligned.features[rows][mask]
    ts = np.broadcast_to(np.asarray(aligned.index[rows])[:, None], mask.shape)[mask]
    return pd.DataFrame(values, index=pd.DatetimeIndex(ts, name="ts"), columns=list(aligned.feature_names))


def first_bar(data: PortfolioData, span: SpanName, config: AllocatorConfig) -> int:
    """The first decision bar of an evaluation episode on ``span``: after the purge for validation
    and test (its window then holds rows of the span only), the first possible bar for train."""
    rows = data.span(span)
    if span == "train":
        return max(rows.start, config.window - 1)
    return max(rows.start + config.purge, config.window - 1)


def env_config(config: AllocatorConfig, span: SpanName, *, training: bool) -> PortfolioEnvConfig:
    """The environment options of ``config``: random episodes of ``episode_length`` bars for
    training, one episode to the span's end (no random start) for evaluation."""
    from envs.portfolio import PortfolioEnvConfig

    return PortfolioEnvConfig(
        span=span,
        window=config.window,
        episode_length=config.episode_length if training else None,
        random_start=training,
        costs=costs_of(config),
        long_short=config.long_short,
        max_weight=config.max_weight,
        gross_cap=config.gross_cap,
        rebalance_band=config.rebalance_band,
        penalty=config.penalty,
        penalty_coef=config.penalty_coef,
    )


@dataclass(frozen=True)
class PolicyRun:
    """One deterministic episode of a policy over a span.

    Attributes:
        targets: the targets executed after each bar's close (one column per asset; the last row
            repeats the target in force): :func:`backtest.run` of them on the same rows with
            ``execution="next_open"`` is :attr:`equity`.
        equity: the account at each bar's close, from the first bar (1.0 at the start).
        decisions: the policy's weights decided at each bar's close (assets, then ``CASH``),
            before the band and the closed markets: what its pyfunc answers for that bar.
        held: the weights at each decision bar's close, before the decision (assets, then
            ``CASH``): what the pyfunc is told as the current weights.
        reward: the episode's total reward (sum of the step rewards).
        costs: costs paid (account currency).
        turnover: traded notional (account currency).
    """

    targets: pd.DataFrame
    equity: pd.Series
    decisions: pd.DataFrame
    held: pd.DataFrame
    reward: float
    costs: float
    turnover: float


def _action_weights(action: np.ndarray, cfg: PortfolioEnvConfig) -> np.ndarray:
    from envs.portfolio import action_weights

    return action_weights(
        action, long_short=cfg.long_short, max_weight=cfg.max_weight, gross_cap=cfg.gross_cap
    )


def run_policy(
    model: BaseAlgorithm,
    vecnorm: VecNormalize,
    data: PortfolioData,
    span: SpanName,
    config: AllocatorConfig,
) -> PolicyRun:
    """One deterministic episode of ``model`` over ``span``, from its first usable bar
    (:func:`first_bar`) to its last, observations normalised by ``vecnorm``'s frozen statistics.

    Raises:
        ValueError: the span is too short for the window.
    """
    from envs.portfolio import PortfolioEnv

    cfg = env_config(config, span, training=False)
    env = PortfolioEnv(data, cfg)
    start = first_bar(data, span, config)
    obs, _ = env.reset(options={"start": start})
    n = data.n_assets
    decisions: list[np.ndarray] = []
    held: list[np.ndarray] = []
    reward = costs = turnover = 0.0
    done = False
    while not done:
        held.append(np.asarray(obs[-(n + 1) :], dtype=np.float64))
        action, _ = model.predict(vecnorm.normalize_obs(obs[None, :]), deterministic=True)
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        weights = _action_weights(action, cfg)
        decisions.append(np.append(weights, 1.0 - weights.sum()))
        obs, r, terminated, truncated, info = env.step(action)
        reward += float(r)
        costs += float(info["costs"])
        turnover += float(info["turnover"])
        done = terminated or truncated
    equity = env.episode_equity()
    columns = [*data.assets, CASH]
    bars = equity.index[: len(decisions)]
    return PolicyRun(
        targets=env.episode_targets(),
        equity=equity,
        decisions=pd.DataFrame(np.array(decisions), index=bars, columns=columns),
        held=pd.DataFrame(np.array(held), index=bars, columns=columns),
        reward=reward,
        costs=costs,
        turnover=turnover,
    )


class ValidationCallback(BaseCallback):
    """Early stopping on deterministic validation episodes; records the learning curves.

    Every ``config.eval_every`` steps (and once at the end) it runs :func:`run_policy` on the
    validation span and keeps the policy's parameters and the ``VecNormalize`` statistics of the
    best episode reward; training stops after ``config.patience`` evaluations without
    improvement. ``report(step, val_reward)``, when given, is called after every evaluation (a
    tuning trial's pruner). ``train_rewards`` holds ``(step, mean episode reward)`` of the training episodes
    finished in each rollout, ``val_rewards`` ``(step, validation episode reward)``.
    """

    def __init__(
        self,
        data: PortfolioData,
        config: AllocatorConfig,
        vecnorm: VecNormalize,
        report: Callable[[int, float], None] | None = None,
    ) -> None:
        super().__init__(verbose=0)
        self.data, self.config, self.vecnorm, self.report = data, config, vecnorm, report
        self.train_rewards: list[tuple[int, float]] = []
        self.val_rewards: list[tuple[int, float]] = []
        self.best_reward = -math.inf
        self.best_step = 0
        self.best_state: dict[str, Any] | None = None
        self.best_stats: tuple[Any, Any] | None = None
        self.stale = 0
        self.stopped_early = False
        self._episodes: list[float] = []
        self._last_eval = 0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")
            if episode is not None:
                self._episodes.append(float(episode["r"]))
        if self.num_timesteps - self._last_eval >= self.config.eval_every:
            self._last_eval = self.num_timesteps
            return self._evaluate()
        return True

    def _on_rollout_end(self) -> None:
        if self._episodes:
            self.train_rewards.append((self.num_timesteps, float(np.mean(self._episodes))))
            self._episodes = []

    def _on_training_end(self) -> None:
        if self._last_eval != self.num_timesteps:
            self._last_eval = self.num_timesteps
            self._evaluate()

    def _evaluate(self) -> bool:
        run = run_policy(self.model, self.vecnorm, self.data, "validation", self.config)
        self.val_rewards.append((self.num_timesteps, run.reward))
        if self.report is not None:
            self.report(self.num_timesteps, run.reward)  # may raise (a pruned tuning trial)
        if run.reward > self.best_reward:
            self.best_reward = run.reward
            self.best_step = self.num_timesteps
            self.best_state = copy.deepcopy(self.model.policy.state_dict())
            self.best_stats = (copy.deepcopy(self.vecnorm.obs_rms), copy.deepcopy(self.vecnorm.ret_rms))
            self.stale = 0
            return True
        self.stale += 1
        if self.stale >= self.config.patience:
            self.stopped_early = True
            return False
        return True

    def restore_best(self) -> None:
        """Put the best policy and statistics back into the model and ``vecnorm``."""
        if self.best_state is not None and self.best_stats is not None:
            self.model.policy.load_state_dict(self.best_state)
            self.vecnorm.obs_rms, self.vecnorm.ret_rms = copy.deepcopy(self.best_stats)


@dataclass
class SeedRun:
    """One seed's trained agent and its curves.

    Attributes:
        seed: the seed.
        model: the algorithm with the best validation parameters loaded.
        vecnorm: its ``VecNormalize`` with the best statistics, frozen (``training=False``,
            ``norm_reward=False``).
        val_reward: the best validation episode reward.
        best_step: the training step it was reached at.
        timesteps: steps trained (fewer than asked when stopped early).
        stopped_early: whether the patience ran out.
        train_rewards, val_rewards: ``(step, reward)`` curves.
    """

    seed: int
    model: Any
    vecnorm: Any
    val_reward: float
    best_step: int
    timesteps: int
    stopped_early: bool
    train_rewards: list[tuple[int, float]] = field(default_factory=list)
    val_rewards: list[tuple[int, float]] = field(default_factory=list)


def _algorithm(config: AllocatorConfig, venv: Any, seed: int) -> BaseAlgorithm:
    policy_kwargs: dict[str, Any] = {"net_arch": list(config.net_arch)}
    if config.algo == "ppo":
        from stable_baselines3 import PPO

        policy_kwargs["log_std_init"] = config.log_std_init
        return PPO(
            "MlpPolicy",
            venv,
            learning_rate=config.learning_rate,
            n_steps=config.n_steps,
            batch_size=config.batch_size,
            n_epochs=config.n_epochs,
            gamma=config.gamma,
            ent_coef=config.ent_coef,
            policy_kwargs=policy_kwargs,
            seed=seed,
            device="cpu",
            verbose=0,
        )
    from stable_baselines3 import SAC

    return SAC(
        "MlpPolicy",
        venv,
        learning_rate=config.learning_rate,
        buffer_size=max(config.timesteps, 1_000),
        learning_starts=min(1_000, config.timesteps // 4),
        batch_size=config.batch_size,
        gamma=config.gamma,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
    )


@dataclass(frozen=True)
class _PortfolioEnvMaker:
    """Builds one training :class:`envs.PortfolioEnv` in a ``SubprocVecEnv`` worker process."""

    data: PortfolioData
    config: PortfolioEnvConfig

    def __call__(self) -> Any:
        from envs.portfolio import PortfolioEnv

        return PortfolioEnv(self.data, self.config)


def train_agent(
    data: PortfolioData,
    config: AllocatorConfig,
    seed: int,
    timesteps: int | None = None,
    report: Callable[[int, float], None] | None = None,
) -> SeedRun:
    """Train one agent with ``seed`` on the training span, early-stopped on validation.

    The ``n_envs`` training episodes step in this process (:class:`envs.PortfolioVecEnv`), or with
    ``config.subproc`` one :class:`envs.PortfolioEnv` per worker process (SB3's ``SubprocVecEnv``,
    closed when training ends); both seed episode ``i`` with ``seed + i``, so they train the same agent.

    Raises:
        ValueError: the spans are too short for the config (see :func:`allocator_data`).
    """
    import torch
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecMonitor, VecNormalize

    from envs.vector import PortfolioVecEnv

    torch.set_num_threads(TORCH_THREADS)
    set_random_seed(seed)
    cfg = env_config(config, "train", training=True)
    raw: VecEnv
    if config.subproc:
        raw = SubprocVecEnv([_PortfolioEnvMaker(data, cfg)] * config.n_envs)
    else:
        raw = PortfolioVecEnv(data, config.n_envs, cfg)
    raw.seed(seed)
    vecnorm = VecNormalize(VecMonitor(raw), norm_obs=True, norm_reward=True, gamma=config.gamma)
    try:
        model = _algorithm(config, vecnorm, seed)
        callback = ValidationCallback(data, config, vecnorm, report)
        model.learn(total_timesteps=timesteps or config.timesteps, callback=callback)
    finally:
        if config.subproc:
            raw.close()  # the worker processes; the model and the statistics stay usable
    callback.restore_best()
    vecnorm.training = False
    vecnorm.norm_reward = False
    return SeedRun(
        seed=seed,
        model=model,
        vecnorm=vecnorm,
        val_reward=callback.best_reward,
        best_step=callback.best_step,
        timesteps=int(model.num_timesteps),
        stopped_early=callback.stopped_early,
        train_rewards=callback.train_rewards,
        val_rewards=callback.val_rewards,
    )


@dataclass
class AllocatorResult:
    """Everything a training run produced: the kept agent, its one test episode, the baselines.

    Attributes:
        config: the configuration trained.
        data: the universe's rows, features, scaler and spans.
        feature_set: the feature set of the observations.
        runs: one :class:`SeedRun` per seed, in the config's order.
        best: the index in ``runs`` of the agent kept (best validation reward).
        validation: the kept agent's deterministic validation episode.
        test: its one deterministic test episode.
        baselines: each baseline's targets on the test episode's rows (:func:`baseline_targets`).
        windows: ``{span: (first decision bar, last bar)}`` of train, validation and test.
        reference: the raw training feature rows (:func:`training_reference`).
    """

    config: AllocatorConfig
    data: PortfolioData
    feature_set: FeatureSet
    runs: list[SeedRun]
    best: int
    validation: PolicyRun
    test: PolicyRun
    baselines: dict[str, pd.DataFrame]
    windows: dict[str, tuple[pd.Timestamp, pd.Timestamp]]
    reference: pd.DataFrame | None = None

    @property
    def agent(self) -> SeedRun:
        """The kept agent."""
        return self.runs[self.best]

    @property
    def test_rows(self) -> slice:
        """The rows of ``data`` the test episode covers (what the backtests run on)."""
        start = self.data.index.searchsorted(self.test.equity.index[0])
        return slice(int(start), int(start) + len(self.test.equity))

    @property
    def test_output(self) -> pd.DataFrame:
        """The agent's decisions on the test span (its pyfunc's weights per decision bar)."""
        return self.test.decisions

    @property
    def min_bars(self) -> int:
        """Bars per symbol its pyfunc needs: the feature set's history horizon plus ``window - 1``."""
        return self.feature_set.min_history + self.config.window - 1


def train_allocator(
    bars: Mapping[str, pd.DataFrame], feature_set: FeatureSet, config: AllocatorConfig
) -> AllocatorResult:
    """Run the whole recipe of the module docstring on the universe's canonical bars.

    Args:
        bars: ``{symbol: canonical bars}`` holding every symbol of ``config.symbols``.
        feature_set: the observations' feature set (``config.feature_set``).
        config: the experiment.

    Raises:
        ValueError: missing symbols or too little history (see :func:`allocator_data`).
    """
    data, aligned = _prepare(bars, feature_set, config)
    runs = [train_agent(data, config, seed) for seed in config.seeds]
    best = int(np.argmax([r.val_reward for r in runs]))
    agent = runs[best]
    validation = run_policy(agent.model, agent.vecnorm, data, "validation", config)
    test = run_policy(agent.model, agent.vecnorm, data, "test", config)
    start = int(data.index.searchsorted(test.equity.index[0]))
    options = BaselineOptions(
        max_weight=config.max_weight,
        gross_cap=config.gross_cap,
        band=config.rebalance_band,
        window=config.baseline_window,
        costs=costs_of(config),
    )
    baselines = dict(
        baseline_targets(
            data.open,
            data.close,
            data.tradable,
            options,
            index=data.index,
            assets=data.assets,
            start=start,
            names=BASELINES,
        )
    )
    windows = {
        name: (data.index[first_bar(data, name, config)], data.index[data.span(name).stop - 1])
        for name in ("train", "validation", "test")
    }
    return AllocatorResult(
        config=config,
        data=data,
        feature_set=feature_set,
        runs=runs,
        best=best,
        validation=validation,
        test=test,
        baselines=baselines,
        windows=windows,
        reference=training_reference(aligned, data),
    )
