"""The allocator trained on SB3's SubprocVecEnv (one PortfolioEnv per worker process) is the agent
trained on the in-process PortfolioVecEnv: the same episodes (episode i seeded seed + i), the same
rollouts, so the same validation rewards and policy weights up to float rounding (the vectorised
environment computes its observations in another order of operations: the rewards differ by
about 1e-9, a float32 network drifts a little further over training); and its test episode is a
valid allocation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from config.models import AllocatorConfig
from features import get_feature_set
from models.allocator.training import train_allocator
from providers.synthetic import SyntheticMarket, simulate

pytestmark = pytest.mark.slow

SYMBOLS = ("S0", "S1", "S2")
TINY = {
    "symbols": SYMBOLS,
    "timesteps": 512,
    "n_envs": 2,
    "n_steps": 64,
    "batch_size": 64,
    "n_epochs": 2,
    "eval_every": 128,
    "patience": 2,
    "episode_length": 32,
    "window": 3,
    "seeds": (3,),
}


def _bars() -> dict[str, pd.DataFrame]:
    market = SyntheticMarket(seed=5, symbols=SYMBOLS, calendar="24/7", origin="2017-01-01")
    return simulate(market, "1d", end="2019-06-01")


def test_subproc_envs_train_the_in_process_agent() -> None:
    torch.set_num_threads(1)
    bars, feature_set = _bars(), get_feature_set("minimal")
    in_process = train_allocator(bars, feature_set, AllocatorConfig(**TINY))
    subproc = train_allocator(bars, feature_set, AllocatorConfig(**TINY, subproc=True))

    assert subproc.agent.timesteps == in_process.agent.timesteps >= 512
    steps, rewards = zip(*subproc.agent.val_rewards, strict=True)
    assert list(steps) == [s for s, _ in in_process.agent.val_rewards] and len(steps) >= 3
    np.testing.assert_allclose(rewards, [r for _, r in in_process.agent.val_rewards], atol=1e-6)
    np.testing.assert_allclose(subproc.agent.train_rewards, in_process.agent.train_rewards, atol=1e-6)
    mine, theirs = subproc.agent.model.policy.state_dict(), in_process.agent.model.policy.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        np.testing.assert_allclose(mine[key].numpy(), theirs[key].numpy(), atol=1e-4)

    # a valid model: long-only weights (assets, then cash) that sum to one at every test decision
    weights = subproc.test.decisions.to_numpy()
    assert len(weights) > 10 and np.isfinite(weights).all() and (weights >= -1e-12).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    assert subproc.test.equity.index.equals(in_process.test.equity.index)
    np.testing.assert_allclose(subproc.test.equity.to_numpy(), in_process.test.equity.to_numpy(), rtol=1e-5)
