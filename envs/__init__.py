"""FKS environments: portfolio allocation between N assets and cash, for reinforcement learning.

* :func:`portfolio_data` aligns N assets' bars on one calendar, builds and scales their features
  (scaler fitted on the training span only) and cuts the train / validation / test spans into a
  :class:`PortfolioData` (numpy arrays; no I/O while stepping).
* :class:`PortfolioEnv` (Gymnasium id ``fks/Portfolio-v0``): one episode; observation, action,
  reward, costs and timing are in :mod:`envs.portfolio`'s docstring. An episode's equity is
  :func:`backtest.run` of its targets (``execution="next_open"``): the same kernel
  (:func:`market.rebalance.advance_nb`) computes both.
* :class:`PortfolioVecEnv`: many episodes stepped in one numba call, as a Stable-Baselines3
  ``VecEnv``, equal episode by episode to :class:`PortfolioEnv`.

Names are imported on first use: ``import envs`` does nothing; importing :mod:`envs.portfolio`
(``from envs import PortfolioEnv`` does) registers ``fks/Portfolio-v0`` with Gymnasium, and
:mod:`envs.vector` imports Stable-Baselines3::

    from envs import PortfolioEnv, portfolio_data
    data = portfolio_data(bars, get_feature_set("minimal"), train_end="2023-01-01")
    env = PortfolioEnv(data, window=30, costs=Costs(commission_bps=5, slippage_bps=5))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.exports import lazy_exports

if TYPE_CHECKING:
    from envs.data import AlignedAssets, PortfolioData, align_assets, portfolio_data
    from envs.portfolio import ENV_ID, PortfolioEnv, PortfolioEnvConfig
    from envs.vector import PortfolioVecEnv

_EXPORTS: dict[str, str] = {
    "AlignedAssets": "envs.data",
    "PortfolioData": "envs.data",
    "align_assets": "envs.data",
    "portfolio_data": "envs.data",
    "ENV_ID": "envs.portfolio",
    "PortfolioEnv": "envs.portfolio",
    "PortfolioEnvConfig": "envs.portfolio",
    "PortfolioVecEnv": "envs.vector",
}

__all__ = [
    "ENV_ID",
    "AlignedAssets",
    "PortfolioData",
    "PortfolioEnv",
    "PortfolioEnvConfig",
    "PortfolioVecEnv",
    "align_assets",
    "portfolio_data",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
