"""Baselines the forecaster must beat: zero, always long, naive momentum, ridge, boosted trees.

Every baseline predicts the forward log return over the horizon from *tabular* features: a
2-D matrix ``(samples, features)``, or windows ``(samples, lookback, features)`` of which only
the last row of each window (``X[:, -1, :]``, the bar the sample is labelled at) is used.
They share one interface: ``fit(X_train, y_train) -> self``, ``predict(X) -> np.ndarray`` of
shape ``(samples,)``, and a ``name``::

    from models.baselines import default_baselines, evaluate_baselines

    baselines = default_baselines(seed=7, log_ret_column=names.index("log_ret_1"), horizon=1)
    report = evaluate_baselines(baselines, X_train, y_train, X_test, y_test)   # {name: metrics}

Fit them on the training samples only, like the model, and evaluate on the same block.

``always_long`` predicts a constant positive return, so its ``directional_accuracy`` is the
share of up moves in the evaluated block: the directional accuracy a model must beat to show
that it calls direction rather than the drift (``zero`` scores 0.5 by construction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

from models.metrics import regression_metrics
from models.preprocessing import FeatureScaler

__all__ = [
    "AlwaysLongBaseline",
    "Baseline",
    "HistGBBaseline",
    "LastReturnBaseline",
    "RidgeBaseline",
    "ZeroBaseline",
    "default_baselines",
    "evaluate_baselines",
]


@runtime_checkable
class Baseline(Protocol):
    """What every baseline offers."""

    name: str

    def fit(self, X_train: np.ndarray, y_train: np.ndarray) -> Baseline:
        """Learn from the training samples; return ``self``."""
        ...

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Forward log return per sample, shape ``(samples,)``."""
        ...


def _tabular(X: object, what: str = "X") -> np.ndarray:
    try:
        A = np.asarray(X, dtype="float64")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be numeric: {err}") from err
    if A.ndim == 3:
        A = A[:, -1, :]
    if A.ndim != 2:
        raise ValueError(
            f"{what} must be 2-D (samples, features) or windows (samples, lookback, features), "
            f"got shape {A.shape}"
        )
    return A


class _TabularBaseline:
    """Input checks shared by the baselines."""

    name: str = "baseline"

    def __init__(self) -> None:
        self.n_features_in_: int | None = None

    def _check_fit(self, X_train: object, y_train: object, *, finite: bool) -> tuple[np.ndarray, np.ndarray]:
        X = _tabular(X_train, "X_train")
        try:
            y = np.asarray(y_train, dtype="float64")
        except (TypeError, ValueError) as err:
            raise ValueError(f"y_train must be numeric: {err}") from err
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y_train must have one value per sample ({X.shape[0]}), got shape {y.shape}")
        if X.shape[0] == 0:
            raise ValueError("fit needs at least one training sample")
        if not np.isfinite(y).all():
            raise ValueError("y_train has NaN or infinite values; align features and labels first")
        if finite and not np.isfinite(X).all():
            col = int(np.flatnonzero(~np.isfinite(X).all(axis=0))[0])
            raise ValueError(f"{self.name}: X_train has NaN or infinite values in column {col}")
        self.n_features_in_ = int(X.shape[1])
        return X, y

    def _check_predict(self, X: object) -> np.ndarray:
        if self.n_features_in_ is None:
            raise ValueError(f"{self.name} baseline is not fitted; call fit(X_train, y_train) first")
        A = _tabular(X)
        if A.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {A.shape[1]} features, {self.name} was fitted on {self.n_features_in_}")
        return A

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class ZeroBaseline(_TabularBaseline):
    """Always predicts a zero return: the random-walk forecast (its RMSE is the RMS of returns).

    Its ``directional_accuracy`` is 0.5 and its IC undefined (NaN): see
    :func:`models.metrics.regression_metrics`.
    """

    name = "zero"

    def fit(self, X_train: np.ndarray, y_train: np.ndarray) -> ZeroBaseline:
        """Check shapes and record the number of features (nothing to learn).

        Raises:
            ValueError: bad shapes or a NaN target.
        """
        self._check_fit(X_train, y_train, finite=False)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Zeros, shape ``(samples,)``.

        Raises:
            ValueError: not fitted, or a different number of features.
        """
        return np.zeros(self._check_predict(X).shape[0])


class AlwaysLongBaseline(_TabularBaseline):
    """Always predicts the same positive return: the drift, or "the market goes up".

    The forecast is the mean of the training targets when it is positive, else
    :attr:`MIN_FORECAST` (a tiny positive log return): it is always strictly positive, so every
    sample is called up. Its ``directional_accuracy`` (see
    :func:`models.metrics.regression_metrics`) is therefore exactly the share of positive
    targets among the evaluated samples with a direction (targets of exactly 0 are left out), the
    up-share a model's directional accuracy must beat. Its IC is undefined (NaN: a constant);
    traded long/flat it is buy and hold.
    """

    name = "always_long"
    MIN_FORECAST = 1e-8
    """The forecast when the training drift is not positive (1e-8, a ten-thousandth of a bp)."""

    def __init__(self) -> None:
        super().__init__()
        self.forecast_: float | None = None

    def fit(self, X_train: np.ndarray, y_train: np.ndarray) -> AlwaysLongBaseline:
        """Learn the forecast: ``max(mean(y_train), MIN_FORECAST)``.

        Raises:
            ValueError: bad shapes or a NaN target.
        """
        _, y = self._check_fit(X_train, y_train, finite=False)
        self.forecast_ = max(float(np.mean(y)), self.MIN_FORECAST)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The positive forecast for every sample, shape ``(samples,)``.

        Raises:
            ValueError: not fitted, or a different number of features.
        """
        n = self._check_predict(X).shape[0]
        if self.forecast_ is None:  # pragma: no cover - fitted together with n_features_in_
            raise ValueError("always_long baseline is not fitted")
        return np.full(n, self.forecast_, dtype="float64")


class LastReturnBaseline(_TabularBaseline):
    """Naive momentum: the last observed one-bar log return, scaled to the horizon.

    Predicts ``horizon * x[log_ret_column]``: the return over the next ``horizon`` bars if the
    last bar's log return (the ``log_ret_1`` feature at the sample's bar) simply persisted.
    Nothing is learned.

    The column must hold the *raw* one-bar log return. When the features given to ``predict``
    are standardised, pass the fitted ``scaler`` so the column is brought back to log-return
    units (``z * scale + mean``; a value clipped by the scaler stays clipped).

    Args:
        log_ret_column: index of the ``log_ret_1`` column in the tabular features, >= 0.
        horizon: bars ahead of the target, >= 1.
        scaler: the fitted :class:`~models.preprocessing.FeatureScaler` applied to the features,
            or None for raw features.

    Raises:
        ValueError: a negative column, a horizon < 1, or an unfitted scaler.
    """

    name = "last_return"

    def __init__(self, log_ret_column: int, horizon: int = 1, scaler: FeatureScaler | None = None) -> None:
        super().__init__()
        if (
            isinstance(log_ret_column, bool)
            or not isinstance(log_ret_column, int | np.integer)
            or log_ret_column < 0
        ):
            raise ValueError(
                f"log_ret_column must be a column index >= 0, got {log_ret_column!r} "
                "(without a log_ret_1 feature, leave this baseline out: default_baselines(seed, None))"
            )
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ValueError(f"horizon must be a whole number of bars >= 1, got {horizon!r}")
        if scaler is not None and not scaler.is_fitted:
            raise ValueError("scaler must be fitted (the one that scaled the features)")
        self.log_ret_column = int(log_ret_column)
        self.horizon = int(horizon)
        self.scaler = scaler

    def fit(self, X_train: np.ndarray, y_train: np.ndarray) -> LastReturnBaseline:
        """Check shapes and that the column exists (nothing to learn).

        Raises:
            ValueError: bad shapes, a NaN target, ``log_ret_column`` out of range, or a scaler
                fitted on another number of features.
        """
        X, _ = self._check_fit(X_train, y_train, finite=False)
        if self.log_ret_column >= X.shape[1]:
            raise ValueError(
                f"log_ret_column {self.log_ret_column} is out of range for {X.shape[1]} features"
            )
        if self.scaler is not None and self.scaler.n_features != X.shape[1]:
            raise ValueError(f"scaler has {self.scaler.n_features} features, X_train has {X.shape[1]}")
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``horizon * log_ret_1`` per sample, shape ``(samples,)``.

        Raises:
            ValueError: not fitted, or a different number of features.
        """
        col = self._check_predict(X)[:, self.log_ret_column]
        if self.scaler is not None:
            mean, scale = self.scaler.mean_, self.scaler.scale_
            if mean is None or scale is None:  # pragma: no cover - checked in __init__
                raise ValueError("scaler is not fitted")
            col = col * scale[self.log_ret_column] + mean[self.log_ret_column]
        return np.asarray(self.horizon * col, dtype="float64")


class RidgeBaseline(_TabularBaseline):
    """Linear regression with an L2 penalty (``sklearn.linear_model.Ridge``, with intercept).

    Give it standardised features: the penalty treats all coefficients alike.

    Args:
        alpha: L2 penalty strength, >= 0.
        seed: ``random_state`` (used only by the stochastic solvers; kept for reproducibility).

    Raises:
        ValueError: a negative ``alpha``.
    """

    name = "ridge"

    def __init__(self, alpha: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.number) or not alpha >= 0:
            raise ValueError(f"alpha must be a number >= 0, got {alpha!r}")
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.model_: Ridge | None = None

    def fit(self, X_train: np.ndarray, y_train: np.ndarray) -> RidgeBaseline:
        """Fit the ridge regression on the training samples.

        Raises:
            ValueError: bad shapes, or NaN/infinite features or targets.
        """
        X, y = self._check_fit(X_train, y_train, finite=True)
        self.model_ = Ridge(alpha=self.alpha, random_state=self.seed).fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted forward log return, shape ``(samples,)``.

        Raises:
            ValueError: not fitted, a different number of features, or NaN features.
        """
        A = self._check_predict(X)
        if self.model_ is None:  # pragma: no cover - fitted together with n_features_in_
            raise ValueError("ridge baseline is not fitted")
        if not np.isfinite(A).all():
            raise ValueError("ridge: X has NaN or infinite values")
        return np.asarray(self.model_.predict(A), dtype="float64")

    @property
    def coef_(self) -> np.ndarray:
        """The fitted coefficients, one per feature.

        Raises:
            ValueError: not fitted.
        """
        if self.model_ is None:
            raise ValueError("ridge baseline is not fitted")
        return np.asarray(self.model_.coef_)


class HistGBBaseline(_TabularBaseline):
    """Gradient-boosted trees (``sklearn.ensemble.HistGradientBoostingRegressor``), deterministic.

    Early stopping is off (no random validation carve-out), ``random_state=seed``; with the same
    seed and data the predictions are identical. NaN features are allowed (trees route them).

    Args:
        seed: ``random_state``.
        max_iter: boosting rounds (modest by default: a baseline, not a competitor to tune).
        learning_rate: shrinkage per round, > 0.
        max_leaf_nodes: leaves per tree.
        min_samples_leaf: samples per leaf (larger is smoother on noisy returns).
        l2_regularization: L2 penalty on leaf values, >= 0.
    """

    name = "hist_gb"

    def __init__(
        self,
        seed: int = 0,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
    ) -> None:
        super().__init__()
        self.seed = int(seed)
        self.params: dict[str, Any] = {
            "max_iter": max_iter,
            "learning_rate": learning_rate,
            "max_leaf_nodes": max_leaf_nodes,
            "min_samples_leaf": min_samples_leaf,
            "l2_regularization": l2_regularization,
        }
        self.model_: HistGradientBoostingRegressor | None = None

    def fit(self, X_train: np.ndarray, y_train: np.ndarray) -> HistGBBaseline:
        """Fit the boosted trees on the training samples.

        Raises:
            ValueError: bad shapes, NaN targets, or parameters sklearn rejects.
        """
        X, y = self._check_fit(X_train, y_train, finite=False)
        model = HistGradientBoostingRegressor(random_state=self.seed, early_stopping=False, **self.params)
        self.model_ = model.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted forward log return, shape ``(samples,)``.

        Raises:
            ValueError: not fitted, or a different number of features.
        """
        A = self._check_predict(X)
        if self.model_ is None:  # pragma: no cover - fitted together with n_features_in_
            raise ValueError("hist_gb baseline is not fitted")
        return np.asarray(self.model_.predict(A), dtype="float64")


def default_baselines(
    seed: int,
    log_ret_column: int | None,
    *,
    horizon: int = 1,
    scaler: FeatureScaler | None = None,
    ridge_alpha: float = 1.0,
) -> list[Baseline]:
    """The platform's baseline set, fresh and unfitted, in the order zero, always_long, last_return,
    ridge, hist_gb.

    Args:
        seed: seed of the ridge and the trees.
        log_ret_column: index of the ``log_ret_1`` feature (for :class:`LastReturnBaseline`), or
            None when the feature set has no such column: the last-return baseline is left out.
        horizon: the label horizon in bars.
        scaler: the fitted scaler when the features will be standardised (see
            :class:`LastReturnBaseline`), else None.
        ridge_alpha: penalty of :class:`RidgeBaseline`.

    Raises:
        ValueError: as the constructors.
    """
    out: list[Baseline] = [ZeroBaseline(), AlwaysLongBaseline()]
    if log_ret_column is not None:
        out.append(LastReturnBaseline(log_ret_column, horizon=horizon, scaler=scaler))
    out += [RidgeBaseline(alpha=ridge_alpha, seed=seed), HistGBBaseline(seed=seed)]
    return out


def evaluate_baselines(
    baselines: Sequence[Baseline],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_eval: np.ndarray,
    y_eval: np.ndarray,
) -> dict[str, dict[str, float]]:
    """Fit each baseline on the training samples and score it on the evaluation samples.

    Returns:
        ``{baseline.name: regression_metrics(y_eval, baseline.predict(X_eval))}``, ready for
        :func:`models.metrics.uplift`.

    Raises:
        ValueError: two baselines share a name, or as ``fit``/``predict``/``regression_metrics``.
    """
    names = [b.name for b in baselines]
    if len(set(names)) != len(names):
        raise ValueError(f"baseline names must be unique, got {names}")
    return {b.name: regression_metrics(y_eval, b.fit(X_train, y_train).predict(X_eval)) for b in baselines}
