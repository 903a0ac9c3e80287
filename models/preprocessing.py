"""Feature scaling fitted on training rows only, serialisable into the model artifact.

::

    from models.preprocessing import FeatureScaler
    from models.splits import feature_rows

    scaler = FeatureScaler(clip=10.0).fit(X[feature_rows(split.train, lookback)])  # train rows only
    Z = scaler.transform(X)              # every row, scaled with the train statistics
    json.dumps(scaler.to_dict())         # goes into the model artifact
    scaler = FeatureScaler.from_dict(d)  # at serving time: the same transform

Fitting on validation or test rows would leak their distribution into training; fit on the rows
the training windows read, then transform everything with those statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

import numpy as np
import pandas as pd

__all__ = ["FeatureScaler"]

_FORMAT = "fks-standard-scaler"
_VERSION = 1


def _zero_variance(std: np.ndarray, mean: np.ndarray) -> np.ndarray:
    # "Numerically constant": float noise of a constant column is far below this threshold.
    return np.asarray(std <= 1e-12 * np.maximum(1.0, np.abs(mean)))


class FeatureScaler:
    """Per-column standardisation ``z = (x - mean) / scale``, then optional clipping to ``[-clip, clip]``.

    ``mean`` and ``scale`` are the column means and population standard deviations (``ddof=0``)
    of the rows given to :meth:`fit`: the *training rows only*. After fitting, ``transform`` of
    those rows has mean 0 and standard deviation 1 per column (before clipping). A column whose
    standard deviation is numerically zero (``<= 1e-12 * max(1, |mean|)``) gets ``scale = 1``,
    so it is only centred (and becomes 0 on the training rows), never divided by ~0.

    Clipping: with ``clip=c`` (default 10.0), scaled values are bounded to ``[-c, c]`` standard
    deviations, so that one outlier bar (a bad tick, a crash day) cannot dominate the inputs of a
    network. ``clip=None`` turns it off. NaN in :meth:`transform` input passes through as NaN.

    Feature names: fitted on a ``DataFrame``, the scaler records its column names
    (``feature_names``) and :meth:`transform` of a ``DataFrame`` requires the same columns in the
    same order (it returns a ``DataFrame`` with the input's index). A plain array is checked on
    its number of columns only.

    Args:
        clip: bound on the absolute scaled value, in standard deviations (> 0), or None.

    Raises:
        ValueError: ``clip`` is not a positive number or None.
    """

    def __init__(self, clip: float | None = 10.0) -> None:
        if clip is not None:
            if isinstance(clip, bool) or not isinstance(clip, int | float | np.number):
                raise ValueError(
                    f"clip must be a positive number of standard deviations or None, got {clip!r}"
                )
            if not (np.isfinite(clip) and clip > 0):
                raise ValueError(
                    f"clip must be a positive, finite number of standard deviations, got {clip!r}"
                )
            clip = float(clip)
        self.clip: float | None = clip
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.feature_names: list[str] | None = None
        self.n_samples_seen: int = 0

    # ------------------------------------------------------------------ state
    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_dict`) has set the statistics."""
        return self.mean_ is not None and self.scale_ is not None

    @property
    def n_features(self) -> int:
        """Number of columns the scaler was fitted on.

        Raises:
            ValueError: not fitted.
        """
        mean, _ = self._stats()
        return int(mean.shape[0])

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean_ is None or self.scale_ is None:
            raise ValueError("FeatureScaler is not fitted; call fit(X_train) on the training rows first")
        return self.mean_, self.scale_

    # ------------------------------------------------------------------ fit
    def fit(self, X_train: np.ndarray | pd.DataFrame) -> FeatureScaler:
        """Learn column means and standard deviations from the training rows.

        Args:
            X_train: training feature rows, shape ``(rows, features)``, a numpy array or a
                ``DataFrame`` (its column names are kept). At least one row; no NaN or infinity.

        Returns:
            ``self``, fitted.

        Raises:
            ValueError: not 2-D, no rows or no columns, non-numeric, or a NaN/infinite value
                (the message names the first such column by index, and by name for a frame).
        """
        names: list[str] | None = None
        if isinstance(X_train, pd.DataFrame):
            names = [str(c) for c in X_train.columns]
            if len(set(names)) != len(names):
                raise ValueError(
                    "feature names must be unique to be checked on transform; rename the columns"
                )
        X = self._as_float(X_train, "X_train")
        if X.ndim != 2:
            raise ValueError(
                f"fit takes 2-D feature rows (rows, features), got shape {X.shape}; for windows fit on "
                "the rows the training windows read (models.splits.feature_rows)"
            )
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"fit needs at least one row and one column, got shape {X.shape}")
        finite = np.isfinite(X)
        if not finite.all():
            bad_col = int(np.flatnonzero(~finite.all(axis=0))[0])
            bad_row = int(np.flatnonzero(~finite[:, bad_col])[0])
            label = f" ({names[bad_col]!r})" if names is not None else ""
            raise ValueError(
                f"X_train has NaN or infinite values in column {bad_col}{label} (first at row {bad_row}); "
                "drop the warm-up rows or fill/remove the feature before fitting"
            )
        # An exactly constant column is centred on its value (so it becomes exactly 0), not on a
        # mean that carries float rounding.
        mean = np.where(np.all(X[0] == X, axis=0), X[0], X.mean(axis=0))
        std = X.std(axis=0)
        scale = np.where(_zero_variance(std, mean), 1.0, std)
        self.mean_, self.scale_ = mean, scale
        self.feature_names = names
        self.n_samples_seen = int(X.shape[0])
        return self

    # ------------------------------------------------------------------ transform
    @overload
    def transform(self, X: pd.DataFrame) -> pd.DataFrame: ...

    @overload
    def transform(self, X: np.ndarray) -> np.ndarray: ...

    def transform(self, X: np.ndarray | pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """Scale (and clip) features with the fitted statistics.

        Args:
            X: a ``DataFrame`` with the fitted columns, or an array whose *last* axis holds the
                features: ``(rows, features)`` or windows ``(samples, lookback, features)``.

        Returns:
            float64 values of the same shape: a ``DataFrame`` (same index and columns) for a
            frame, a new array otherwise (the input is never modified).

        Raises:
            ValueError: not fitted; wrong number of features; or, for a frame fitted on a frame,
                columns that differ from ``feature_names`` (missing, extra or reordered).
        """
        mean, scale = self._stats()
        if isinstance(X, pd.DataFrame):
            self._check_names(list(X.columns))
            Z = self._apply(self._as_float(X, "X"), mean, scale)
            return pd.DataFrame(Z, index=X.index, columns=X.columns)
        A = self._as_float(X, "X")
        if A.ndim < 1 or A.shape[-1] != mean.shape[0]:
            raise ValueError(
                f"X must have {mean.shape[0]} features on its last axis (as fitted), got shape {A.shape}"
            )
        return self._apply(A, mean, scale)

    def fit_transform(self, X_train: np.ndarray | pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """``fit(X_train)`` then ``transform(X_train)`` (training rows only)."""
        return self.fit(X_train).transform(X_train)

    def _apply(self, X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        Z = (X - mean) / scale
        if self.clip is not None:
            np.clip(Z, -self.clip, self.clip, out=Z)
        return Z

    def _check_names(self, columns: Sequence[Any]) -> None:
        mean, _ = self._stats()
        if self.feature_names is None:
            if len(columns) != mean.shape[0]:
                raise ValueError(f"X has {len(columns)} columns, the scaler was fitted on {mean.shape[0]}")
            return
        got = [str(c) for c in columns]
        if got != self.feature_names:
            missing = [c for c in self.feature_names if c not in got]
            extra = [c for c in got if c not in self.feature_names]
            detail = (
                f"missing {missing}, unexpected {extra}" if missing or extra else "same columns, other order"
            )
            raise ValueError(
                f"X's columns do not match the fitted feature names ({detail}); select "
                "X[scaler.feature_names] first"
            )

    @staticmethod
    def _as_float(X: object, what: str) -> np.ndarray:
        try:
            return np.asarray(X, dtype="float64")
        except (TypeError, ValueError) as err:
            raise ValueError(f"{what} must be numeric: {err}") from err

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description that :meth:`from_dict` turns back into the same scaler.

        Keys: ``format`` (``"fks-standard-scaler"``), ``version`` (1), ``clip``, ``mean``,
        ``scale`` (lists of floats, exact: Python floats round-trip through JSON),
        ``feature_names`` (list or None), ``n_samples_seen``.

        Raises:
            ValueError: not fitted.
        """
        mean, scale = self._stats()
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "clip": self.clip,
            "mean": [float(v) for v in mean],
            "scale": [float(v) for v in scale],
            "feature_names": None if self.feature_names is None else list(self.feature_names),
            "n_samples_seen": self.n_samples_seen,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureScaler:
        """Rebuild a fitted scaler from :meth:`to_dict` output.

        Raises:
            ValueError: not a scaler description of a known version, or inconsistent content
                (lengths differ, non-finite or non-positive scale).
        """
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise ValueError(f"not a FeatureScaler description (expected format {_FORMAT!r})")
        if data.get("version") != _VERSION:
            raise ValueError(
                f"unsupported FeatureScaler version {data.get('version')!r}; expected {_VERSION}"
            )
        try:
            mean = np.asarray(data["mean"], dtype="float64")
            scale = np.asarray(data["scale"], dtype="float64")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"FeatureScaler description lacks numeric mean/scale: {err}") from err
        if mean.ndim != 1 or mean.shape != scale.shape or mean.size == 0:
            raise ValueError(f"mean and scale must be equal-length lists, got {mean.shape} and {scale.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("mean must be finite and scale finite and positive")
        names = data.get("feature_names")
        if names is not None and (not isinstance(names, list) or len(names) != mean.size):
            raise ValueError(f"feature_names must be None or a list of {mean.size} names")
        scaler = cls(clip=data.get("clip"))
        scaler.mean_, scaler.scale_ = mean, scale
        scaler.feature_names = None if names is None else [str(n) for n in names]
        scaler.n_samples_seen = int(data.get("n_samples_seen", 0))
        return scaler

    def __repr__(self) -> str:
        state = f"{self.n_features} features" if self.is_fitted else "not fitted"
        return f"FeatureScaler(clip={self.clip!r}, {state})"
