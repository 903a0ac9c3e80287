"""Honest training of the LSTM forecaster: leak-free splits, walk-forward folds, baselines, one test.

The recipe (:func:`train_forecaster`):

1. Features of the configured set and forward log-return labels over ``horizon``, aligned so the
   row at bar t holds only information up to t (the first ``min_history - 1`` rows, whose
   features still depend on where the series starts, and rows without a full label are dropped,
   never filled). A sample is the window of ``lookback`` rows ending at t.
2. Chronological train / validation / test with ``purge = lookback + horizon`` samples dropped
   between them, so no window or label straddles two splits.
3. Walk-forward folds over train + validation (never test): in each fold a scaler is fitted on
   the fold's training rows only, the LSTM trains with early stopping on an inner validation
   block carved from the end of the fold's training span (after a purge), and the LSTM and the
   baselines are scored on the fold's validation block. These are the reported out-of-sample
   figures, with their mean and spread.
4. The final model: scaler on train rows, LSTM on train with early stopping on validation, then
   ONE evaluation on test, beside the baselines fitted on the same train rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from config.models import ForecasterConfig
from features import FeatureSet, align_features_labels, build_features, make_labels, make_windows
from models.baselines import default_baselines
from models.forecaster.network import EpochCallback, FitResult, fit_lstm, predict_lstm
from models.metrics import regression_metrics, summarize_folds, uplift
from models.preprocessing import FeatureScaler
from models.splits import Split, chronological_split, walk_forward_folds

LSTM = "lstm"


@dataclass(frozen=True)
class Dataset:
    """Aligned feature rows and targets of one series.

    Sample ``i`` is the window of rows ``i .. i + lookback - 1``, labelled by its last row's target.
    """

    rows: np.ndarray
    targets: np.ndarray
    ts: pd.DatetimeIndex
    feature_names: list[str]
    lookback: int

    @property
    def n_samples(self) -> int:
        """Number of complete windows."""
        return max(len(self.rows) - self.lookback + 1, 0)

    def sample_ts(self, samples: slice) -> pd.DatetimeIndex:
        """Timestamps of the last rows of the windows in ``samples`` (the time each forecast is made)."""
        return self.ts[samples.start + self.lookback - 1 : samples.stop + self.lookback - 1]

    def window_rows(self, samples: slice) -> slice:
        """The feature rows that the windows of ``samples`` read."""
        return slice(samples.start, samples.stop + self.lookback - 1)

    def last_rows(self, samples: slice) -> slice:
        """The last row of each window of ``samples``."""
        return slice(samples.start + self.lookback - 1, samples.stop + self.lookback - 1)


def prepare_dataset(
    bars: pd.DataFrame,
    feature_set: FeatureSet,
    config: ForecasterConfig,
    features: pd.DataFrame | None = None,
) -> Dataset:
    """Features, labels and their alignment for one series.

    ``features`` are the set's features of exactly these bars (from the feature store); when
    omitted they are built here.

    Raises:
        ValueError: too few bars, features of other bars, or a feature that is not finite after the warm-up.
    """
    if features is None:
        features = build_features(bars, feature_set, timeframe=config.timeframe)
    elif not features.index.equals(bars.index):
        raise ValueError("the stored features do not match the bars; rebuild them with `fks features`")
    labels = make_labels(bars, config.horizon)
    # Rows before min_history still remember where the series starts: a served model never sees
    # such values, so training does not either (served = trained).
    X, Y = align_features_labels(features, labels, feature_set.min_history - 1)
    rows = X.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(rows)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"feature {X.columns[c]!r} is not finite at {X.index[r]}; "
            "validate the bars (`fks validate`) first"
        )
    needed = config.lookback + 2 * config.purge + 60
    if len(rows) - config.lookback + 1 < needed:
        raise ValueError(
            f"{len(bars)} bars give {max(len(rows) - config.lookback + 1, 0)} samples; at least {needed} are "
            f"needed for lookback {config.lookback} and horizon {config.horizon}: ingest more history"
        )
    return Dataset(
        rows=rows,
        targets=Y[f"fwd_log_ret_{config.horizon}"].to_numpy(dtype=np.float64),
        ts=pd.DatetimeIndex(X.index),
        feature_names=[str(c) for c in X.columns],
        lookback=config.lookback,
    )


def _windows(dataset: Dataset, scaler: FeatureScaler, samples: slice) -> tuple[np.ndarray, np.ndarray]:
    scaled = np.asarray(scaler.transform(dataset.rows[dataset.window_rows(samples)]), dtype=np.float32)
    windows, _ = make_windows(scaled, dataset.lookback)
    return np.ascontiguousarray(windows), dataset.targets[dataset.last_rows(samples)]


def _tabular(dataset: Dataset, scaler: FeatureScaler, samples: slice) -> np.ndarray:
    return np.asarray(scaler.transform(dataset.rows[dataset.last_rows(samples)]), dtype=np.float64)


def _inner_split(train: slice, fraction: float, purge: int) -> tuple[slice, slice]:
    """Carve an early-stopping block from the end of ``train``, ``purge`` samples after the fit block."""
    n = train.stop - train.start
    es = max(int(n * fraction), 1)
    fit_stop = train.stop - es - purge
    if fit_stop - train.start < 2 * purge:
        raise ValueError(f"a training span of {n} samples is too short for early stopping with purge {purge}")
    return slice(train.start, fit_stop), slice(train.stop - es, train.stop)


@dataclass(frozen=True)
class Evaluation:
    """Scores of the LSTM and each baseline on one evaluation block, with the fitted pieces."""

    metrics: dict[str, dict[str, float]]
    predictions: pd.DataFrame
    fit: FitResult
    scaler: FeatureScaler


def evaluate_block(
    dataset: Dataset,
    config: ForecasterConfig,
    *,
    fit_samples: slice,
    es_samples: slice,
    eval_samples: slice,
    epoch_callback: EpochCallback | None = None,
    epochs: int | None = None,
    with_baselines: bool = True,
) -> Evaluation:
    """Fit on ``fit_samples`` (scaler included), stop early on ``es_samples``, score on ``eval_samples``."""
    scaler = FeatureScaler().fit(dataset.rows[dataset.window_rows(fit_samples)])
    X_fit, y_fit = _windows(dataset, scaler, fit_samples)
    X_es, y_es = _windows(dataset, scaler, es_samples)
    X_eval, y_eval = _windows(dataset, scaler, eval_samples)
    fit = fit_lstm(X_fit, y_fit, X_es, y_es, config, epoch_callback=epoch_callback, epochs=epochs)
    forecast, prob_up = predict_lstm(fit.model, X_eval)
    predictions = {"actual": y_eval, LSTM: forecast, "prob_up": prob_up}
    metrics = {LSTM: regression_metrics(y_eval, forecast)}
    if with_baselines:
        names = dataset.feature_names
        log_ret_col = names.index("log_ret_1") if "log_ret_1" in names else None
        tab_fit, tab_eval = _tabular(dataset, scaler, fit_samples), _tabular(dataset, scaler, eval_samples)
        for baseline in default_baselines(config.seed, log_ret_col, horizon=config.horizon, scaler=scaler):
            pred = baseline.fit(tab_fit, y_fit).predict(tab_eval)
            predictions[baseline.name] = pred
            metrics[baseline.name] = regression_metrics(y_eval, pred)
    frame = pd.DataFrame(predictions, index=dataset.sample_ts(eval_samples))
    return Evaluation(metrics=metrics, predictions=frame, fit=fit, scaler=scaler)


@dataclass(frozen=True)
class ForecasterResult:
    """Everything a training run produced: the final model and its honest scores."""

    config: ForecasterConfig
    dataset: Dataset
    split: Split
    final: Evaluation
    fold_metrics: list[dict[str, dict[str, float]]]
    walk_forward: dict[str, dict[str, float]]
    test_metrics: dict[str, dict[str, float]]
    uplift: dict[str, Any]
    windows: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=dict)

    @property
    def test_output(self) -> pd.DataFrame:
        """The LSTM's test forecasts as its pyfunc gives them: ``forecast_log_return`` and
        ``prob_up`` per decision bar (UTC ``ts`` index)."""
        predictions = self.final.predictions
        return pd.DataFrame(
            {"forecast_log_return": predictions[LSTM], "prob_up": predictions["prob_up"]},
            index=predictions.index,
        )


def walk_forward(dataset: Dataset, config: ForecasterConfig, span: slice, **kwargs: Any) -> list[Evaluation]:
    """Evaluate on walk-forward folds over ``span`` (train + validation samples, never test)."""
    folds = walk_forward_folds(
        span.stop - span.start,
        folds=config.walk_forward.folds,
        purge=config.purge,
        mode=config.walk_forward.mode,
        min_train_fraction=config.walk_forward.min_train_fraction,
    )
    out = []
    for fold in folds:
        train = slice(span.start + fold.train.start, span.start + fold.train.stop)
        val = slice(span.start + fold.val.start, span.start + fold.val.stop)
        fit_part, es_part = _inner_split(train, config.val_fraction, config.purge)
        out.append(
            evaluate_block(
                dataset, config, fit_samples=fit_part, es_samples=es_part, eval_samples=val, **kwargs
            )
        )
    return out


def train_forecaster(
    bars: pd.DataFrame,
    feature_set: FeatureSet,
    config: ForecasterConfig,
    features: pd.DataFrame | None = None,
) -> ForecasterResult:
    """Run the whole recipe of the module docstring on one series of canonical bars.

    ``features``: the feature set's features of exactly these bars (from the feature store), or None.
    """
    dataset = prepare_dataset(bars, feature_set, config, features)
    split = chronological_split(
        dataset.n_samples,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        purge=config.purge,
    )
    folds = walk_forward(dataset, config, slice(split.train.start, split.val.stop))
    fold_metrics = [f.metrics for f in folds]
    summary = {name: summarize_folds([m[name] for m in fold_metrics]) for name in fold_metrics[0]}
    final = evaluate_block(
        dataset, config, fit_samples=split.train, es_samples=split.val, eval_samples=split.test
    )
    baselines = {k: v for k, v in final.metrics.items() if k != LSTM}
    windows = {
        name: (dataset.sample_ts(part)[0], dataset.sample_ts(part)[-1])
        for name, part in (("train", split.train), ("val", split.val), ("test", split.test))
    }
    return ForecasterResult(
        config=config,
        dataset=dataset,
        split=split,
        final=final,
        fold_metrics=fold_metrics,
        walk_forward=summary,
        test_metrics=final.metrics,
        uplift=uplift(final.metrics[LSTM], baselines),
        windows=windows,
    )
