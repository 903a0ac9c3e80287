"""Features: feature sets built from bars, forecasting labels, sequence windows.

Pure numpy/pandas, no I/O (``config.feature_sets`` reads the feature-sets file)::

    from features import build_features, get_feature_set, make_labels, align_features_labels
    fs = get_feature_set("default")
    X = build_features(bars, fs)                 # one column per indicator output
    y = make_labels(bars, horizon=1)             # fwd_log_ret_1, fwd_dir_1
    X, y = align_features_labels(X, y, fs.warmup)
    windows, labels = make_windows(X.to_numpy(), lookback=30, y=y["fwd_dir_1"].to_numpy())
"""

from features.build import build_features, infer_timeframe
from features.history import history_mismatch
from features.labels import align_features_labels, make_labels
from features.spec import (
    FEATURE_CODE_VERSION,
    FeatureSet,
    IndicatorSpec,
    feature_set_names,
    get_feature_set,
)
from features.windows import make_windows

__all__ = [
    "FEATURE_CODE_VERSION",
    "FeatureSet",
    "IndicatorSpec",
    "align_features_labels",
    "build_features",
    "feature_set_names",
    "get_feature_set",
    "history_mismatch",
    "infer_timeframe",
    "make_labels",
    "make_windows",
]
