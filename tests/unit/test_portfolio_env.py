"""The portfolio environment (envs/): checkers, a hand-computed episode, no look-ahead, equality
with backtest.run, seeding, the trading rules, and the vectorised form against the scalar one."""

from __future__ import annotations

import dataclasses
import gc
import math
import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from backtest import Costs, run
from envs.data import PortfolioData, portfolio_data
from envs.portfolio import ENV_ID, PortfolioEnv
from envs.vector import PortfolioVecEnv
from features import get_feature_set
from providers.synthetic import SyntheticMarket, simulate

COSTS = Costs(commission_bps=7, slippage_bps=3, min_fee=0.0002)


def _bars(seed: int = 3) -> dict[str, pd.DataFrame]:
    """Two coins (24/7) and a stock (XNYS: closed at weekends and on holidays), daily."""
    coins = SyntheticMarket(seed=seed, symbols=("C1", "C2"), calendar="24/7", origin="2020-01-01")
    stock = SyntheticMarket(seed=seed + 1, symbols=("EQ",), calendar="XNYS", origin="2020-01-01")
    return {**simulate(coins, "1d", end="2023-01-01"), **simulate(stock, "1d", end="2023-01-01")}


def _data(bars: dict[str, pd.DataFrame]) -> PortfolioData:
    return portfolio_data(
        bars, get_feature_set("minimal"), train_end="2022-04-01", validation_end="2022-08-01"
    )


@pytest.fixture(scope="module")
def data() -> PortfolioData:
    return _data(_bars())


def _scores(weights: np.ndarray) -> np.ndarray:
    """Long-only scores that map exactly to ``weights`` (cash last): ``p = score + 1 = 2 w``."""
    return 2.0 * np.asarray(weights, dtype=np.float64) - 1.0


def _random_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random long-only weights of N assets and cash, some of them zero."""
    return rng.dirichlet(np.ones(n + 1)) * (rng.random(n + 1) >= 0.2)


def _backtest_equity(env: PortfolioEnv, costs: Costs, capital: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The episode's equity, and backtest.run's equity of the episode's executed targets."""
    equity = env.episode_equity()
    start = env.data.index.get_loc(equity.index[0])
    rows = slice(start, start + len(equity))
    result = run(
        env.data.prices(rows),
        env.episode_targets(),
        costs,
        "next_open",
        initial_capital=capital,
        periods_per_year=365,
    )
    return equity.to_numpy(), result.equity.to_numpy()


def _all_open(data: PortfolioData, env: PortfolioEnv) -> int:
    """A first bar from which every asset's market is open on the next two bars."""
    first, last = env.start_range
    return next(t for t in range(first, last) if data.tradable[t + 1 : t + 3].all())


# --------------------------------------------------------------------------- checkers, registration


def test_gymnasium_and_sb3_checkers_pass_without_warnings(data: PortfolioData) -> None:
    env = gymnasium.make(ENV_ID, data=data, window=5, costs=COSTS, episode_length=40).unwrapped
    gc.collect()  # earlier tests' garbage (e.g. a client's unclosed socket) warns when collected
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium_check_env(env)
        sb3_check_env(env)
    # a ResourceWarning is about an object collected meanwhile (the checkers open no resource)
    assert [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)] == []


def test_registered_on_import_of_envs_portfolio_only() -> None:
    code = (
        "import gymnasium, envs; assert 'fks/Portfolio-v0' not in gymnasium.registry; "
        "import envs.portfolio; assert 'fks/Portfolio-v0' in gymnasium.registry"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- a hand-computed episode


def _hand_data() -> PortfolioData:
    index = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC", name="ts")
    open_ = np.array([[100.0, 50.0], [101.0, 50.0], [103.0, 48.0], [104.0, 51.0]])
    close = np.array([[100.0, 50.0], [102.0, 49.0], [104.0, 50.0], [105.0, 52.0]])
    features = (10.0 * np.arange(4)[:, None] + np.arange(2)[None, :])[:, :, None]  # row t, asset a: 10 t + a
    return PortfolioData(
        assets=("A", "B"),
        index=index,
        open=open_,
        close=close,
        tradable=np.ones((4, 2), dtype=bool),
        features=features,
        feature_names=("f",),
        train=slice(0, 4),
        validation=slice(4, 4),
        test=slice(4, 4),
    )


def test_three_step_episode_by_hand_to_the_cent() -> None:
    # 10,000 of capital, 20 bps commission + 5 bps slippage (rate 0.0025) and 1.00 per fill.
    costs = Costs(commission_bps=20, slippage_bps=5, min_fee=1.0)
    rate, fee = 0.0025, 1.0
    env = PortfolioEnv(
        _hand_data(), window=1, costs=costs, initial_capital=10_000.0, random_start=False, episode_length=3
    )
    obs, info = env.reset(seed=0)
    assert info == {"equity": 10_000.0, "bar": 0}
    np.testing.assert_array_equal(obs, [0.0, 1.0, 0.0, 0.0, 1.0])  # features of row 0, all cash

    # Step 1: decided at the close of day 0, filled at the open of day 1 (A 101, B 50): A to 50%
    # and B to 25% of X, what is left once both fills are paid: X = 10,000 - rate * 0.75 X - 2 fees.
    x1 = (10_000 - 2 * fee) / (1 + rate * 0.75)
    assert round(x1, 2) == 9_979.29
    costs1 = 10_000 - x1  # 0.0025 * 7,484.47 notional + 2.00 = 20.71
    assert round(costs1, 2) == 20.71
    units_a, units_b = 0.5 * x1 / 101, 0.25 * x1 / 50
    cash1 = 10_000 - units_a * 101 - units_b * 50 - costs1  # 25% of X stays in cash
    equity1 = cash1 + units_a * 102 + units_b * 49  # marked at day 1's close
    assert round(equity1, 2) == 9_978.79
    obs, reward, terminated, truncated, info = env.step(_scores([0.5, 0.25, 0.25]))
    assert info["costs"] == pytest.approx(costs1, abs=1e-9)
    assert info["turnover"] == pytest.approx(0.75 * x1, abs=1e-9)
    assert info["equity"] == pytest.approx(equity1, abs=1e-9)
    assert reward == pytest.approx(math.log(equity1 / 10_000), abs=1e-12)
    assert not (terminated or truncated)
    weights1 = [units_a * 102 / equity1, units_b * 49 / equity1, cash1 / equity1]
    np.testing.assert_allclose(obs, [10.0, 11.0, *weights1], rtol=1e-6)  # float32

    # Step 2: A keeps its target (0.5: no trade, its weight drifts), B is sold at day 2's open (48).
    costs2 = rate * units_b * 48 + fee  # 0.0025 * 2,395.03 + 1.00 = 6.99
    assert round(costs2, 2) == 6.99
    cash2 = cash1 + units_b * 48 - costs2
    equity2 = cash2 + units_a * 104
    obs, reward, terminated, truncated, info = env.step(_scores([0.5, 0.0, 0.5]))
    assert info["costs"] == pytest.approx(costs2, abs=1e-9)
    assert info["equity"] == pytest.approx(equity2, abs=1e-9)
    assert round(info["equity"], 2) == 10_020.72
    assert reward == pytest.approx(math.log(equity2 / equity1), abs=1e-12)

    # Step 3 at day 3's open (A 104, B 51): A sold down to 25% of X, B bought to 50% of X:
    # X = E - rate * (vA - 0.25 X) - rate * 0.5 X - 2 fees  =>  X = (E - rate vA - 2 fees) / (1 + 0.25 rate).
    value_a = units_a * 104
    e3 = cash2 + value_a
    x3 = (e3 - rate * value_a - 2 * fee) / (1 + 0.25 * rate)
    costs3 = e3 - x3  # 0.0025 * (5,137.85 - 2,499.91) + 0.0025 * 4,999.81 + 2.00 = 21.09
    assert round(costs3, 2) == 21.09
    units_a3, units_b3 = 0.25 * x3 / 104, 0.5 * x3 / 51
    cash3 = e3 - units_a3 * 104 - units_b3 * 51 - costs3
    equity3 = cash3 + units_a3 * 105 + units_b3 * 52
    obs, reward, terminated, truncated, info = env.step(_scores([0.25, 0.5, 0.25]))
    assert info["costs"] == pytest.approx(costs3, abs=1e-9)
    assert info["equity"] == pytest.approx(equity3, abs=1e-9)
    assert round(info["equity"], 2) == 10_121.69
    assert reward == pytest.approx(math.log(equity3 / equity2), abs=1e-12)
    assert truncated and not terminated  # three steps: the episode length
    with pytest.raises(RuntimeError, match="reset"):
        env.step(_scores([0.25, 0.5, 0.25]))


# --------------------------------------------------------------------------- timing and equality


def test_observations_up_to_t_ignore_every_later_bar(data: PortfolioData) -> None:
    start = PortfolioEnv(data, window=5, random_start=False).reset()[1]["bar"]
    cut = start + 30
    rng = np.random.default_rng(11)
    later = slice(cut + 1, None)
    open_, close, features = data.open.copy(), data.close.copy(), data.features.copy()
    open_[later] *= rng.uniform(0.5, 1.5, open_[later].shape)
    close[later] *= rng.uniform(0.5, 1.5, close[later].shape)
    features[later] = rng.normal(size=features[later].shape)
    tradable = data.tradable.copy()
    tradable[later] = rng.random(tradable[later].shape) < 0.5
    changed = dataclasses.replace(data, open=open_, close=close, features=features, tradable=tradable)
    actions = rng.uniform(-1, 1, (cut - start, data.n_assets + 1))

    def observations(d: PortfolioData) -> list[np.ndarray]:
        env = PortfolioEnv(d, window=5, costs=COSTS, random_start=False)
        seen = [env.reset()[0]]
        seen += [env.step(a)[0] for a in actions]  # the last one is the observation at bar `cut`
        return [*seen, env.step(actions[0])[0]]  # and one at `cut + 1`

    before, after = observations(data), observations(changed)
    for x, y in zip(before[:-1], after[:-1], strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(before[-1], after[-1])  # the test would see a leak


def test_portfolio_data_rows_up_to_t_ignore_later_bars() -> None:
    bars = _bars()
    cut = pd.Timestamp("2022-09-15", tz="UTC")  # in the test span: the scaler does not see it
    rng = np.random.default_rng(5)
    changed = {}
    for asset, frame in bars.items():
        frame = frame.copy()
        after = frame.index > cut
        frame.loc[after, ["open", "high", "low", "close"]] *= rng.uniform(0.8, 1.2, (int(after.sum()), 1))
        frame.loc[after, "volume"] *= rng.uniform(0.5, 2.0, int(after.sum()))
        changed[asset] = frame
    a, b = _data(bars), _data(changed)
    upto = int(a.index.searchsorted(cut, side="right"))
    assert a.index.equals(b.index) and upto < len(a.index)
    for name in ("open", "close", "tradable", "features"):
        np.testing.assert_array_equal(getattr(a, name)[:upto], getattr(b, name)[:upto])
    assert not np.array_equal(a.features[upto:], b.features[upto:])
    assert a.scaler is not None and b.scaler is not None
    np.testing.assert_array_equal(a.scaler.mean_, b.scaler.mean_)


@pytest.mark.parametrize(
    ("options", "make_action"),
    [
        ({"rebalance_band": 0.02}, lambda rng, n: _scores(_random_weights(rng, n))),
        ({"long_short": True, "gross_cap": 0.8, "max_weight": 0.5}, lambda rng, n: rng.uniform(-1, 1, n + 1)),
    ],
    ids=["long-only-band", "long-short"],
)
def test_episode_equity_equals_backtest_run(data: PortfolioData, options: dict, make_action) -> None:
    env = PortfolioEnv(data, window=5, costs=COSTS, initial_capital=1000.0, random_start=False, **options)
    env.reset()
    rng = np.random.default_rng(2)
    costs_paid = 0.0
    for _ in range(150):
        _, _, terminated, truncated, info = env.step(make_action(rng, data.n_assets))
        costs_paid += info["costs"]
        if terminated or truncated:
            break
    assert costs_paid > 0 and len(env.episode_equity()) > 100
    ours, backtest = _backtest_equity(env, COSTS, capital=1000.0)
    assert np.max(np.abs(ours - backtest)) <= 1e-9 * 1000.0
    start = env.data.index.get_loc(env.episode_equity().index[0])
    assert not env.data.tradable[start : start + len(ours)].all()  # closed-market bars included


def test_same_seed_same_episode_other_seed_other_start(data: PortfolioData) -> None:
    def episode(seed: int) -> tuple[int, list[np.ndarray], list[float]]:
        env = PortfolioEnv(
            data, window=5, costs=COSTS, episode_length=20, penalty="drawdown", penalty_coef=0.5
        )
        obs, info = env.reset(seed=seed)
        env.action_space.seed(seed)
        seen, rewards = [obs], []
        for _ in range(20):
            obs, reward, *_ = env.step(env.action_space.sample())
            seen.append(obs)
            rewards.append(reward)
        return info["bar"], seen, rewards

    first, again, other = episode(7), episode(7), episode(8)
    assert first[0] == again[0] and first[2] == again[2]
    for x, y in zip(first[1], again[1], strict=True):
        np.testing.assert_array_equal(x, y)
    assert other[0] != first[0]


# --------------------------------------------------------------------------- trading rules


def test_rebalance_band_skips_small_changes(data: PortfolioData) -> None:
    env = PortfolioEnv(data, window=5, costs=COSTS, rebalance_band=0.05, random_start=False)
    env.reset()
    n = data.n_assets
    small = np.zeros(n + 1)
    small[0], small[-1] = 0.03, 0.97  # 3% of C1: inside the band from flat
    _, _, _, _, info = env.step(_scores(small))
    assert info["costs"] == 0.0 and info["turnover"] == 0.0
    big = np.zeros(n + 1)
    big[0], big[-1] = 0.5, 0.5
    _, _, _, _, info = env.step(_scores(big))
    assert info["turnover"] > 0.4 * info["equity"]
    near = big.copy()
    near[0], near[-1] = 0.52, 0.48  # 2 points from a weight of about 0.5: no trade
    _, _, _, _, info = env.step(_scores(near))
    assert info["costs"] == 0.0
    targets = env.episode_targets()
    assert list(targets["C1"].iloc[:3]) == [0.0, 0.5, 0.5]


def test_max_weight_caps_each_asset_and_the_rest_stays_in_cash(data: PortfolioData) -> None:
    env = PortfolioEnv(data, window=5, costs=COSTS, max_weight=0.3, random_start=False)
    env.reset()
    all_in_c1 = -np.ones(data.n_assets + 1)
    all_in_c1[0] = 1.0  # would be 100% of C1
    obs, *_ = env.step(all_in_c1)
    assert env.episode_targets().iloc[0].tolist() == [0.3, 0.0, 0.0]
    cash_weight = obs[-1]
    assert cash_weight == pytest.approx(0.7, abs=0.02)


def test_no_trade_in_an_asset_whose_market_is_closed(data: PortfolioData) -> None:
    stock = data.assets.index("EQ")
    closed = np.flatnonzero(~data.tradable[:, stock])
    env = PortfolioEnv(data, window=5, costs=COSTS)
    first, last = env.start_range
    start = int(next(t - 1 for t in closed if first <= t - 1 <= last))
    env.reset(options={"start": start})
    weights = np.full(data.n_assets + 1, 0.25)
    _, _, _, _, info = env.step(_scores(weights))  # fills at bar start + 1: the stock's market is closed
    targets = env.episode_targets()
    assert targets.iloc[0, stock] == 0.0 and (targets.iloc[0].drop("EQ") == 0.25).all()
    bar = start + 1
    while not data.tradable[bar + 1, stock]:
        _, _, _, _, info = env.step(_scores(weights))
        bar += 1
        assert info["costs"] == 0.0  # the same targets: nothing left to trade until the stock opens
    _, _, _, _, info = env.step(_scores(weights))  # fills when the stock's market opens again
    assert info["costs"] > 0 and env.episode_targets().iloc[-2, stock] == 0.25


def test_long_short_weights_within_the_gross_cap(data: PortfolioData) -> None:
    env = PortfolioEnv(data, window=5, costs=COSTS, long_short=True, gross_cap=0.6, max_weight=0.5)
    env.reset(options={"start": _all_open(data, env)})
    env.step(np.array([0.9, -0.5, 0.4, 1.0]))  # clipped to 0.5, -0.5, 0.4 (gross 1.4), scaled to 0.6
    row = env.episode_targets().iloc[0].to_numpy()
    np.testing.assert_allclose(row, np.array([0.5, -0.5, 0.4]) * 0.6 / 1.4, rtol=1e-12)
    assert np.abs(row).sum() == pytest.approx(0.6, rel=1e-12)
    obs, *_ = env.step(np.array([0.9, -0.5, 0.4, 1.0]))
    assert obs[-3] < 0  # a short position in C2 (its weight at the close)


def test_nan_action_and_wrong_shape_are_refused(data: PortfolioData) -> None:
    env = PortfolioEnv(data, window=5, costs=COSTS)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="window"):
        PortfolioEnv(data, window=10_000)


# --------------------------------------------------------------------------- vectorised form


def test_vectorised_episodes_equal_scalar_episodes(data: PortfolioData) -> None:
    options = {
        "window": 5,
        "costs": COSTS,
        "episode_length": 15,
        "rebalance_band": 0.01,
        "penalty": "volatility",
    }
    vec = PortfolioVecEnv(data, 3, penalty_coef=2.0, **options)
    vec.seed(21)
    scalars = [PortfolioEnv(data, penalty_coef=2.0, **options) for _ in range(3)]
    expected = np.stack([env.reset(seed=21 + i)[0] for i, env in enumerate(scalars)])
    np.testing.assert_array_equal(vec.reset(), expected)
    rng = np.random.default_rng(4)
    finished = 0
    for _ in range(40):  # past the end of the first episodes: auto-reset included
        actions = rng.uniform(-1, 1, (3, data.n_assets + 1)).astype(np.float32)
        obs, rewards, dones, infos = vec.step(actions)
        for i, env in enumerate(scalars):
            o, r, terminated, truncated, info = env.step(actions[i])
            assert dones[i] == (terminated or truncated)
            assert rewards[i] == np.float32(r) and infos[i]["equity"] == info["equity"]
            if dones[i]:
                finished += 1
                np.testing.assert_array_equal(infos[i]["terminal_observation"], o)
                assert infos[i]["TimeLimit.truncated"] == truncated
                o, _ = env.reset()
            np.testing.assert_array_equal(obs[i], o)
    assert finished >= 6


# --------------------------------------------------------------------------- building the data


def test_hourly_bars_on_two_calendars() -> None:
    coin = SyntheticMarket(seed=1, symbols=("BTC",), calendar="24/7", origin="2024-01-01")
    fx = SyntheticMarket(seed=2, symbols=("EURUSD",), calendar="24/5", origin="2024-01-01")
    bars = {**simulate(coin, "1h", end="2024-02-15"), **simulate(fx, "1h", end="2024-02-15")}
    data = portfolio_data(bars, get_feature_set("minimal"), train_end="2024-02-05", timeframe="1h")
    assert data.timeframe == "1h" and data.validation == slice(data.train.stop, data.train.stop)
    weekend = data.index.day_of_week == 5  # Saturdays: crypto trades, FX is closed
    assert data.tradable[weekend, 0].all() and not data.tradable[weekend, 1].any()
    # a closed row carries the last close as its open and close
    row = int(np.flatnonzero(weekend)[0])
    assert data.open[row, 1] == data.close[row, 1] == data.close[row - 1, 1]
    assert data.scaler is not None and data.scaler.n_samples_seen == int(
        data.tradable[: data.train.stop].sum()
    )
    env = PortfolioEnv(data, window=24, episode_length=48)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (24 * 2 * data.n_features + 3,)


def test_too_short_a_history_is_refused_with_its_reason() -> None:
    bars = _bars()
    short = {**bars, "C2": bars["C2"].iloc[:100]}
    with pytest.raises(ValueError, match="min_history"):
        _data(short)
    with pytest.raises(ValueError, match="validation_end"):
        portfolio_data(bars, get_feature_set("minimal"), train_end="2022-06-01", validation_end="2022-01-01")
