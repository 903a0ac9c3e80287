"""``PortfolioVecEnv``: many :class:`~envs.portfolio.PortfolioEnv` episodes stepped in one numba call.

A Stable-Baselines3 ``VecEnv`` (``PPO("MlpPolicy", PortfolioVecEnv(data, 16, window=30))``):
episode ``i`` behaves exactly as a :class:`~envs.portfolio.PortfolioEnv` with the same data and
options reset with seed ``seed + i`` (:meth:`seed`, as SB3's ``DummyVecEnv`` seeds its
environments) and then without a seed after each episode, and given the same actions: same
observations, rewards, ends and infos. A finished episode is reset at once (SB3's convention):
its last observation is in ``infos[i]["terminal_observation"]`` and
``infos[i]["TimeLimit.truncated"]`` tells a truncation from a termination.

Importing this module imports Stable-Baselines3 (and PyTorch); :mod:`envs.portfolio` does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from envs import _kernels as _k
from envs.data import PortfolioData
from envs.portfolio import Episodes, PortfolioEnvConfig, make_config

__all__ = ["PortfolioVecEnv"]


class PortfolioVecEnv(VecEnv):
    """``num_envs`` portfolio episodes on one :class:`~envs.data.PortfolioData`, stepped together.

    Args:
        data: the assets, features and spans.
        num_envs: how many episodes run side by side (>= 1).
        config: the options as a :class:`~envs.portfolio.PortfolioEnvConfig`, or
        **options: its fields as keywords.

    Raises:
        ValueError: bad data, options or ``num_envs``.
    """

    def __init__(
        self, data: PortfolioData, num_envs: int, config: PortfolioEnvConfig | None = None, **options: Any
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive number of episodes, got {num_envs!r}")
        self.config = make_config(config, options)
        self.data = data
        self.render_mode = None
        self._episodes = Episodes(data, self.config, num_envs, record=False)
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._obs_shape = (num_envs, self._episodes.obs_size)
        super().__init__(num_envs, self._episodes.observation_space, self._episodes.action_space)

    @property
    def np_random(self) -> list[np.random.Generator]:
        """Each episode's random generator (created unseeded when none was seeded)."""
        return [self._rng(i) for i in range(self.num_envs)]

    def _rng(self, i: int, seed: int | None = None) -> np.random.Generator:
        rng = self._rngs[i]
        if seed is not None or rng is None:
            rng, _ = seeding.np_random(seed)
            self._rngs[i] = rng
        return rng

    def _begin(
        self, i: int, obs: np.ndarray, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        episodes = self._episodes
        start = episodes.start(self._rng(i, seed), (options or {}).get("start"))
        episodes.begin(i, start, obs)
        return {"equity": self.config.initial_capital, "bar": start}

    def reset(self) -> VecEnvObs:
        """Start every episode (with the seeds of :meth:`seed` and the options of ``set_options``,
        used once); returns the observations ``(num_envs, obs_size)``."""
        obs = np.empty(self._obs_shape, dtype=np.float32)
        self.reset_infos = [
            self._begin(i, obs[i], self._seeds[i], self._options[i]) for i in range(self.num_envs)
        ]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Take the actions ``(num_envs, N + 1)`` of the next :meth:`step_wait`.

        Raises:
            ValueError: actions of the wrong shape.
        """
        actions = np.asarray(actions)
        if actions.shape != self._episodes.actions.shape:
            raise ValueError(
                f"actions must have shape {self._episodes.actions.shape} (num_envs, N + 1), "
                f"got {actions.shape}"
            )
        self._episodes.actions[:] = actions

    def step_wait(self) -> VecEnvStepReturn:
        """Step every episode; finished ones are reset at once (see the module docstring)."""
        episodes = self._episodes
        obs = np.empty(self._obs_shape, dtype=np.float32)  # fresh: the caller may keep it
        episodes.step(obs)
        results = episodes.state[:, _k.O_REWARD : _k.S_BAR + 1]  # read before any reset below
        rewards = results[:, 0].astype(np.float32)
        terminated = results[:, _k.O_TERMINATED - _k.O_REWARD] != 0.0
        dones = terminated | (results[:, _k.O_TRUNCATED - _k.O_REWARD] != 0.0)
        infos: list[dict[str, Any]] = [
            {"equity": equity, "costs": costs, "turnover": turnover, "bar": int(bar)}
            for _, equity, costs, turnover, _, _, bar in results.tolist()
        ]
        for i in np.flatnonzero(dones).tolist():
            infos[i]["terminal_observation"] = obs[i].copy()
            infos[i]["TimeLimit.truncated"] = not terminated[i]
            self.reset_infos[i] = self._begin(i, obs[i])
        return obs, rewards, dones, infos

    def close(self) -> None:
        """Nothing to release."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of the environments: the vector's own (they share data, options, spaces),
        or each episode's generator for ``np_random``."""
        targets = list(self._get_indices(indices))
        if attr_name == "np_random":
            return [self._rng(i) for i in targets]
        return [getattr(self, attr_name) for _ in targets]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Not supported: the episodes share one configuration.

        Raises:
            NotImplementedError: always; build a new vector with other options.
        """
        raise NotImplementedError(
            f"cannot set {attr_name!r} on one episode of a PortfolioVecEnv: its episodes share one "
            "configuration; build a new PortfolioVecEnv with the options you need"
        )

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Not supported: there are no per-episode environment objects.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            f"PortfolioVecEnv has no per-episode environments to call {method_name!r} on; use "
            "envs.portfolio.PortfolioEnv for one episode"
        )

    def env_is_wrapped(
        self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        """Never: the episodes are not Gymnasium environments (wrap the vector, e.g. ``VecMonitor``)."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """No rendering."""
        return [None for _ in range(self.num_envs)]
