"""Portfolio environment benchmark: steps/s of :class:`envs.PortfolioEnv` against gym-anytrading.

Run ``python -m benchmarks.env``; options: ``--assets N`` (default 10), ``--steps S`` (default
200,000 per timing), ``--repeats K`` (default 5), ``--window W`` (default 30), ``--num-envs M``
(default 16), ``--ppo-steps P`` (default 4,096), ``--torch-threads J`` (default 1). Prints one
JSON object.

Workload: ``N`` assets of daily bars from the project's synthetic market
(:mod:`providers.synthetic`, seed 7, ``XNYS`` calendar, 2010 to 2024: about 3,500 bars each),
turned into a :class:`envs.PortfolioData` with the ``minimal`` feature set (8 features per
asset, scaler fitted on the training span up to 2020). Every environment gets the same random
actions (pre-drawn, seeded), is reset when its episode ends, and is called directly (no
``gymnasium.make`` wrappers, which would add the same overhead to both).

* ``ours``: steps/s of one :class:`envs.PortfolioEnv` on the training span, episodes from a
  random bar to the span's end, window ``W`` (observation ``W * N * 8 + N + 1`` float32 values),
  costs (5 bps commission, 5 bps slippage, a minimum fee) on every rebalance, long only with
  all ``N + 1`` action scores. Best of ``K`` timings of ``S`` steps, after a warm-up whose time
  (numba compilation or loading the on-disk cache) is ``first_call_s``.
* ``gym_anytrading``: the anchor, gym-anytrading 2.0's single-asset ``StocksEnv`` in its fastest
  form: built directly on one asset's closes (the same number of bars) with its own default
  stocks window of 30, discrete actions (buy/sell), best of ``K`` timings of ``S`` steps,
  interleaved with ours so that both see the same machine load.
* ``vectorised``: steps/s (episodes x calls per second) of :class:`envs.PortfolioVecEnv` with
  ``M`` episodes, same data and options, best of ``K``.
* ``ppo``: Stable-Baselines3 PPO (``MlpPolicy``, seed 0, CPU, default hyper-parameters but
  ``n_steps = P / 8``) on a :class:`envs.PortfolioVecEnv` of 8 episodes: ``learn(P)`` is one
  rollout of ``P`` steps and one update (10 epochs of minibatches of 64); timesteps/s of the
  whole call and the seconds spent in the rollout, after a small untimed warm-up run (PyTorch's
  first calls). PyTorch runs on ``J`` threads: one is the fastest for networks this small, and
  more threads on a busy machine make the update many times slower (seen: 2.7 s with one thread,
  18 s with two, while other jobs ran on the two cores).

Target: ``ratio = ours / gym_anytrading >= 1`` (10 assets with costs at least as many steps/s
as gym-anytrading for one). ``peak_rss_mb`` is the process's peak resident memory after each
stage.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import peak_rss_mb as _peak_rss_mb

TARGET = 1.0
COSTS = {"commission_bps": 5.0, "slippage_bps": 5.0, "min_fee": 1e-5}


def make_data(assets: int) -> Any:
    """A :class:`envs.PortfolioData` of ``assets`` synthetic daily equities (seeded)."""
    from envs import portfolio_data
    from features import get_feature_set
    from providers.synthetic import SyntheticMarket, simulate

    market = SyntheticMarket(
        seed=7, symbols=tuple(f"S{i:02d}" for i in range(assets)), calendar="XNYS", origin="2010-01-01"
    )
    bars = simulate(market, "1d", end="2024-01-01")
    return portfolio_data(
        bars, get_feature_set("minimal"), train_end="2020-01-01", validation_end="2022-01-01"
    )


def _loop(step: Callable[[Any], tuple], reset: Callable[[], Any], actions: np.ndarray) -> float:
    """Seconds to take every action, resetting when an episode ends."""
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = step(action)
        if terminated or truncated:
            reset()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print its JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--assets", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=int, default=30)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--ppo-steps", type=int, default=4096)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)

    from gym_anytrading.envs import StocksEnv

    from envs import PortfolioEnv, PortfolioVecEnv
    from market.rebalance import Costs

    out: dict[str, Any] = {"peak_rss_mb": {}}
    started = time.perf_counter()
    data = make_data(args.assets)
    bars = len(data.index)
    out.update(
        assets=args.assets,
        bars=bars,
        features_per_asset=data.n_features,
        window=args.window,
        costs=COSTS,
        data_s=round(time.perf_counter() - started, 2),
    )
    out["peak_rss_mb"]["data"] = _peak_rss_mb()
    options = {"window": args.window, "costs": Costs(**COSTS)}
    rng = np.random.default_rng(0)

    env = PortfolioEnv(data, **options)
    env.reset(seed=0)
    actions = rng.uniform(-1.0, 1.0, (args.steps, data.n_assets + 1)).astype(np.float32)
    started = time.perf_counter()
    _loop(env.step, env.reset, actions[:100])
    out["first_call_s"] = round(time.perf_counter() - started, 3)
    out["obs_size"] = int(env.observation_space.shape[0])

    frame = pd.DataFrame({"Close": data.close[:, 0]})
    anchor = StocksEnv(frame, window_size=30, frame_bound=(30, bars))
    anchor.reset(seed=0)
    discrete = rng.integers(0, 2, args.steps).tolist()
    _loop(anchor.step, anchor.reset, discrete[:100])

    ours_s, anchor_s = np.inf, np.inf
    for _ in range(args.repeats):  # interleaved: both see the same load
        ours_s = min(ours_s, _loop(env.step, env.reset, actions))
        anchor_s = min(anchor_s, _loop(anchor.step, anchor.reset, discrete))
    out["ours"] = {"steps_per_s": round(args.steps / ours_s), "step_us": round(ours_s / args.steps * 1e6, 2)}
    out["gym_anytrading"] = {
        "env": "gym_anytrading.envs.StocksEnv (1 asset, window 30, built directly)",
        "steps_per_s": round(args.steps / anchor_s),
        "step_us": round(anchor_s / args.steps * 1e6, 2),
    }
    out["peak_rss_mb"]["scalar"] = _peak_rss_mb()

    vec = PortfolioVecEnv(data, args.num_envs, **options)
    vec.seed(0)
    vec.reset()
    calls = max(args.steps // args.num_envs, 1)
    batch = rng.uniform(-1.0, 1.0, (calls, args.num_envs, data.n_assets + 1)).astype(np.float32)
    vec.step(batch[0])
    vec_s = np.inf
    for _ in range(args.repeats):
        started = time.perf_counter()
        for b in batch:
            vec.step(b)
        vec_s = min(vec_s, time.perf_counter() - started)
    out["vectorised"] = {"num_envs": args.num_envs, "steps_per_s": round(calls * args.num_envs / vec_s)}
    out["peak_rss_mb"]["vectorised"] = _peak_rss_mb()

    out["ppo"] = _ppo(data, options, args.ppo_steps, args.torch_threads)
    out["peak_rss_mb"]["ppo"] = _peak_rss_mb()

    out["ratio"] = round(anchor_s / ours_s, 3)
    out["vectorised_ratio"] = round(
        out["vectorised"]["steps_per_s"] / out["gym_anytrading"]["steps_per_s"], 2
    )
    out["target_min"] = TARGET
    out["target_met"] = bool(out["ratio"] >= TARGET)
    print(json.dumps(out, indent=2))
    return out


def _ppo(data: Any, options: dict[str, Any], timesteps: int, threads: int) -> dict[str, Any]:
    """One PPO rollout of ``timesteps`` steps on 8 episodes and one update; its timings."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from envs import PortfolioVecEnv

    class RolloutClock(BaseCallback):
        def _on_rollout_start(self) -> None:
            self.started = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.seconds = time.perf_counter() - self.started

        def _on_step(self) -> bool:
            return True

    torch.set_num_threads(threads)
    n_envs = 8
    vec = PortfolioVecEnv(data, n_envs, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3's hint that PPO on CPU suits an MLP policy
        warm = PPO("MlpPolicy", vec, n_steps=16, batch_size=64, seed=0, device="cpu", verbose=0)
        warm.learn(total_timesteps=16 * n_envs)  # PyTorch's first calls, not timed
        model = PPO("MlpPolicy", vec, n_steps=max(timesteps // n_envs, 8), seed=0, device="cpu", verbose=0)
        clock = RolloutClock()
        started = time.perf_counter()
        model.learn(total_timesteps=timesteps, callback=clock)
        seconds = time.perf_counter() - started
    return {
        "timesteps": timesteps,
        "n_envs": n_envs,
        "learn_s": round(seconds, 2),
        "timesteps_per_s": round(timesteps / seconds),
        "rollout_s": round(clock.seconds, 3),
        "torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    main()
