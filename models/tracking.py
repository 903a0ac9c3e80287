"""MLflow records of a forecaster training run: config, tags, metrics, artifacts, model, registry.

One experiment per model family (``fks-forecaster``). A run logs its flattened config, the git
commit, the data window and symbols, the feature-set version, walk-forward and test metrics of
the LSTM and every baseline, the uplift over the best baseline, learning curves, predictions
against actuals, the SHAP summary and a model card; then the model as a pyfunc that carries its
preprocessing, registered as ``fks-forecaster`` with the alias ``challenger``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from features import FeatureSet
from models.training import LSTM, ForecasterResult

EXPERIMENT = "fks-forecaster"
REGISTERED_MODEL = "fks-forecaster"


@dataclass(frozen=True)
class TrainingRecord:
    """Where a training run landed in MLflow."""

    run_id: str
    experiment_id: str
    model_uri: str
    registered_name: str
    version: str


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"a.b.c": "value"}`` strings, the way MLflow params want it."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(value) if isinstance(value, list | tuple) else str(value)}


def git_commit(root: Path | None = None) -> str:
    """The checked-out commit (``+dirty`` when the tree has changes), or ``unknown`` outside git."""
    cwd = root or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def ensure_experiment(tracking_uri: str, artifact_root: Path, name: str = EXPERIMENT) -> str:
    """Point MLflow at ``tracking_uri`` and return the experiment id of ``name`` (created if needed)."""
    import mlflow

    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = None
    if "://" not in tracking_uri or tracking_uri.startswith("sqlite:"):
        location = (artifact_root.resolve() / name).as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(metrics.values())))
    lines = ["| model | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for model, values in metrics.items():
        lines.append(f"| {model} | " + " | ".join(f"{values[n]:.5g}" for n in names) + " |")
    return "\n".join(lines)


def model_card(result: ForecasterResult, feature_set: FeatureSet, commit: str) -> str:
    """A markdown model card: intended use, data, metrics against baselines, limits."""
    c = result.config
    wf = {
        m: {k.removesuffix("_mean"): v for k, v in s.items() if k.endswith("_mean")}
        for m, s in result.walk_forward.items()
    }
    windows = "\n".join(
        f"- {name}: {lo:%Y-%m-%d %H:%M} .. {hi:%Y-%m-%d %H:%M}" for name, (lo, hi) in result.windows.items()
    )
    return f"""# fks-forecaster: LSTM, {c.symbol} {c.timeframe}, horizon {c.horizon}

## Intended use
Research forecasts of the forward log return of {c.symbol} over {c.horizon} {c.timeframe} bar(s) and the
probability that it is positive, from the last {c.lookback} bars of the `{feature_set.name}` feature set
(version `{feature_set.version}`). Input: raw OHLCV bars (`ts, open, high, low, close, volume`, optional
`symbol`); the model computes its own features and scaling. Not investment advice; not for sizing
positions without the backtest and risk checks.

## Data
{windows}

Chronological splits with a purge of {c.purge} samples between them; the scaler was fitted on
training rows only; the test block was evaluated once. Git commit `{commit}`.

## Walk-forward out-of-sample metrics (mean over {len(result.fold_metrics)} folds, inside train + validation)
{_metrics_table(wf)}

## Test metrics (one evaluation)
{_metrics_table(result.test_metrics)}

Uplift of the LSTM over the best baseline on test: `{json.dumps(result.uplift, default=str)}`

## Limits
Daily equity returns are close to unpredictable: expect an information coefficient near zero and
check the uplift over the baselines before trusting a forecast. Trained on one series; regime
changes after the data window are not covered. Costs are not part of these metrics (see the backtest).
"""


def predictions_figure(predictions: pd.DataFrame) -> Any:
    """Forecast against actual forward return on the test block (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    axes[0].plot(predictions.index, predictions["actual"], lw=0.6, label="actual")
    axes[0].plot(predictions.index, predictions[LSTM], lw=0.8, label="LSTM forecast")
    axes[0].legend(loc="upper left")
    axes[0].set_ylabel("forward log return")
    axes[1].plot(
        predictions.index,
        np.cumsum(np.sign(predictions[LSTM]) * predictions["actual"]),
        label="sign(forecast) x actual",
    )
    axes[1].plot(predictions.index, np.cumsum(predictions["actual"]), label="buy and hold")
    axes[1].legend(loc="upper left")
    axes[1].set_ylabel("cumulative log return (no costs)")
    fig.tight_layout()
    return fig


def input_example(bars: pd.DataFrame, rows: int) -> pd.DataFrame:
    """The last ``rows`` raw bars as the pyfunc's input: ``ts`` as ISO strings, OHLCV floats."""
    tail = bars.iloc[-rows:].reset_index()
    tail["ts"] = tail["ts"].map(lambda t: t.isoformat())
    return tail[["ts", "open", "high", "low", "close", "volume"]]


def log_training(
    result: ForecasterResult,
    *,
    bars: pd.DataFrame,
    feature_set: FeatureSet,
    tracking_uri: str,
    artifact_root: Path,
    tuning: dict[str, Any] | None = None,
) -> TrainingRecord:
    """Log ``result`` as one MLflow run, register the model and give it the alias ``challenger``."""
    import mlflow

    from models.explain import explain_global, summary_figure
    from models.forecaster import learning_curve_figure, save_model
    from models.pyfunc import build_preprocess, log_forecaster
    from models.registry import register, set_alias

    experiment_id = ensure_experiment(tracking_uri, artifact_root)
    config = result.config
    commit = git_commit()
    window = f"{result.windows['train'][0]:%Y-%m-%d}..{result.windows['test'][1]:%Y-%m-%d}"
    tags = {
        "git_commit": commit,
        "symbols": config.symbol,
        "timeframe": config.timeframe,
        "data_window": window,
        "feature_set": feature_set.name,
        "feature_set_version": feature_set.version,
        "model_family": "lstm",
    }
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"lstm-{config.symbol}-{config.timeframe}"
    ) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(flatten(config))
        for name, (lo, hi) in result.windows.items():
            mlflow.log_params({f"data.{name}_start": lo.isoformat(), f"data.{name}_end": hi.isoformat()})
        min_history = feature_set.min_history
        mlflow.log_params({"min_history": min_history, "min_bars": min_history + config.lookback - 1})
        if tuning:
            mlflow.log_params({f"tuning.best.{k}": v for k, v in tuning.items()})
        for model, summary in result.walk_forward.items():
            mlflow.log_metrics({f"wf_{model}_{k}": v for k, v in summary.items() if np.isfinite(v)})
        for model, values in result.test_metrics.items():
            mlflow.log_metrics({f"test_{model}_{k}": v for k, v in values.items() if np.isfinite(v)})
        mlflow.log_metrics(
            {
                f"uplift_{k}": float(v)
                for k, v in result.uplift.items()
                if isinstance(v, int | float) and np.isfinite(v)
            }
        )
        history = result.final.fit.history
        for epoch in range(len(history.get("loss", []))):
            mlflow.log_metrics({f"epoch_{k}": float(v[epoch]) for k, v in history.items()}, step=epoch)
        mlflow.log_figure(learning_curve_figure(history), "plots/learning_curve.png")
        mlflow.log_figure(predictions_figure(result.final.predictions), "plots/predictions_vs_actual.png")
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            result.final.predictions.to_csv(tmp_path / "test_predictions.csv")
            mlflow.log_artifact(str(tmp_path / "test_predictions.csv"), "predictions")
            (tmp_path / "config.json").write_text(config.model_dump_json(indent=2))
            mlflow.log_artifact(str(tmp_path / "config.json"))
            if config.explain.enabled:
                _log_shap(result, tmp_path, explain_global, summary_figure)
            (tmp_path / "model_card.md").write_text(model_card(result, feature_set, commit))
            mlflow.log_artifact(str(tmp_path / "model_card.md"))
            keras_path = tmp_path / "forecaster.keras"
            save_model(result.final.fit.model, keras_path)
            preprocess = build_preprocess(
                feature_set,
                result.final.scaler,
                lookback=config.lookback,
                horizon=config.horizon,
                timeframe=config.timeframe,
            )
            info = log_forecaster(
                keras_model_path=keras_path,
                preprocess=preprocess,
                input_example=input_example(bars, feature_set.min_history + config.lookback - 1),
            )
        version = register(
            info.model_uri,
            REGISTERED_MODEL,
            tags={
                **tags,
                "run_id": run.info.run_id,
                "config": config.model_dump_json(),
                **{f"test_{k}": f"{v:.6g}" for k, v in result.test_metrics[LSTM].items()},
                **{
                    f"test_{model}_{k}": f"{v:.6g}"
                    for model, values in result.test_metrics.items()
                    if model != LSTM
                    for k, v in values.items()
                },
                **{f"uplift_{k}": str(v) for k, v in result.uplift.items() if k.startswith("rmse_")},
            },
            description=(
                f"LSTM forecast of {config.symbol} {config.timeframe} log return over {config.horizon} bar(s)"
            ),
        )
        set_alias(REGISTERED_MODEL, "challenger", version)
    return TrainingRecord(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=info.model_uri,
        registered_name=REGISTERED_MODEL,
        version=version,
    )


def _log_shap(result: ForecasterResult, folder: Path, explain_global: Any, summary_figure: Any) -> None:
    import mlflow

    from models.training import _windows

    config = result.config
    split = result.split
    background, _ = _windows(result.dataset, result.final.scaler, split.train)
    samples, _ = _windows(result.dataset, result.final.scaler, split.test)
    rng = np.random.default_rng(config.seed)
    bg = background[
        np.sort(rng.choice(len(background), min(config.explain.background, len(background)), replace=False))
    ]
    sm = samples[-min(config.explain.samples, len(samples)) :]
    explanation = explain_global(result.final.fit.model, bg, sm, result.dataset.feature_names)
    mlflow.log_figure(summary_figure(explanation), "plots/shap_summary.png")
    explanation.mean_abs.rename("mean_abs_shap").to_csv(folder / "shap_mean_abs.csv")
    mlflow.log_artifact(str(folder / "shap_mean_abs.csv"), "explain")
