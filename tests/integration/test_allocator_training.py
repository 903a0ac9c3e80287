"""Training the allocator (tiny budgets): purged spans, frozen statistics, the best validation policy
kept, seeding, and the test episode's equity equal to backtest.run of its targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from backtest.allocation import evaluate_allocation
from config.models import AllocatorConfig
from features import get_feature_set
from models.allocator.training import AllocatorResult, allocator_data, first_bar, run_policy, train_allocator
from providers.synthetic import SyntheticMarket, simulate

SYMBOLS = ("S0", "S1", "S2", "S3", "S4")
TINY = {
    "symbols": SYMBOLS,
    "timesteps": 1536,
    "n_envs": 4,
    "n_steps": 64,
    "batch_size": 64,
    "n_epochs": 2,
    "eval_every": 256,
    "patience": 2,
    "episode_length": 32,
    "window": 3,
    "seeds": (3, 4),
    "rebalance_band": 0.01,
    "costs": {"commission_bps": 5.0, "slippage_bps": 5.0, "min_fee": 1e-5},
}


def _bars() -> dict[str, pd.DataFrame]:
    market = SyntheticMarket(seed=5, symbols=SYMBOLS, calendar="24/7", origin="2017-01-01")
    return simulate(market, "1d", end="2020-06-01")


@pytest.fixture(scope="module")
def trained() -> AllocatorResult:
    torch.set_num_threads(1)
    return train_allocator(_bars(), get_feature_set("minimal"), AllocatorConfig(**TINY))


def test_spans_are_chronological_with_a_purge(trained: AllocatorResult) -> None:
    data, config = trained.data, trained.config
    assert data.train.stop == data.validation.start and data.validation.stop == data.test.start
    for span in ("validation", "test"):
        first = first_bar(data, span, config)
        assert first == data.span(span).start + config.purge  # the purge: window rows of the span only
        assert first - config.window + 1 > data.span(span).start  # the first window holds no earlier row
    assert trained.validation.equity.index[0] == data.index[data.validation.start + config.purge]
    assert trained.test.equity.index[0] == data.index[data.test.start + config.purge]
    assert trained.test.equity.index[-1] == data.index[-1]
    assert trained.windows["test"] == (data.index[data.test.start + config.purge], data.index[-1])
    # the scaler saw training rows only: scaled training features are centred, later ones need not be
    train = data.features[data.train][data.tradable[data.train]]
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=0.05)


def test_test_equity_is_the_backtest_of_its_targets(trained: AllocatorResult) -> None:
    report = evaluate_allocation(trained)
    np.testing.assert_allclose(report.equity["agent"].to_numpy(), trained.test.equity.to_numpy(), rtol=1e-12)
    assert list(report.metrics) == ["agent", "equal_weight", "buy_and_hold", "min_variance", "max_sharpe"]
    assert report.equity.index.equals(trained.test.equity.index)
    for figures in report.metrics.values():
        assert {"total_return", "sharpe", "max_drawdown", "turnover", "costs_paid"} <= set(figures)
    assert report.metrics["agent"]["costs_paid"] == pytest.approx(trained.test.costs, rel=1e-9)
    assert report.periods_per_year == pytest.approx(365.25, rel=1e-3)  # a 24/7 daily universe


def test_the_kept_policy_is_the_best_validation_one_with_frozen_statistics(trained: AllocatorResult) -> None:
    agent = trained.agent
    assert agent.val_reward == max(r.val_reward for r in trained.runs)
    assert agent.val_reward == max(v for _, v in agent.val_rewards)
    assert trained.validation.reward == pytest.approx(agent.val_reward, abs=1e-12)  # restored exactly
    assert agent.vecnorm.training is False and agent.vecnorm.norm_reward is False
    mean = agent.vecnorm.obs_rms.mean.copy()
    again = run_policy(agent.model, agent.vecnorm, trained.data, "test", trained.config)
    pd.testing.assert_frame_equal(again.decisions, trained.test.decisions)
    np.testing.assert_array_equal(agent.vecnorm.obs_rms.mean, mean)  # evaluation never updates them
    assert all(s > 0 for s, _ in agent.train_rewards) and agent.timesteps <= 1536


def test_decisions_are_weights_and_held_weights_start_in_cash(trained: AllocatorResult) -> None:
    decisions, held = trained.test.decisions, trained.test.held
    assert list(decisions.columns) == [*SYMBOLS, "CASH"]
    np.testing.assert_allclose(decisions.sum(axis=1), 1.0, atol=1e-9)
    assert (decisions >= -1e-12).all().all()
    assert held.iloc[0].to_dict() == {**dict.fromkeys(SYMBOLS, 0.0), "CASH": 1.0}


def test_same_seed_same_agent() -> None:
    torch.set_num_threads(1)
    config = AllocatorConfig(**{**TINY, "seeds": (3,), "timesteps": 512})
    first = train_allocator(_bars(), get_feature_set("minimal"), config)
    second = train_allocator(_bars(), get_feature_set("minimal"), config)
    pd.testing.assert_frame_equal(first.test.decisions, second.test.decisions)
    assert first.agent.val_rewards == second.agent.val_rewards


def test_too_short_spans_are_refused_with_the_reason() -> None:
    bars = _bars()
    with pytest.raises(ValueError, match=r"the validation span has \d+ rows: after the purge of 200"):
        allocator_data(bars, get_feature_set("minimal"), AllocatorConfig(**{**TINY, "purge_bars": 200}))
    with pytest.raises(ValueError, match="no bars for S9"):
        allocator_data(bars, get_feature_set("minimal"), AllocatorConfig(**{**TINY, "symbols": ("S0", "S9")}))


def test_tuning_scores_validation_only_and_stores_its_study_in_the_fks_database(settings) -> None:
    import mlflow
    from sqlalchemy import create_engine, inspect

    from models.allocator.tuning import tune_logged

    torch.set_num_threads(1)
    config = AllocatorConfig(**{**TINY, "seeds": (3,), "tuning": {"trials": 2, "timesteps": 256}})
    tuned = tune_logged(_bars(), get_feature_set("minimal"), config, settings)
    assert tuned.trials == 2 and set(tuned.best_params) == {
        "learning_rate",
        "gamma",
        "ent_coef",
        "n_steps",
        "window",
    }
    assert tuned.best_config.window == tuned.best_params["window"] and tuned.best_config.timesteps == 1536
    assert {"studies", "trials"} <= set(inspect(create_engine(settings.db_url)).get_table_names())
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("fks-allocator").experiment_id])
    parent = next(r for r in runs if r.info.run_name.startswith("tuning-allocator"))
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all("val_reward" in r.data.metrics for r in children)
    assert parent.data.metrics["best_val_reward"] == pytest.approx(tuned.best_value)
    again = tune_logged(_bars(), get_feature_set("minimal"), config, settings)  # the study resumes
    assert again.study_name == tuned.study_name and again.trials == 4


def test_sac_trains_with_the_same_recipe() -> None:
    torch.set_num_threads(1)
    config = AllocatorConfig(**{**TINY, "algo": "sac", "seeds": (3,), "timesteps": 384, "batch_size": 32})
    result = train_allocator(_bars(), get_feature_set("minimal"), config)
    assert type(result.agent.model).__name__ == "SAC" and result.agent.val_rewards
    report = evaluate_allocation(result)
    np.testing.assert_allclose(report.equity["agent"].to_numpy(), result.test.equity.to_numpy(), rtol=1e-12)


def test_split_dates_from_the_config() -> None:
    config = AllocatorConfig(**{**TINY, "train_end": "2019-06-01", "validation_end": "2019-10-01"})
    data = allocator_data(_bars(), get_feature_set("minimal"), config)
    assert data.index[data.validation.start] == pd.Timestamp("2019-06-01", tz="UTC")
    assert data.index[data.test.start] == pd.Timestamp("2019-10-01", tz="UTC")
