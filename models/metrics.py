"""Out-of-sample metrics of return forecasts, their summary over folds, and uplift over baselines.

::

    from models.metrics import regression_metrics, summarize_folds, uplift

    m = regression_metrics(y_test, model.predict(X_test))     # rmse, mae, directional_accuracy, ic, rank_ic
    cv = summarize_folds([regression_metrics(...) for fold in folds])   # rmse_mean, rmse_std, ...
    report = uplift(m, {"zero": m_zero, "ridge": m_ridge})  # {"rmse_best_baseline": "ridge", ...}

Targets are forward log returns (``fwd_log_ret_h``), predictions are in the same unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "METRIC_DIRECTIONS",
    "regression_metrics",
    "summarize_folds",
    "uplift",
]

#: Which way each metric improves: ``"min"`` (lower is better) or ``"max"`` (higher is better).
#: A summarised name (``rmse_mean``) follows its base metric; ``*_std`` is not ranked.
METRIC_DIRECTIONS: dict[str, str] = {
    "rmse": "min",
    "mae": "min",
    "directional_accuracy": "max",
    "ic": "max",
    "rank_ic": "max",
}


def _as_1d(name: str, values: object) -> np.ndarray:
    try:
        a = np.asarray(values, dtype="float64")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric: {err}") from err
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per sample), got shape {a.shape}")
    return a


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    # Undefined with fewer than two samples or a constant side.
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan
    da, db = a - a.mean(), b - b.mean()
    denom = float(np.sqrt(np.dot(da, da) * np.dot(db, db)))
    if denom == 0.0:
        return math.nan
    return float(np.clip(np.dot(da, db) / denom, -1.0, 1.0))


def regression_metrics(y_true: object, y_pred: object) -> dict[str, float]:
    """Error and skill of return forecasts on one evaluation block.

    Metrics (floats):

    * ``rmse``: root mean squared error, in log-return units (lower is better).
    * ``mae``: mean absolute error, in log-return units (lower is better).
    * ``directional_accuracy``: share of samples whose predicted sign matches the realised sign,
      in [0, 1]. Samples with a true return of exactly 0 are excluded (no direction to call);
      a prediction of exactly 0 makes no call and scores 1/2, the expected score of a coin flip
      (so :class:`~models.baselines.ZeroBaseline` scores 0.5). NaN when every true return is 0.
    * ``ic``: information coefficient, the Pearson correlation of prediction and outcome, in
      [-1, 1].
    * ``rank_ic``: Spearman rank correlation (Pearson on average ranks, ties averaged).

    ``ic`` and ``rank_ic`` are NaN when either side is constant (e.g. the zero baseline) or
    there are fewer than two samples: a correlation is undefined there, not zero.

    Args:
        y_true: realised forward log returns, shape ``(n,)`` (or ``(n, 1)``), finite.
        y_pred: predictions, same shape, finite.

    Returns:
        ``{"rmse", "mae", "directional_accuracy", "ic", "rank_ic"}`` as Python floats.

    Raises:
        ValueError: not 1-D, lengths differ, empty, or a NaN/infinite value.
    """
    t = _as_1d("y_true", y_true)
    p = _as_1d("y_pred", y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    if t.size == 0:
        raise ValueError("metrics need at least one sample, got none")
    for name, a in (("y_true", t), ("y_pred", p)):
        if not np.isfinite(a).all():
            raise ValueError(
                f"{name} has {int((~np.isfinite(a)).sum())} NaN or infinite values; drop them first"
            )
    err = p - t
    called = t != 0
    if called.any():
        st, sp = np.sign(t[called]), np.sign(p[called])
        hits = np.where(sp == 0, 0.5, (st == sp).astype("float64"))
        da = float(hits.mean())
    else:
        da = math.nan
    return {
        "rmse": float(np.sqrt(np.mean(err * err))),
        "mae": float(np.mean(np.abs(err))),
        "directional_accuracy": da,
        "ic": _pearson(t, p),
        "rank_ic": _pearson(rankdata(t), rankdata(p)) if t.size >= 2 else math.nan,
    }


def summarize_folds(per_fold: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean and standard deviation of each metric across walk-forward folds.

    For every metric ``m`` of the folds: ``m_mean`` and ``m_std`` over the folds where ``m`` is
    finite (a NaN IC of a fold is left out, not counted as 0). ``m_std`` is the sample standard
    deviation (``ddof=1``), NaN with fewer than two finite values; ``m_mean`` is NaN when no
    fold has a finite value.

    Args:
        per_fold: one metrics dict per fold (e.g. from :func:`regression_metrics`), all with the
            same keys.

    Returns:
        ``{"<metric>_mean": ..., "<metric>_std": ...}`` in the folds' key order.

    Raises:
        ValueError: no folds, or folds with different metric names.
    """
    if isinstance(per_fold, Mapping) or not isinstance(per_fold, Sequence) or len(per_fold) == 0:
        raise ValueError("per_fold must be a non-empty list of metric dicts, one per fold")
    keys = list(per_fold[0])
    for i, fold in enumerate(per_fold):
        if set(fold) != set(keys):
            raise ValueError(
                f"fold {i} has metrics {sorted(fold)}, fold 0 has {sorted(keys)}; they must match"
            )
    out: dict[str, float] = {}
    for key in keys:
        values = np.asarray([float(f[key]) for f in per_fold], dtype="float64")
        finite = values[np.isfinite(values)]
        out[f"{key}_mean"] = float(finite.mean()) if finite.size else math.nan
        out[f"{key}_std"] = float(finite.std(ddof=1)) if finite.size >= 2 else math.nan
    return out


def _direction(metric: str) -> str | None:
    base = metric[: -len("_mean")] if metric.endswith("_mean") else metric
    return METRIC_DIRECTIONS.get(base)


def uplift(
    model: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    metric: str | Iterable[str] | None = None,
) -> dict[str, float | str | None]:
    """The model's improvement over the best baseline, metric by metric, as one flat dict.

    For each metric ``m``, the best baseline is the one with the lowest value for ``rmse``/``mae``
    and the highest for ``directional_accuracy``/``ic``/``rank_ic`` (see
    :data:`METRIC_DIRECTIONS`; ``<metric>_mean`` names from :func:`summarize_folds` work too).
    Baselines with a NaN value on ``m`` are not candidates; when none is left the best baseline
    is None and the improvement NaN. A NaN model value gives a NaN improvement.

    Keys per metric ``m`` (flat, so the float entries can be logged as metrics directly):

    * ``m_best_baseline``: name of the best baseline (str, or None);
    * ``m_baseline``: its value; ``m_model``: the model's value;
    * ``m_improvement``: signed so that **positive means the model is better**:
      ``baseline - model`` for lower-is-better metrics, ``model - baseline`` otherwise;
    * ``m_relative_improvement``: ``m_improvement / |m_baseline|`` (NaN when that is 0 or NaN).

    Args:
        model: the model's metrics.
        baselines: ``{baseline name: its metrics}``, at least one.
        metric: one metric name, several, or None for every metric of ``model`` with a known
            direction (``*_std`` and unknown names are skipped).

    Returns:
        The flat report described above, metrics in the order asked (or of ``model``).

    Raises:
        ValueError: no baselines; a requested metric with no known direction, or missing from the
            model or from a baseline.
    """
    if not baselines:
        raise ValueError("uplift needs at least one baseline's metrics")
    if metric is None:
        names = [m for m in model if _direction(m) is not None]
    elif isinstance(metric, str):
        names = [metric]
    else:
        names = list(metric)
    out: dict[str, float | str | None] = {}
    for name in names:
        direction = _direction(name)
        if direction is None:
            raise ValueError(f"no known direction for metric {name!r}; known: {sorted(METRIC_DIRECTIONS)}")
        if name not in model:
            raise ValueError(f"the model has no metric {name!r}; it has {sorted(model)}")
        missing = [b for b, m in baselines.items() if name not in m]
        if missing:
            raise ValueError(f"baselines {missing} have no metric {name!r}")
        value = float(model[name])
        candidates = {b: float(m[name]) for b, m in baselines.items() if math.isfinite(float(m[name]))}
        best: str | None = None
        base = math.nan
        if candidates:
            pick = min if direction == "min" else max
            best = pick(candidates, key=lambda b: candidates[b])
            base = candidates[best]
        improvement = (base - value) if direction == "min" else (value - base)
        out[f"{name}_best_baseline"] = best
        out[f"{name}_baseline"] = base
        out[f"{name}_model"] = value
        out[f"{name}_improvement"] = improvement
        out[f"{name}_relative_improvement"] = (
            improvement / abs(base) if math.isfinite(base) and base != 0 else math.nan
        )
    return out
