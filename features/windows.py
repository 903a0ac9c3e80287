"""Sequence windows for sequence models (LSTM): overlapping views, no copy."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def make_windows(
    X: np.ndarray, lookback: int, y: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut a feature matrix into overlapping windows of ``lookback`` rows.

    Window ``i`` is ``X[i : i + lookback]``; its label is the label of its last row,
    ``y[i + lookback - 1]``, so a window never sees a row after the one it is labelled by.

    Args:
        X: features, shape ``(n, f)``, rows in time order.
        lookback: rows per window, ``1 <= lookback <= n``.
        y: optional labels, shape ``(n,)`` or ``(n, k)``, row-aligned with ``X``.

    Returns:
        ``(windows, labels)``: ``windows`` of shape ``(n - lookback + 1, lookback, f)`` is a
        read-only *view* of ``X`` (no copy; ``np.shares_memory(windows, X)``); ``labels`` is
        the view ``y[lookback - 1:]`` (None without ``y``). Copy (``np.array(windows)``) before
        writing or when ``X`` may change.

    Raises:
        ValueError: ``X`` is not 2-D, ``lookback`` is not an integer in ``[1, n]``, or ``y``
            does not have ``n`` rows.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (rows, features), got shape {X.shape}")
    n = X.shape[0]
    if isinstance(lookback, bool) or not isinstance(lookback, int | np.integer):
        raise ValueError(f"lookback must be a whole number of rows, got {lookback!r}")
    if not 1 <= lookback <= n:
        raise ValueError(f"lookback must be between 1 and the number of rows ({n}), got {lookback}")
    windows = sliding_window_view(X, int(lookback), axis=0).transpose(0, 2, 1)
    if y is None:
        return windows, None
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"y must have one row per row of X ({n}), got shape {y.shape}")
    return windows, y[lookback - 1 :]
