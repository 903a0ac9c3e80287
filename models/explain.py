"""SHAP attributions of the LSTM forecaster's ``ret`` head (forecast forward log return).

Uses ``shap.GradientExplainer`` (expected gradients), which works on Keras 3 LSTMs;
``shap.DeepExplainer`` does not. The explainer attributes each prediction to every cell of its
input window, shape ``(lookback, features)``; FKS sums those over the window's time steps, so each
feature gets one number: how much that feature, across the whole window, moved this forecast
away from the background's mean forecast, in log-return units.

Expected gradients satisfies completeness only in expectation: for one window,
``attributions.sum() ~= f(window) - mean(f(background))``, with Monte Carlo error that shrinks
as ``1/sqrt(nsamples)``. All sampling is seeded, so the same inputs and seed give the same values.

shap, Keras and matplotlib are imported inside the functions; ``import models.explain`` is cheap.

Example::

    expl = explain_global(model, X_train[-64:], X_test[:128], feature_names)
    expl.mean_abs.head()            # features ranked by mean |SHAP|
    summary_figure(expl).savefig("shap_summary.png")
    explain_one(model, X_train[-64:], X_test[-1], feature_names)  # one forecast, for the REST service
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

__all__ = ["DEFAULT_NSAMPLES", "Explanation", "explain_global", "explain_one", "summary_figure"]

DEFAULT_NSAMPLES = 200
"""Background draws (with random interpolation points) per explained window."""


@dataclass(frozen=True, eq=False)
class Explanation:
    """Global SHAP attributions of the forecast log return.

    Attributes:
        values: shape ``(samples, features)``: attribution of each feature (summed over the window's
            time steps) to each explained forecast, in log-return units.
        feature_names: one name per column of ``values``.
        mean_abs: mean ``|values|`` per feature, a ``pd.Series`` indexed by feature name, sorted
            descending: the global feature importance.
        base_value: mean forecast over the background windows (what the attributions explain the
            deviation from).
        predictions: forecast of each explained window, shape ``(samples,)``.
    """

    values: np.ndarray
    feature_names: list[str]
    mean_abs: pd.Series
    base_value: float
    predictions: np.ndarray


def _ret_model(model: keras.Model) -> Any:
    """The single-output sub-model ``window -> ret`` that GradientExplainer needs."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN kernels round differently run to run
    import keras

    try:
        ret = model.get_layer("ret").output
    except ValueError as exc:
        raise ValueError(
            "model has no layer named 'ret'; explain a forecaster built by models.forecaster.build_lstm"
        ) from exc
    return keras.Model(inputs=model.inputs, outputs=ret, name="fks_forecaster_ret")


def _check_windows(arr: Any, name: str, window_shape: tuple[int, int]) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim != 3 or a.shape[1:] != window_shape:
        raise ValueError(
            f"{name} must have shape (n, {window_shape[0]}, {window_shape[1]}) for this model, got {a.shape}"
        )
    if a.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one window")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _attributions(
    model: keras.Model,
    background: Any,
    samples: Any,
    feature_names: Sequence[str],
    nsamples: int,
    seed: int,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Window-summed attributions ``(n, features)``, background mean forecast, forecasts ``(n,)``."""
    window_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if len(window_shape) != 2:
        raise ValueError(f"model input must be windows (lookback, features), got {window_shape}")
    lookback, n_features = window_shape
    bg = _check_windows(background, "background", (lookback, n_features))
    xs = _check_windows(samples, "samples", (lookback, n_features))
    if len(feature_names) != n_features:
        raise ValueError(
            f"feature_names has {len(feature_names)} names but the model takes {n_features} features"
        )
    if len(set(feature_names)) != len(feature_names):
        raise ValueError("feature_names must be unique")
    if isinstance(nsamples, bool) or not isinstance(nsamples, int) or nsamples < 1:
        raise ValueError(f"nsamples must be a positive integer, got {nsamples!r}")

    import shap

    from models.seeding import seed_everything

    seed_everything(seed)
    sub = _ret_model(model)
    explainer = shap.GradientExplainer(sub, bg, batch_size=nsamples)
    raw = explainer.shap_values(xs, nsamples=nsamples, rseed=seed)
    phi = np.asarray(raw, dtype=np.float64)
    if phi.ndim == 4:  # one output of shape (n, 1): shap appends an output axis
        phi = phi[..., 0]
    values = phi.sum(axis=1)  # sum over the window's time steps -> (n, features)
    base = float(np.mean(np.asarray(sub.predict(bg, verbose=0, batch_size=1024), dtype=np.float64)))
    preds = np.asarray(sub.predict(xs, verbose=0, batch_size=1024), dtype=np.float64).reshape(-1)
    return values, base, preds


def explain_global(
    model: keras.Model,
    background: np.ndarray,
    samples: np.ndarray,
    feature_names: list[str],
    *,
    nsamples: int = DEFAULT_NSAMPLES,
    seed: int = 0,
) -> Explanation:
    """Attribute the forecast log return of many windows to the features (global importance).

    Args:
        model: a forecaster from ``models.forecaster`` (must have the ``ret`` output).
        background: reference windows, shape ``(n_bg, lookback, features)``, typically a few dozen
            training windows (``ExplainConfig.background``). Attributions explain each forecast's
            deviation from the mean forecast over these.
        samples: windows to explain, shape ``(n, lookback, features)`` (``ExplainConfig.samples``).
        feature_names: one unique name per feature column.
        nsamples: expected-gradient draws per window; cost grows linearly with it, Monte Carlo error
            falls as ``1/sqrt(nsamples)``.
        seed: seeds the background draws and interpolation points (calls
            :func:`models.seeding.seed_everything`).

    Returns:
        An :class:`Explanation` with ``values`` of shape ``(n, features)``.

    Raises:
        ValueError: window shapes that do not match the model, NaN/inf, wrong number of names,
            duplicate names, a model without a ``ret`` output, or ``nsamples < 1``.
    """
    names = list(feature_names)
    values, base, preds = _attributions(model, background, samples, names, nsamples, seed)
    mean_abs = pd.Series(np.abs(values).mean(axis=0), index=names, name="mean_abs_shap")
    mean_abs = mean_abs.sort_values(ascending=False, kind="stable")
    return Explanation(
        values=values, feature_names=names, mean_abs=mean_abs, base_value=base, predictions=preds
    )


def explain_one(
    model: keras.Model,
    background: np.ndarray,
    window: np.ndarray,
    feature_names: list[str],
    *,
    nsamples: int = DEFAULT_NSAMPLES,
    seed: int = 0,
) -> pd.Series:
    """Attribute one forecast to the features (for the REST service's "why" answer).

    Args:
        model: a forecaster from ``models.forecaster``.
        background: reference windows, shape ``(n_bg, lookback, features)``.
        window: the window to explain, shape ``(lookback, features)``.
        feature_names: one unique name per feature column.
        nsamples: expected-gradient draws (see :func:`explain_global`).
        seed: seeds the sampling.

    Returns:
        A ``pd.Series`` named ``shap``, one value per feature (log-return units, summed over the
        window), indexed by feature name and sorted by ``|value|`` descending. Its ``attrs`` hold
        ``base_value`` (mean background forecast) and ``prediction`` (this window's forecast);
        ``series.sum() ~= attrs["prediction"] - attrs["base_value"]`` up to Monte Carlo error.

    Raises:
        ValueError: ``window`` is not 2-D ``(lookback, features)`` or as for :func:`explain_global`.
    """
    w = np.asarray(window, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"window must be one 2-D window (lookback, features), got shape {w.shape}")
    names = list(feature_names)
    values, base, preds = _attributions(model, background, w[None], names, nsamples, seed)
    series = pd.Series(values[0], index=names, name="shap")
    series = series.iloc[np.argsort(-np.abs(series.to_numpy()), kind="stable")]
    series.attrs["base_value"] = base
    series.attrs["prediction"] = float(preds[0])
    return series


def summary_figure(explanation: Explanation, *, max_features: int = 20) -> Figure:
    """Bar chart of mean |SHAP| per feature, most important on top (headless, no pyplot).

    Draws on a plain ``matplotlib.figure.Figure``; save with ``fig.savefig(buf, format="png")``.

    Args:
        explanation: from :func:`explain_global`.
        max_features: show at most this many features (the most important ones).

    Raises:
        ValueError: ``max_features < 1``.
    """
    if max_features < 1:
        raise ValueError(f"max_features must be at least 1, got {max_features}")
    from matplotlib.figure import Figure

    top = explanation.mean_abs.iloc[:max_features][::-1]
    height = max(2.5, 0.35 * len(top) + 1.2)
    fig = Figure(figsize=(6.4, height), layout="constrained")
    ax = fig.add_subplot()
    ax.barh([str(i) for i in top.index], top.to_numpy(), color="#1f77b4")
    ax.set_xlabel("mean |SHAP| (forecast log return)")
    ax.set_title(f"Feature importance, {explanation.values.shape[0]} windows")
    ax.grid(axis="x", alpha=0.3)
    return fig
