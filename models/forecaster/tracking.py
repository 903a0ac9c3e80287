"""MLflow records of a forecaster training run: config, tags, metrics, artifacts, model, registry.

The run goes to the experiment ``ForecasterConfig.experiment`` (``fks-forecaster``). It logs its
flattened config, the git commit, the data window and symbols, the feature-set version,
walk-forward and test metrics of the LSTM and every baseline, the uplift over the best baseline,
learning curves, predictions against actuals (:data:`PREDICTIONS_ARTIFACT`, which the backtest
and the promotion gate read back with :func:`baseline_predictions`), the raw training feature
rows (:data:`models.reference.REFERENCE_ARTIFACT`, the drift reference: :func:`train_features`),
the SHAP summary and a model card; then the model as a pyfunc that carries its preprocessing, registered as
``ForecasterConfig.registered_name`` (``fks-forecaster``) with the alias ``challenger``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from config.models import ForecasterConfig
from features import FeatureSet
from models.forecaster.training import LSTM, Dataset, ForecasterResult
from models.splits import Split
from models.tracking import TrainingRecord, ensure_experiment, flatten, git_commit

__all__ = [
    "PREDICTIONS_ARTIFACT",
    "baseline_predictions",
    "input_example",
    "log_training",
    "model_card",
    "predictions_figure",
    "train_features",
]

PREDICTIONS_ARTIFACT = "predictions/test_predictions.csv"
"""Where a training run logs the test forecasts of the model and its baselines."""

PREDICTION_COLUMNS: tuple[str, ...] = ("actual", LSTM, "prob_up")
"""Columns of :data:`PREDICTIONS_ARTIFACT` that are not baselines."""


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
    return f"""# {ForecasterConfig.registered_name}: LSTM, {c.symbol} {c.timeframe}, horizon {c.horizon}

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


def train_features(dataset: Dataset, split: Split) -> pd.DataFrame:
    """The raw (unscaled) feature rows the final scaler was fitted on: the rows read by the windows
    of the training samples (``split.train``), no validation or test row. The drift reference
    (:data:`models.reference.REFERENCE_ARTIFACT`)."""
    rows = dataset.window_rows(split.train)
    return pd.DataFrame(
        dataset.rows[rows], index=pd.DatetimeIndex(dataset.ts[rows], name="ts"), columns=dataset.feature_names
    )


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
    from models.forecaster.network import learning_curve_figure, save_model
    from models.forecaster.pyfunc import build_preprocess, log_forecaster
    from models.reference import log_reference
    from models.registry import register, set_alias

    registered = ForecasterConfig.registered_name
    experiment_id = ensure_experiment(tracking_uri, artifact_root, ForecasterConfig.experiment)
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
            log_reference(train_features(result.dataset, result.split))  # the drift reference
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
            registered,
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
        set_alias(registered, "challenger", version)
    return TrainingRecord(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=info.model_uri,
        registered_name=registered,
        version=version,
    )


def _log_shap(result: ForecasterResult, folder: Path, explain_global: Any, summary_figure: Any) -> None:
    import mlflow

    from models.forecaster.training import _windows

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


def baseline_predictions(run_id: str, *, strict: bool = False) -> pd.DataFrame | None:
    """The test forecasts logged by the training run (:data:`PREDICTIONS_ARTIFACT`).

    Args:
        run_id: the model version's training run.
        strict: raise instead of returning None when they are missing or unreadable (the
            promotion gate needs every configured baseline; the tearsheet does with what exists).

    Returns:
        One column per baseline (and ``actual``, ``lstm``, ``prob_up``), indexed by UTC ``ts``;
        None when the artifact is missing or unreadable and not ``strict``.

    Raises:
        LookupError: with ``strict``, the artifact is missing or unreadable; the message names the
            run and says how to fix it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    fix = (
        "retrain the model with `fks train forecaster`, which logs it, or leave the forecaster "
        "baselines out of the promotion config's baselines"
    )
    try:
        path = mlflow.MlflowClient().download_artifacts(run_id, PREDICTIONS_ARTIFACT)
    except (MlflowException, OSError):
        if strict:
            raise LookupError(f"training run {run_id} logged no {PREDICTIONS_ARTIFACT}; {fix}") from None
        return None
    try:
        frame = pd.read_csv(path, index_col=0)
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True), name="ts")
    except (ValueError, OSError) as exc:  # pandas' parser and empty-data errors are ValueErrors
        if strict:
            detail = " ".join(str(exc).split())[:200]
            raise LookupError(
                f"training run {run_id} has an unreadable {PREDICTIONS_ARTIFACT} ({detail}); {fix}"
            ) from None
        return None
    return frame
