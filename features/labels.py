"""Forecasting labels: forward returns over a horizon, and their alignment with features.

The row at bar ``t`` holds what happens *after* ``t``: ``fwd_log_ret_h[t] = log(close[t+h] /
close[t])``. Labels are targets only; they never enter a feature frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon must be a whole number of bars >= 1, got {horizon!r}")
    return int(horizon)


def make_labels(bars: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Forward log return and direction over ``horizon`` bars.

    Args:
        bars: canonical bar frame (only ``close`` is used; positive prices).
        horizon: bars ahead, >= 1.

    Returns:
        A frame with the index of ``bars`` and float64 columns

        * ``fwd_log_ret_{h}``: ``log(close[t+h] / close[t])``, information from bars
          ``t+1 .. t+h`` (and ``close[t]``) only;
        * ``fwd_dir_{h}``: 1.0 when that return is > 0, 0.0 otherwise, NaN where it is NaN.

        The last ``h`` rows are NaN (no future yet) and are never filled.

    Raises:
        ValueError: ``horizon`` < 1 or not an integer, or ``bars`` has no ``close``.
    """
    h = _check_horizon(horizon)
    if "close" not in bars.columns:
        raise ValueError("bars lack a 'close' column; labels are built from a canonical bar frame")
    close = bars["close"].to_numpy(dtype="float64")
    ret = np.full(len(close), np.nan)
    if len(close) > h:
        with np.errstate(divide="ignore", invalid="ignore"):
            ret[:-h] = np.log(close[h:] / close[:-h])
    direction = np.where(np.isnan(ret), np.nan, (ret > 0).astype("float64"))
    return pd.DataFrame({f"fwd_log_ret_{h}": ret, f"fwd_dir_{h}": direction}, index=bars.index)


def align_features_labels(
    features: pd.DataFrame, labels: pd.DataFrame, warmup: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows usable for training: past the warm-up and with every label present.

    Drops the first ``warmup`` rows (indicator warm-up, see ``FeatureSet.warmup``) and every
    row where a label is NaN (the last ``horizon`` rows); nothing is filled. A NaN feature after
    the warm-up is kept (``expectations.validate_features`` reports it).

    Args:
        features: the frame of ``build_features``.
        labels: the frame of :func:`make_labels` on the same bars (same index).
        warmup: leading rows to drop, >= 0.

    Returns:
        ``(features, labels)`` restricted to the same rows, with the same index.

    Raises:
        ValueError: ``warmup`` is negative, or the two frames are not indexed alike.
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int | np.integer) or warmup < 0:
        raise ValueError(f"warmup must be a whole number of rows >= 0, got {warmup!r}")
    if not features.index.equals(labels.index):
        raise ValueError(
            f"features ({len(features)} rows) and labels ({len(labels)} rows) are not indexed alike; "
            "build both from the same bars"
        )
    keep = np.array(labels.notna().all(axis=1).to_numpy(), dtype=bool)
    keep[: int(warmup)] = False
    return features.loc[keep], labels.loc[keep]
