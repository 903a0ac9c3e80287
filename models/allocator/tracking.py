"""MLflow records of an allocator training run: config, seeds, curves, test figures, plots, model, registry.

The run goes to the experiment ``AllocatorConfig.experiment`` (``fks-allocator``). It logs the
flattened config, the git commit, the universe, the data windows and the data source (tag
``data_source``, e.g. ``synthetic``), the seeds and the one kept (best on validation), per
iteration the training reward (``train_reward``: mean reward of the training episodes finished in
each rollout) and the validation reward (``val_reward``: the deterministic validation episode's
total reward), with their step, for the kept seed (``train_reward_seed<s>`` and
``val_reward_seed<s>`` for every seed), the test figures of the agent beside every baseline
(``test_<strategy>_<metric>``, net of the same costs; :class:`models.allocator.report.AllocationReport`),
the uplift over the best baseline, plots (weights over time, equity against the baselines,
turnover, the learning curves), the agent's test decisions and equity
(:data:`DECISIONS_ARTIFACT`, :data:`EQUITY_ARTIFACT`), the raw training feature rows (the drift
reference, :data:`models.reference.REFERENCE_ARTIFACT`), a model card; then the policy as a pyfunc
that carries its preprocessing (:mod:`models.allocator.pyfunc`), registered as
``AllocatorConfig.registered_name`` (``fks-allocator``) with the alias ``challenger``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from config.models import AllocatorConfig
from models.allocator.report import AllocationReport
from models.allocator.training import AGENT, CASH, AllocatorResult
from models.tracking import TrainingRecord, ensure_experiment, flatten, git_commit

if TYPE_CHECKING:
    from collections.abc import Mapping

    from matplotlib.figure import Figure

__all__ = [
    "DECISIONS_ARTIFACT",
    "EQUITY_ARTIFACT",
    "equity_figure",
    "input_example",
    "learning_curve_figure",
    "log_training",
    "model_card",
    "turnover_figure",
    "weights_figure",
]

DECISIONS_ARTIFACT = "predictions/test_decisions.csv"
"""The agent's weights decided at each test bar (assets, then ``CASH``), as its pyfunc answers."""
EQUITY_ARTIFACT = "predictions/test_equity.csv"
"""Each strategy's equity over the test span (capital 1), net of costs."""
_WINDOW_NAMES = {"train": "train", "validation": "val", "test": "test"}


def _figure(width: float = 9.0, height: float = 4.5) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def weights_figure(weights: pd.DataFrame) -> Figure:
    """The agent's held weights over the test span, stacked (assets, then cash)."""
    frame = weights.copy()
    frame[CASH] = (1.0 - frame.sum(axis=1)).clip(lower=0.0)
    fig = _figure()
    ax = fig.add_subplot()
    ax.stackplot(frame.index, frame.to_numpy().T, labels=list(frame.columns))
    ax.set_ylim(0, max(1.0, float(frame.sum(axis=1).max())))
    ax.set_ylabel("weight (fraction of equity)")
    ax.set_title("Agent weights over the test span")
    ax.legend(loc="upper left", fontsize="small", ncols=min(len(frame.columns), 5))
    return fig


def equity_figure(equity: pd.DataFrame) -> Figure:
    """Every strategy's equity over the test span, net of costs (the agent drawn thicker)."""
    fig = _figure()
    ax = fig.add_subplot()
    for name in equity.columns:
        ax.plot(equity.index, equity[name], lw=2.0 if name == AGENT else 1.0, label=name)
    ax.set_ylabel("equity (capital 1)")
    ax.set_title("Equity on the test span, net of costs")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def turnover_figure(turnover: pd.DataFrame) -> Figure:
    """Cumulative traded weight of every strategy over the test span."""
    fig = _figure()
    ax = fig.add_subplot()
    for name in turnover.columns:
        ax.plot(turnover.index, turnover[name].cumsum(), lw=2.0 if name == AGENT else 1.0, label=name)
    ax.set_ylabel("cumulative traded weight")
    ax.set_title("Turnover on the test span")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def learning_curve_figure(result: AllocatorResult) -> Figure:
    """Training and validation rewards per step of every seed (the kept one drawn thicker)."""
    fig = _figure(9.0, 6.0)
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2, sharex=None)
    for i, run in enumerate(result.runs):
        lw = 2.0 if i == result.best else 1.0
        if run.train_rewards:
            steps, values = zip(*run.train_rewards, strict=True)
            top.plot(steps, values, lw=lw, label=f"seed {run.seed}")
        if run.val_rewards:
            steps, values = zip(*run.val_rewards, strict=True)
            bottom.plot(steps, values, lw=lw, marker="o", label=f"seed {run.seed}")
    top.set_ylabel("train episode reward")
    bottom.set_ylabel("validation reward")
    bottom.set_xlabel("timesteps")
    top.legend(loc="upper left", fontsize="small")
    return fig


def _table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    names = list(next(iter(metrics.values())))
    lines = ["| strategy | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for strategy, values in metrics.items():
        lines.append(
            f"| {strategy} | " + " | ".join(f"{values.get(n, float('nan')):.4g}" for n in names) + " |"
        )
    return "\n".join(lines)


def model_card(result: AllocatorResult, report: AllocationReport, commit: str, source: str) -> str:
    """A markdown model card: intended use, data, environment, metrics against baselines, limits."""
    c = result.config
    windows = "\n".join(
        f"- {name}: {lo:%Y-%m-%d %H:%M} .. {hi:%Y-%m-%d %H:%M}" for name, (lo, hi) in result.windows.items()
    )
    seeds = ", ".join(f"{r.seed}: {r.val_reward:.4f}" for r in result.runs)
    best = report.best_baseline("sharpe")
    name = AllocatorConfig.registered_name
    title = f"{name}: {c.algo.upper()} allocator, {len(c.symbols)} assets, {c.timeframe}"
    ppy = f"{report.periods_per_year:.0f}"
    return f"""# {title}

## Intended use
Research allocation of an account between {", ".join(c.symbols)} and cash, one decision per
{c.timeframe} bar at the close, filled at the next open. Input: raw OHLCV bars of every symbol
(`symbol, ts, open, high, low, close, volume`) and optionally the current `weight` of each; the
model builds its own features (`{result.feature_set.name}` version `{result.feature_set.version}`,
window {c.window}), scaling and observation statistics. Output: target weights per symbol and
`CASH`. Not investment advice; trade it only through the backtest, the promotion gate and the risk
checks.

## Data
Source: {source}. Spans (first decision bar .. last bar):
{windows}

Chronological train / validation / test; the first {c.purge} rows of validation and of test only
feed windows (purge). The feature scaler and the observation statistics (`VecNormalize`) were
fitted on training rows only; early stopping read the validation span only; the test span was
evaluated once. Git commit `{commit}`.

## Environment
Long {"and short" if c.long_short else "only"}, max weight {c.max_weight:g}, gross cap {c.gross_cap:g},
rebalancing band {c.rebalance_band:g}, costs {c.costs.commission_bps:g} bps commission +
{c.costs.slippage_bps:g} bps slippage + {c.costs.min_fee:g} per fill, penalty {c.penalty}
({c.penalty_coef:g}). Reward: the log return of the account net of costs.

## Training
{c.algo.upper()} for up to {c.timesteps} steps per seed on {c.n_envs} episodes of {c.episode_length} bars;
validation reward per seed: {seeds}; kept seed {result.agent.seed} (best at step {result.agent.best_step}).

## Test (one evaluation, net of the same costs; Sharpe annualised on {ppy} bars a year)
{_table(report.metrics)}

Best baseline on Sharpe: `{best}`.

## Limits
An RL agent trained on a few years of bars learns the regime it saw; small budgets learn little
beyond a persistent drift. Compare it with the baselines above before trusting it, and promote it
only through the gate (`fks promote --model {AllocatorConfig.registered_name}`).
"""


def input_example(
    bars: Mapping[str, pd.DataFrame], symbols: tuple[str, ...], rows: int, weights: pd.Series
) -> pd.DataFrame:
    """The last ``rows`` raw bars of every symbol with its current ``weight`` (the pyfunc's input)."""
    pieces = []
    for symbol in symbols:
        tail = bars[symbol].iloc[-rows:].reset_index()
        tail["ts"] = tail["ts"].map(lambda t: t.isoformat())
        tail.insert(0, "symbol", symbol)
        tail["weight"] = float(weights.get(symbol, 0.0))
        pieces.append(tail[["symbol", "ts", "open", "high", "low", "close", "volume", "weight"]])
    return pd.concat(pieces, ignore_index=True)


def _log_curves(result: AllocatorResult) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    run_id = mlflow.active_run().info.run_id  # type: ignore[union-attr]
    for i, run in enumerate(result.runs):
        names = [(f"train_reward_seed{run.seed}", f"val_reward_seed{run.seed}")]
        if i == result.best:
            names.append(("train_reward", "val_reward"))
        for train_name, val_name in names:
            for step, value in run.train_rewards:
                if np.isfinite(value):
                    client.log_metric(run_id, train_name, value, step=step)
            for step, value in run.val_rewards:
                if np.isfinite(value):
                    client.log_metric(run_id, val_name, value, step=step)


def log_training(
    result: AllocatorResult,
    report: AllocationReport,
    *,
    bars: Mapping[str, pd.DataFrame],
    tracking_uri: str,
    artifact_root: Path,
    source: str = "stored bars",
    tuning: Mapping[str, Any] | None = None,
) -> TrainingRecord:
    """Log ``result`` and its test ``report`` as one MLflow run, register the policy as a new
    version of ``fks-allocator`` and give it the alias ``challenger``.

    Args:
        result: the trained allocator.
        report: its test backtests beside the baselines (:func:`backtest.allocation.evaluate_allocation`).
        bars: the universe's raw bars (the pyfunc's input example is their last ``min_bars``).
        tracking_uri, artifact_root: the MLflow store.
        source: where the bars came from, as a person reads it (``synthetic``, ``stored bars``);
            tag ``data_source``.
        tuning: the tuning summary, logged as ``tuning.best.*`` params.

    Returns:
        Where the run and the registered version landed.
    """
    import mlflow

    from models.allocator.pyfunc import build_spec, log_allocator
    from models.reference import log_reference
    from models.registry import register, set_alias

    config = result.config
    registered = AllocatorConfig.registered_name
    experiment_id = ensure_experiment(tracking_uri, artifact_root, AllocatorConfig.experiment)
    commit = git_commit()
    window = f"{result.windows['train'][0]:%Y-%m-%d}..{result.windows['test'][1]:%Y-%m-%d}"
    tags = {
        "git_commit": commit,
        "symbols": ",".join(config.symbols),
        "timeframe": config.timeframe,
        "data_window": window,
        "data_source": source,
        "feature_set": result.feature_set.name,
        "feature_set_version": result.feature_set.version,
        "model_family": config.algo,
    }
    agent = result.agent
    metrics = report.metrics
    best = report.best_baseline("sharpe")
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{config.algo}-{len(config.symbols)}assets-{config.timeframe}"
    ) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(flatten(config))
        for name, (lo, hi) in result.windows.items():
            key = _WINDOW_NAMES[name]
            mlflow.log_params({f"data.{key}_start": lo.isoformat(), f"data.{key}_end": hi.isoformat()})
        mlflow.log_params(
            {
                "symbol": config.symbol,  # the universe as one label: what the registry's ModelRef reads
                "min_history": result.feature_set.min_history,
                "min_bars": result.min_bars,
                "seed_kept": agent.seed,
                "timesteps_trained": agent.timesteps,
                "stopped_early": agent.stopped_early,
            }
        )
        if tuning:
            mlflow.log_params({f"tuning.best.{k}": v for k, v in tuning.items()})
        mlflow.log_metrics({f"best_val_reward_seed{r.seed}": r.val_reward for r in result.runs})
        mlflow.log_metrics({"best_val_reward": agent.val_reward, "val_reward_seed_spread": _spread(result)})
        _log_curves(result)
        mlflow.log_metrics(
            {
                f"test_{strategy}_{key}": value
                for strategy, values in metrics.items()
                for key, value in values.items()
                if np.isfinite(value)
            }
        )
        uplift = {
            "uplift_sharpe_vs_best_baseline": metrics[AGENT]["sharpe"] - metrics[best]["sharpe"],
            "uplift_total_return_vs_equal_weight": metrics[AGENT]["total_return"]
            - metrics["equal_weight"]["total_return"],
        }
        mlflow.log_metrics({k: v for k, v in uplift.items() if np.isfinite(v)})
        mlflow.set_tag("best_baseline", best)
        mlflow.log_figure(weights_figure(report.weights), "plots/weights.png")
        mlflow.log_figure(equity_figure(report.equity), "plots/equity_vs_baselines.png")
        mlflow.log_figure(turnover_figure(report.turnover), "plots/turnover.png")
        mlflow.log_figure(learning_curve_figure(result), "plots/learning_curve.png")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            result.test.decisions.to_csv(folder / "test_decisions.csv")
            report.equity.to_csv(folder / "test_equity.csv")
            mlflow.log_artifact(str(folder / "test_decisions.csv"), "predictions")
            mlflow.log_artifact(str(folder / "test_equity.csv"), "predictions")
            (folder / "config.json").write_text(config.model_dump_json(indent=2))
            mlflow.log_artifact(str(folder / "config.json"))
            (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
            mlflow.log_artifact(str(folder / "metrics.json"))
            if result.reference is not None and not result.reference.empty:
                log_reference(result.reference)
            (folder / "model_card.md").write_text(model_card(result, report, commit, source))
            mlflow.log_artifact(str(folder / "model_card.md"))
            policy_path, vecnorm_path = folder / "policy.zip", folder / "vecnorm.pkl"
            agent.model.save(str(policy_path))
            agent.vecnorm.save(str(vecnorm_path))
            scaler = result.data.scaler
            spec = build_spec(
                result.feature_set,
                scaler,
                algo=config.algo,
                window=config.window,
                timeframe=config.timeframe,
                universe=config.symbols,
                long_short=config.long_short,
                max_weight=config.max_weight,
                gross_cap=config.gross_cap,
                rebalance_band=config.rebalance_band,
                costs=config.costs.model_dump(),
            )
            last_held = result.test.held.iloc[-1]
            info = log_allocator(
                policy_path=policy_path,
                vecnorm_path=vecnorm_path,
                spec=spec,
                input_example=input_example(bars, config.symbols, result.min_bars, last_held),
            )
        version = register(
            info.model_uri,
            registered,
            tags={
                **tags,
                "run_id": run.info.run_id,
                "config": config.model_dump_json(),
                **{f"test_{k}": f"{v:.6g}" for k, v in metrics[AGENT].items()},
                **{
                    f"test_{strategy}_{k}": f"{v:.6g}"
                    for strategy, values in metrics.items()
                    if strategy != AGENT
                    for k, v in values.items()
                },
                "best_baseline": best,
            },
            description=(
                f"{config.algo.upper()} allocator over {', '.join(config.symbols)} and cash, "
                f"{config.timeframe} bars ({source})"
            ),
        )
        set_alias(registered, "challenger", version)
    return TrainingRecord(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=info.model_uri,
        registered_name=registered,
        version=version,
    )


def _spread(result: AllocatorResult) -> float:
    values = [r.val_reward for r in result.runs]
    return float(np.max(values) - np.min(values)) if values else float("nan")
