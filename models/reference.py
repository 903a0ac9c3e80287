"""The training reference of a model version: the raw feature rows its scaler was fitted on.

Drift (:mod:`models.drift`) compares what a served model is asked about with what it was trained
on. "Trained on" is the raw, unscaled feature rows of the training span only, exactly the rows
the scaler was fitted on (no validation or test row). A training run logs them as the artifact
:data:`REFERENCE_ARTIFACT` (:func:`log_reference`, called by
:func:`models.forecaster.tracking.log_training`); :func:`training_features` reads them back, and
for a version registered before runs logged them, rebuilds them from the run's data window and
the store's bars::

    with mlflow.start_run():
        log_reference(train_rows)                      # one column per feature, UTC ``ts`` index
    training_features(run_id, engine=engine)           # the same frame

Rebuilding follows the forecaster's training (:mod:`models.forecaster.training`): features of the
run's feature set on the stored bars of its symbol and timeframe, the first ``min_history - 1``
rows dropped (they still depend on where the series starts), then the rows that the windows of
the training samples read: from ``lookback - 1`` rows before the first training decision bar
(param ``data.train_start``) to the last one (``data.train_end``). Features are history-invariant
after ``min_history`` bars, so the rows are the trained ones even when the store has gained
bars since.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from features import FeatureSet

__all__ = ["REFERENCE_ARTIFACT", "log_reference", "training_features"]

REFERENCE_ARTIFACT = "reference/train_features.parquet"
"""Where a training run logs the raw feature rows of its training span (Parquet, UTC ``ts`` index)."""

_TAGS = ("symbols", "timeframe", "feature_set", "feature_set_version")
_PARAMS = ("data.train_start", "data.train_end", "lookback")
_RETRAIN = "retrain the model with `fks train forecaster`, which logs them with the run"


def log_reference(features: pd.DataFrame) -> None:
    """Log ``features`` (the raw training feature rows, one column per feature) as
    :data:`REFERENCE_ARTIFACT` of the active MLflow run.

    Raises:
        RuntimeError: no MLflow run is active.
        ValueError: ``features`` has no row or no column.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_reference needs an active MLflow run (inside mlflow.start_run())")
    if features.empty:
        raise ValueError("the training features to log as the drift reference are empty")
    frame = features.astype("float64")
    frame.columns = [str(c) for c in frame.columns]
    artifact = PurePosixPath(REFERENCE_ARTIFACT)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / artifact.name
        frame.to_parquet(path)
        mlflow.log_artifact(str(path), str(artifact.parent))


def _download(client: Any, run_id: str) -> pd.DataFrame | None:
    """The logged reference of ``run_id``, or None when it is missing or unreadable."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, REFERENCE_ARTIFACT, tmp)
            return pd.read_parquet(path)
        except (MlflowException, OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
            return None


def training_features(run_id: str, *, engine: Engine | None) -> pd.DataFrame:
    """The raw feature rows the scaler of training run ``run_id`` was fitted on.

    Reads :data:`REFERENCE_ARTIFACT` of the run (current MLflow tracking store); when the run has
    none (versions registered before runs logged it), rebuilds it from the run's tags
    ``symbols``, ``timeframe``, ``feature_set``, ``feature_set_version`` and params
    ``data.train_start``, ``data.train_end``, ``lookback``, on the bars stored in ``engine`` (see
    the module documentation).

    Returns:
        One float column per feature, in the model's order, indexed by bar time (UTC ``ts``);
        several symbols' rows one after the other.

    Raises:
        LookupError: an unknown run, or a run without the artifact that cannot be rebuilt
            (``engine`` is None, or the run lacks the tags or params); the message says what to do.
        ValueError: the feature set is no longer configured or its version differs from the
            run's, or the store lacks bars the training read.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise LookupError(
            f"no MLflow run {run_id!r} in the tracking store {mlflow.get_tracking_uri()}; "
            "check FKS_MLFLOW_TRACKING_URI"
        ) from None
    stored = _download(client, run_id)
    if stored is not None:
        return stored
    if engine is None:
        raise LookupError(
            f"training run {run_id} logged no {REFERENCE_ARTIFACT} and no store was given to rebuild "
            f"it from the run's data window; pass the FKS store (engine) or {_RETRAIN}"
        )
    tags, params = run.data.tags, run.data.params
    missing = [f"tag {k}" for k in _TAGS if not tags.get(k)] + [
        f"param {k}" for k in _PARAMS if k not in params
    ]
    if missing:
        raise LookupError(
            f"training run {run_id} logged no {REFERENCE_ARTIFACT} and lacks {', '.join(missing)} "
            f"to rebuild it from its data window; {_RETRAIN}"
        )
    feature_set = _feature_set(run_id, tags["feature_set"], tags["feature_set_version"])
    try:
        start, end = pd.Timestamp(params["data.train_start"]), pd.Timestamp(params["data.train_end"])
        lookback = int(params["lookback"])
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"training run {run_id} has unreadable data window or lookback params: {exc}"
        ) from None
    start, end = _utc(start), _utc(end)
    symbols = [s.strip() for s in tags["symbols"].split(",") if s.strip()]
    frames = [
        _train_rows(engine, symbol, tags["timeframe"], feature_set, start, end, lookback, run_id)
        for symbol in symbols
    ]
    return frames[0] if len(frames) == 1 else pd.concat(frames)


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _feature_set(run_id: str, name: str, version: str) -> FeatureSet:
    from features import get_feature_set

    try:
        feature_set = get_feature_set(name)
    except ValueError as exc:
        raise ValueError(
            f"training run {run_id} was trained on feature set {name!r}, which cannot be loaded now "
            f"({exc}); its training features cannot be rebuilt: restore the set or {_RETRAIN}"
        ) from None
    if feature_set.version != version:
        raise ValueError(
            f"training run {run_id} was trained on feature set {name!r} version {version}, but the "
            f"configured set is now version {feature_set.version}: its training features cannot be "
            f"rebuilt; restore the set's configuration or {_RETRAIN}"
        )
    return feature_set


def _train_rows(
    engine: Engine,
    symbol: str,
    timeframe: str,
    feature_set: FeatureSet,
    start: pd.Timestamp,
    end: pd.Timestamp,
    lookback: int,
    run_id: str,
) -> pd.DataFrame:
    """The rows of ``symbol`` the training windows read, rebuilt from the store (module docs)."""
    from features import build_features
    from storage import read_bars

    bars = read_bars(engine, symbol, timeframe, end=end + pd.Timedelta(milliseconds=1))
    series = f"{symbol} {timeframe}"
    fix = f"ingest them again (`fks ingest --symbol {symbol}`) or {_RETRAIN}"
    if bars.empty:
        raise ValueError(
            f"the store has no {series} bars up to {end}, which training run {run_id} was trained on; {fix}"
        )
    features = build_features(bars, feature_set, timeframe=timeframe)
    # as training: the rows before min_history still depend on where the series starts
    rows = features.iloc[feature_set.min_history - 1 :]
    first, last = (int(i) for i in rows.index.get_indexer(pd.DatetimeIndex([start, end])))
    if first < 0 or last < 0:
        absent = start if first < 0 else end
        raise ValueError(
            f"the store has no usable {series} bar at {absent} (training run {run_id}'s training "
            f"window is {start} .. {end}); {fix}"
        )
    first -= lookback - 1
    if first < 0:
        need = feature_set.min_history - 1 + lookback - 1
        raise ValueError(
            f"the store has too little {series} history before {start}: training read {need} bars "
            f"before it, the store has {len(bars.loc[:start]) - 1}; {fix}"
        )
    out = rows.iloc[first : last + 1].astype("float64")
    if not np.isfinite(out.to_numpy()).all():
        raise ValueError(
            f"the rebuilt {series} training features of run {run_id} are not all finite; "
            f"validate the bars (`fks validate`) or {_RETRAIN}"
        )
    out.index.name = "ts"
    return out
