"""The forecaster as an MLflow pyfunc: raw OHLCV bars in, forecasts out.

A logged forecaster carries everything between bars and the network, so that what is served is
exactly what was trained (ARCHITECTURE.md section 2, "Models in the registry"):

- artifact ``model``: the network (``models.forecaster.network.save_model``, a ``.keras`` file)
  with two outputs, ``ret`` (the forward log return over ``horizon`` bars) and ``dir`` (the
  probability that it is positive), run through ``models.forecaster.network.predict_lstm``;
- artifact ``preprocess``: a JSON file (see :func:`build_preprocess`) with the feature set's
  configuration and version, the fitted scaler (``models.preprocessing.FeatureScaler``),
  ``lookback``, ``horizon``, ``timeframe``, the feature column order and the warm-up;
- the code of ``config``, ``market``, ``features`` and ``models`` (``code_paths``), so a fresh
  process builds features with the code the model was trained with.

Example::

    import mlflow
    from models.forecaster.pyfunc import build_preprocess, log_forecaster

    with mlflow.start_run():
        preprocess = build_preprocess(feature_set, scaler, lookback=30, horizon=1, timeframe="1d")
        info = log_forecaster(keras_model_path="lstm.keras", preprocess=preprocess,
                              input_example=bars.reset_index().tail(200))
    model = mlflow.pyfunc.load_model(info.model_uri)
    model.predict(raw_bars)   # symbol, ts, forecast_log_return, prob_up, horizon

Input of ``predict``: a frame of raw bars, one row per bar, columns ``ts`` (ISO 8601 strings or
datetimes; naive means UTC), ``open, high, low, close, volume`` (numbers) and optionally
``symbol`` (several series in one frame), all of the model's timeframe (bars of another
timeframe are refused). Each series needs at least :attr:`ForecasterModel.min_bars` bars: the
feature set's ``min_history`` (the bars after which every feature has forgotten where the series
starts, see :mod:`features.history`) plus ``lookback - 1``. Fewer are refused with a message
that says how many; any number at or beyond ``min_bars`` gives the same forecast (to 1e-6
relative), the forecast that training evaluated on the same bar. Output: one row per symbol, in
order of first appearance.

Through MLflow (``mlflow.pyfunc.load_model``, ``mlflow models serve``) the signature is checked
before :meth:`ForecasterModel.predict` runs: ``ts`` and the five numbers may be of any type
(``pandas.read_csv`` gives int64 volumes; strings of numbers are read too), ``symbol`` is
optional. MLflow raises ``MlflowException`` (not ``ValueError``) for a missing column.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo
    from mlflow.models.signature import ModelSignature

    from features import FeatureSet

PREPROCESS_FORMAT = 2
"""Version of the layout of the ``preprocess`` JSON; bumped on incompatible changes (2 added
``min_history``: models of format 1 used features that depend on where the series starts)."""

BAR_INPUT_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume")
"""Columns every input frame must have (``symbol`` is optional)."""

OUTPUT_COLUMNS: tuple[str, ...] = ("symbol", "ts", "forecast_log_return", "prob_up", "horizon")
"""Columns of the output frame, in order."""

CODE_PACKAGES: tuple[str, ...] = ("config", "market", "features", "models")
"""Our packages shipped with the model (``code_paths``)."""

RUNTIME_DISTRIBUTIONS: tuple[str, ...] = (
    "mlflow",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "numba",
    "pydantic",
    "pydantic-settings",
    "PyYAML",
    "exchange-calendars",
)
"""Third-party distributions the model needs at inference; pinned to the installed versions."""

_PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
_PREPROCESS_KEYS: tuple[str, ...] = (
    "format",
    "feature_set",
    "feature_set_version",
    "scaler",
    "lookback",
    "horizon",
    "timeframe",
    "feature_columns",
    "warmup",
    "min_history",
)


# ---------------------------------------------------------------------------------------------
# The preprocess artifact


@dataclass(frozen=True)
class PreprocessSpec:
    """The parsed and checked ``preprocess`` JSON (:func:`build_preprocess`) of a forecaster."""

    feature_set: FeatureSet
    scaler: dict[str, Any]
    lookback: int
    horizon: int
    timeframe: str
    feature_columns: tuple[str, ...]
    warmup: int
    min_history: int

    @property
    def min_bars(self) -> int:
        """Bars each series needs at least: the feature set's history horizon plus ``lookback - 1``,
        so that every row of the window holds its full-history features."""
        return self.min_history + self.lookback - 1


def build_preprocess(
    feature_set: FeatureSet,
    scaler: Any,
    *,
    lookback: int,
    horizon: int,
    timeframe: str,
) -> dict[str, Any]:
    """The ``preprocess`` dict that :func:`log_forecaster` stores beside the Keras model.

    Args:
        feature_set: the feature set the network was trained on.
        scaler: the fitted scaler: a ``models.preprocessing.FeatureScaler`` (anything with
            ``to_dict()``) or its dict; it must have been fitted on the columns of
            ``feature_set`` in their order.
        lookback: bars per input window.
        horizon: bars ahead of the forecast log return.
        timeframe: ``1m``, ``1h`` or ``1d``, the bars the model was trained on.

    Returns:
        A JSON-ready dict: ``format``, ``feature_set`` (``FeatureSet.model_dump``),
        ``feature_set_version``, ``feature_code_version``, ``scaler``, ``lookback``, ``horizon``,
        ``timeframe``, ``feature_columns``, ``warmup`` and ``min_history``.

    Raises:
        ValueError: a bad timeframe, lookback or horizon, a scaler without ``to_dict``, or a
            research-only feature set (one that is not history-invariant cannot be served).
    """
    from features import FEATURE_CODE_VERSION
    from market.bars import Timeframe

    if isinstance(scaler, Mapping):
        scaler_dict = dict(scaler)
    elif callable(getattr(scaler, "to_dict", None)):
        scaler_dict = dict(scaler.to_dict())
    else:
        raise ValueError(
            f"scaler must be a fitted FeatureScaler or its to_dict(), got {type(scaler).__name__}"
        )
    tf = Timeframe.parse(timeframe)
    out = {
        "format": PREPROCESS_FORMAT,
        "feature_set": feature_set.model_dump(mode="json"),
        "feature_set_version": feature_set.version,
        "feature_code_version": FEATURE_CODE_VERSION,
        "scaler": scaler_dict,
        "lookback": lookback,
        "horizon": horizon,
        "timeframe": tf.value,
        "feature_columns": feature_set.columns(tf),
        "warmup": feature_set.warmup,
        "min_history": feature_set.min_history,
    }
    _parse_preprocess(out)
    return out


def _positive_int(payload: Mapping[str, Any], key: str, minimum: int) -> int:
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"preprocess[{key!r}] must be a whole number >= {minimum}, got {value!r}")
    return value


def _parse_preprocess(payload: Mapping[str, Any]) -> PreprocessSpec:
    """Check a ``preprocess`` dict against the installed features code and return it parsed.

    Raises:
        ValueError: a key is missing or malformed, or the features code builds other columns
            (or another version of the feature set) than the model was trained with.
    """
    from pydantic import ValidationError

    from features import FeatureSet
    from market.bars import Timeframe

    if not isinstance(payload, Mapping):
        raise ValueError(
            f"preprocess must be a dict (see models.forecaster.pyfunc.build_preprocess), got {payload!r}"
        )
    missing = [k for k in _PREPROCESS_KEYS if k not in payload]
    if missing:
        raise ValueError(
            f"preprocess lacks {', '.join(missing)}; build it with "
            "models.forecaster.pyfunc.build_preprocess(...)"
        )
    if payload["format"] != PREPROCESS_FORMAT:
        raise ValueError(
            f"preprocess format {payload['format']!r} is not supported (this code reads "
            f"{PREPROCESS_FORMAT}); retrain the model with this code (`fks train forecaster`)"
        )
    try:
        feature_set = FeatureSet.model_validate(payload["feature_set"])
    except ValidationError as exc:
        raise ValueError(f"preprocess['feature_set'] is not a valid feature set: {exc}") from None
    if feature_set.version != payload["feature_set_version"]:
        raise ValueError(
            f"feature set {feature_set.name!r} has version {feature_set.version} with this features code, "
            f"but the model was trained on version {payload['feature_set_version']}: the features code "
            "changed since training; retrain the model (or serve it with the code it was logged with)"
        )
    tf = Timeframe.parse(payload["timeframe"])
    columns = tuple(str(c) for c in payload["feature_columns"])
    built = tuple(feature_set.columns(tf))
    if columns != built:
        raise ValueError(
            f"preprocess['feature_columns'] {list(columns)} differ from the columns feature set "
            f"{feature_set.name!r} builds on {tf.value} bars {list(built)}; rebuild it with build_preprocess"
        )
    warmup = _positive_int(payload, "warmup", 0)
    if warmup != feature_set.warmup:
        raise ValueError(
            f"preprocess['warmup'] is {warmup} but feature set {feature_set.name!r} needs "
            f"{feature_set.warmup} bars of warm-up with this features code; retrain or rebuild the preprocess"
        )
    min_history = _positive_int(payload, "min_history", 1)
    if min_history != feature_set.min_history:
        raise ValueError(
            f"preprocess['min_history'] is {min_history} but feature set {feature_set.name!r} needs "
            f"{feature_set.min_history} bars of history with this features code; "
            "retrain or rebuild the preprocess"
        )
    scaler = payload["scaler"]
    if not isinstance(scaler, Mapping):
        raise ValueError(f"preprocess['scaler'] must be the scaler's to_dict(), got {scaler!r}")
    names = scaler.get("feature_names")
    if names is not None and tuple(str(n) for n in names) != columns:
        raise ValueError(
            f"the scaler was fitted on columns {list(names)} but the feature set builds {list(columns)}; "
            "fit the scaler on build_features(...) of this feature set"
        )
    return PreprocessSpec(
        feature_set=feature_set,
        scaler=dict(scaler),
        lookback=_positive_int(payload, "lookback", 1),
        horizon=_positive_int(payload, "horizon", 1),
        timeframe=tf.value,
        feature_columns=columns,
        warmup=warmup,
        min_history=min_history,
    )


# ---------------------------------------------------------------------------------------------
# Input checks


def _parse_ts(values: pd.Series) -> pd.Series:
    """Bar times as UTC datetimes; ISO 8601 strings or datetimes, naive ones taken as UTC."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        raise ValueError(
            f"column ts must hold ISO 8601 strings or datetimes (e.g. '2020-01-31T00:00:00Z'), "
            f"got {values.dtype} values such as {values.iloc[0]!r}"
        )
    if values.isna().any():
        row = int(np.argmax(values.isna().to_numpy()))
        raise ValueError(f"column ts is empty at row {row}; every bar needs its open time")
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        return pd.Series(pd.to_datetime(values, utc=True), index=values.index)
    parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"column ts at row {row} holds {values.iloc[row]!r}, which is not an ISO 8601 time; send times "
            "like '2020-01-31', '2020-01-31T14:30:00Z' or datetimes (naive ones are taken as UTC)"
        )
    return pd.Series(parsed, index=values.index)


def _parse_number(values: pd.Series, name: str) -> np.ndarray:
    """A price or volume column as finite float64 values."""
    if pd.api.types.is_bool_dtype(values):
        raise ValueError(f"column {name} holds true/false values; send numbers")
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (numbers.isna() & values.notna()).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"column {name} at row {row} holds {values.iloc[row]!r}, which is not a number; "
            "send prices and volumes as numbers"
        )
    out = numbers.to_numpy(dtype="float64", na_value=np.nan)
    missing = ~np.isfinite(out)
    if missing.any():
        row = int(np.argmax(missing))
        raise ValueError(
            f"column {name} has {int(missing.sum())} missing or infinite value(s), the first at row {row}; "
            "send complete bars (drop or repair incomplete ones first)"
        )
    return out


def clean_bar_input(model_input: Any) -> pd.DataFrame:
    """The input as a frame of ``symbol`` (str), ``ts`` (UTC) and float64 OHLCV, rows kept in order.

    Raises:
        ValueError: not a frame, no rows, a missing column or a value that cannot be read.
    """
    if isinstance(model_input, Mapping | list):
        model_input = pd.DataFrame(model_input)
    if not isinstance(model_input, pd.DataFrame):
        raise ValueError(
            f"input must be a DataFrame of bars with columns {', '.join(BAR_INPUT_COLUMNS)} "
            f"(and optionally symbol), got {type(model_input).__name__}"
        )
    frame = model_input
    if "ts" not in frame.columns and isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.rename_axis("ts").reset_index()
    missing = [c for c in BAR_INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"input lacks column(s) {', '.join(missing)}; send raw bars, one row per bar, with columns "
            f"{', '.join(BAR_INPUT_COLUMNS)} and optionally symbol (several series in one frame)"
        )
    if len(frame) == 0:
        raise ValueError("input has no rows; send the most recent bars of each series")
    frame = frame.reset_index(drop=True)
    out: dict[str, Any] = {}
    if "symbol" in frame.columns:
        symbols = frame["symbol"]
        if symbols.isna().any():
            row = int(np.argmax(symbols.isna().to_numpy()))
            raise ValueError(f"column symbol is empty at row {row}; name the series of every bar")
        out["symbol"] = symbols.astype(str).to_numpy(dtype=object)
    else:
        out["symbol"] = np.full(len(frame), "", dtype=object)
    out["ts"] = _parse_ts(frame["ts"])
    for name in _PRICE_COLUMNS:
        out[name] = _parse_number(frame[name], name)
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# The model


def _check_network(model: Any, spec: PreprocessSpec) -> None:
    """Raise ValueError when the network's inputs or outputs do not match the preprocess spec."""
    names = list(getattr(model, "output_names", None) or [])
    if not {"ret", "dir"} <= set(names):
        raise ValueError(f"the Keras model must have outputs named 'ret' and 'dir', it has {names}")
    window = tuple(model.inputs[0].shape[1:])
    expected = (spec.lookback, len(spec.feature_columns))
    if window != expected:
        raise ValueError(
            f"the Keras model takes windows of shape {window} but the preprocess spec builds {expected} "
            "(lookback, features); log the model with the preprocess it was trained with"
        )


@dataclass
class Prepared:
    """What :meth:`ForecasterModel.prepare` returns: per symbol its name, the open time of its
    last bar, its scaled window (rows of ``x``, shape ``(n, lookback, n_features)``, float32) and
    the raw (unscaled) feature row of its last bar (what input drift is measured on)."""

    symbols: list[str]
    last_ts: list[pd.Timestamp]
    x: np.ndarray
    features: list[dict[str, float]]


def _where(symbol: Any) -> str:
    """``"symbol 'X': "`` to start a message about one series (nothing for an unnamed one)."""
    return f"symbol {symbol!r}: " if symbol else ""


def _bars_key(bars: pd.DataFrame) -> str:
    """Checksum of canonical bars: their open times and OHLCV values."""
    digest = hashlib.blake2b(digest_size=16)
    stamps = pd.DatetimeIndex(bars.index).as_unit("ns").asi8
    values = bars.loc[:, list(BAR_INPUT_COLUMNS[1:])].to_numpy("float64")
    digest.update(np.ascontiguousarray(stamps).tobytes())
    digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


class ForecasterModel(PythonModel):
    """The LSTM forecaster with its preprocessing: raw OHLCV bars in, one forecast per symbol out.

    Artifacts (see the module documentation): ``model`` (a ``.keras`` file) and ``preprocess``
    (JSON, :func:`build_preprocess`). :meth:`load_context` loads them; :meth:`predict` turns
    raw bars of each symbol into canonical bars, builds the stored feature set on the stored
    timeframe, takes the last ``lookback`` rows, scales them with the stored scaler and runs the
    network. Log it with :func:`log_forecaster`.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._spec: PreprocessSpec | None = None
        self._scaler: Any = None
        self._network: Any = None
        self._forward: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # What is loaded from the artifacts is never pickled with the model.
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._reset()

    @property
    def min_bars(self) -> int:
        """Bars each series needs at least: the feature set's ``min_history`` plus ``lookback - 1``."""
        return self._loaded()[0].min_bars

    @property
    def preprocess(self) -> PreprocessSpec:
        """The loaded preprocess spec (feature set, scaler dict, lookback, horizon, timeframe...)."""
        return self._loaded()[0]

    def load_context(self, context: Any) -> None:
        """Load the Keras network, the preprocess spec and the scaler from the context's artifacts.

        Raises:
            ValueError: the preprocess JSON does not match the features code or the network.
        """
        from models.forecaster.network import load_model
        from models.preprocessing import FeatureScaler

        artifacts = context.artifacts
        payload = json.loads(Path(artifacts["preprocess"]).read_text(encoding="utf-8"))
        spec = _parse_preprocess(payload)
        network = load_model(artifacts["model"])
        _check_network(network, spec)
        self._scaler = FeatureScaler.from_dict(spec.scaler)
        self._spec = spec
        self._network = network

    def _loaded(self) -> tuple[PreprocessSpec, Any, Any]:
        if self._spec is None or self._network is None:
            raise RuntimeError(
                "ForecasterModel is not loaded; load it with mlflow.pyfunc.load_model(model_uri)"
            )
        return self._spec, self._scaler, self._network

    def windows(self, model_input: pd.DataFrame) -> tuple[list[str], list[pd.Timestamp], np.ndarray]:
        """The scaled input windows of each symbol: ``(symbols, last bar times, X)``.

        ``X`` has shape ``(n_symbols, lookback, n_features)`` (float32), what the network sees.

        Raises:
            ValueError: bad input (see :meth:`predict`).
        """
        prepared = self.prepare(model_input)
        return prepared.symbols, prepared.last_ts, prepared.x

    def prepare(self, model_input: pd.DataFrame, cache: MutableMapping[str, Any] | None = None) -> Prepared:
        """Each symbol's scaled window and the raw feature row it ends on (:class:`Prepared`).

        Args:
            model_input: raw bars with a ``symbol`` column (or one symbol without it).
            cache: optional mapping kept by the caller (the REST service keeps one per loaded
                version): a symbol's result is stored under the checksum of its canonical bars
                and reused when the same bars come again, skipping feature building.

        Raises:
            ValueError: bad input (see :meth:`predict`).
        """
        from market.bars import canonical_bars

        self._loaded()
        frame = clean_bar_input(model_input)
        series: list[tuple[str, pd.DataFrame]] = []
        for symbol in pd.unique(frame["symbol"]):
            rows = frame.loc[frame["symbol"] == symbol, list(BAR_INPUT_COLUMNS)]
            try:
                series.append((str(symbol), canonical_bars(rows)))
            except ValueError as exc:
                raise ValueError(f"{_where(symbol)}{exc}") from None
        return self.prepare_series(series, cache)

    def prepare_series(
        self, series: Sequence[tuple[str, pd.DataFrame]], cache: MutableMapping[str, Any] | None = None
    ) -> Prepared:
        """:meth:`prepare` for series already held as canonical bars (``market.canonical_bars``:
        UTC ``ts`` index, float64 OHLCV, increasing): ``(symbol, bars)`` pairs, in answer order.

        Raises:
            ValueError: bars the model refuses (too few, another timeframe, undefined features).
        """
        spec, _, _ = self._loaded()
        out = Prepared([], [], np.empty((0, spec.lookback, len(spec.feature_columns)), "float32"), [])
        windows: list[np.ndarray] = []
        for symbol, bars in series:
            key = _bars_key(bars) if cache is not None else ""
            hit = cache.get(key) if cache is not None else None
            if hit is None:
                hit = self._window(bars, _where(symbol))
                if cache is not None:
                    cache[key] = hit
            window, raw = hit
            out.symbols.append(str(symbol))
            out.last_ts.append(bars.index[-1])
            windows.append(window)
            out.features.append(raw)
        if windows:
            out.x = np.stack(windows)
        return out

    def _window(self, bars: pd.DataFrame, where: str) -> tuple[np.ndarray, dict[str, float]]:
        """One symbol's scaled last window and its last raw feature row."""
        from features import build_features, infer_timeframe

        spec, scaler, _ = self._loaded()
        sent = infer_timeframe(pd.DatetimeIndex(bars.index)).value
        if sent != spec.timeframe:
            raise ValueError(
                f"{where}these are {sent} bars (from their open times), the model was trained on "
                f"{spec.timeframe} bars; send {spec.timeframe} bars (resample with market.resample_bars)"
            )
        if len(bars) < spec.min_bars:
            raise ValueError(
                f"{where}got {len(bars)} bars, the model needs at least {spec.min_bars} {spec.timeframe} "
                f"bars ({spec.min_history} for its features to be history-invariant + lookback "
                f"{spec.lookback} - 1); send more history"
            )
        try:
            features = build_features(bars, spec.feature_set, timeframe=spec.timeframe)
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
        if tuple(features.columns) != spec.feature_columns:
            raise RuntimeError(
                f"features code built columns {list(features.columns)}, the model expects "
                f"{list(spec.feature_columns)}"
            )
        window = features.iloc[-spec.lookback :]
        holes = window.columns[window.isna().any(axis=0).to_numpy()]
        if len(holes):
            raise ValueError(
                f"{where}features {', '.join(holes)} are undefined in the last {spec.lookback} bars "
                "(flat prices or zero volume over their window?); send more or repaired bars"
            )
        scaled = np.asarray(scaler.transform(window), dtype="float32")
        raw = {str(k): float(v) for k, v in window.iloc[-1].items()}
        return scaled.reshape(spec.lookback, len(spec.feature_columns)), raw

    def background(self, features: pd.DataFrame, *, size: int = 64, seed: int = 0) -> np.ndarray:
        """``size`` scaled windows drawn (seeded) from raw training feature rows ``features``
        (consecutive rows, the model's columns): the reference an explanation is measured from.

        Raises:
            ValueError: ``features`` lacks the model's columns or has fewer rows than ``lookback``.
        """
        spec, scaler, _ = self._loaded()
        missing = [c for c in spec.feature_columns if c not in features.columns]
        if missing:
            raise ValueError(f"training features lack the model's columns {missing}")
        rows = features.loc[:, list(spec.feature_columns)].dropna()
        if len(rows) < spec.lookback:
            raise ValueError(f"need at least {spec.lookback} training feature rows, got {len(rows)}")
        scaled = np.asarray(scaler.transform(rows), dtype="float32")
        starts = np.arange(len(scaled) - spec.lookback + 1)
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(starts, min(size, len(starts)), replace=False))
        return np.stack([scaled[i : i + spec.lookback] for i in pick])

    def explain(self, window: np.ndarray, background: np.ndarray, *, seed: int = 0) -> pd.Series:
        """SHAP attributions of one window's forecast log return to the features (signed, summed
        over the window, sorted by size), from the model's own network (:func:`models.explain.explain_one`);
        ``attrs`` hold ``base_value`` and ``prediction``."""
        from models.explain import explain_one

        spec, _, network = self._loaded()
        return explain_one(network, background, window, list(spec.feature_columns), seed=seed)

    def forward(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network on scaled windows from :meth:`windows`, as one compiled call (the REST
        service's fast path): ``(forecast_log_return, prob_up)``, as :meth:`predict` computes them.

        Raises:
            ValueError: windows of another shape than ``(n, lookback, n_features)``.
        """
        from models.forecaster.network import compiled_forward

        _, _, network = self._loaded()
        if self._forward is None:
            self._forward = compiled_forward(network)
        result: tuple[np.ndarray, np.ndarray] = self._forward(windows)
        return result

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Forecast each series of raw bars in ``model_input``.

        Args:
            context: unused (MLflow passes the model context).
            model_input: raw bars, one row per bar: ``ts`` (ISO 8601 strings or datetimes; naive
                is UTC), ``open, high, low, close, volume`` (numbers), optionally ``symbol``.
                Rows may come in any order; each series needs at least :attr:`min_bars` bars.
            params: unused.

        Returns:
            One row per symbol (order of first appearance): ``symbol`` (``""`` without a
            symbol column), ``ts`` (the last bar's open time, ISO 8601 UTC),
            ``forecast_log_return`` (forward log return over ``horizon`` bars),
            ``prob_up`` (probability that it is positive, in [0, 1]), ``horizon`` (bars).

        Raises:
            ValueError: a missing column, a time or number that cannot be read, missing values,
                repeated bar times, non-positive closes, or fewer bars than needed (the message
                says how many).
        """
        from models.forecaster.network import predict_lstm

        spec, _, network = self._loaded()
        symbols, last_ts, X = self.windows(model_input)
        forecast, prob_up = predict_lstm(network, X)
        return pd.DataFrame(
            {
                "symbol": pd.Series(symbols, dtype=object),
                "ts": pd.Series([t.isoformat() for t in last_ts], dtype=object),
                "forecast_log_return": forecast,
                "prob_up": prob_up,
                "horizon": np.full(len(symbols), spec.horizon, dtype="int64"),
            }
        )


# ---------------------------------------------------------------------------------------------
# Logging


def _example_frame(input_example: pd.DataFrame) -> pd.DataFrame:
    """The input example as MLflow stores it: ``ts`` as ISO 8601 UTC strings, float64 OHLCV."""
    if not isinstance(input_example, pd.DataFrame):
        raise ValueError(f"input_example must be a DataFrame of raw bars, got {type(input_example).__name__}")
    clean = clean_bar_input(input_example)
    out = pd.DataFrame({"ts": clean["ts"].map(lambda t: t.isoformat()).astype(object)})
    for name in _PRICE_COLUMNS:
        out[name] = clean[name]
    if "symbol" in input_example.columns:
        out["symbol"] = clean["symbol"].astype(object)
    return out


def _signature(example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """The inferred signature with ``ts`` of any type (strings or datetimes) and ``symbol`` optional."""
    from mlflow.models import infer_signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, DataType, Schema, TensorSpec

    with warnings.catch_warnings():
        # The integer ``horizon`` output is never missing; MLflow's hint about integers is noise.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        inferred = infer_signature(example, output)
    # Numbers are "any": MLflow would refuse int64 volumes (as read by pandas.read_csv) for double
    # columns; the model reads ints, floats and numeric strings itself and says what is wrong.
    inputs: list[ColSpec | TensorSpec] = [ColSpec(AnyType(), "ts")]
    inputs += [ColSpec(AnyType(), name) for name in _PRICE_COLUMNS]
    inputs.append(ColSpec(DataType.string, "symbol", required=False))
    return ModelSignature(inputs=Schema(inputs), outputs=inferred.outputs)


def code_paths(packages: Sequence[str] = CODE_PACKAGES) -> list[str]:
    """Directories of our ``packages`` that a logged model ships (a forecaster: ``CODE_PACKAGES``)."""
    paths = []
    for package in packages:
        module = importlib.import_module(package)
        paths.append(str(Path(module.__file__ or "").resolve().parent))
    return paths


def pip_requirements(distributions: Sequence[str] = RUNTIME_DISTRIBUTIONS) -> list[str]:
    """The third-party ``distributions`` a model needs (a forecaster: ``RUNTIME_DISTRIBUTIONS``),
    pinned to the installed versions (those not installed are left out)."""
    pins = []
    for dist in distributions:
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def log_forecaster(
    *,
    keras_model_path: str | os.PathLike[str],
    preprocess: Mapping[str, Any],
    input_example: pd.DataFrame,
    name: str = "model",
) -> ModelInfo:
    """Log the forecaster as an MLflow pyfunc (:class:`ForecasterModel`) in the active run.

    The model is first loaded and run on ``input_example`` here, so a model whose network,
    preprocess spec and example do not fit together is refused before anything is logged; its
    output gives the signature. The logged model ships the code of ``CODE_PACKAGES`` and pins
    :data:`RUNTIME_DISTRIBUTIONS`, so ``mlflow.pyfunc.load_model(uri)`` (and
    ``mlflow models serve --env-manager local``) works in a fresh process.

    Args:
        keras_model_path: the trained network, a ``.keras`` file with outputs ``ret``, ``dir``.
        preprocess: :func:`build_preprocess` of the feature set, scaler, lookback, horizon and
            timeframe the network was trained with.
        input_example: raw bars of one or more series (as :meth:`ForecasterModel.predict`
            takes them), at least ``min_history + lookback - 1`` per series; stored with the model.
        name: the model's name in the run.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri`` to load or register it).

    Raises:
        RuntimeError: no active run.
        ValueError: a missing or non-``.keras`` file, a bad preprocess dict, a network that does not
            match it, or an input example the model cannot predict on.
    """
    if mlflow.active_run() is None:
        raise RuntimeError(
            "log_forecaster logs into the active run; call it inside `with mlflow.start_run():`"
        )
    model_path = Path(keras_model_path)
    if not model_path.is_file() or model_path.suffix != ".keras":
        raise ValueError(f"keras_model_path must be an existing .keras file, got {str(model_path)!r}")
    _parse_preprocess(preprocess)
    example = _example_frame(input_example)
    with tempfile.TemporaryDirectory(prefix="fks-pyfunc-") as tmp:
        preprocess_path = Path(tmp) / "preprocess.json"
        preprocess_path.write_text(json.dumps(dict(preprocess), indent=2, sort_keys=True), encoding="utf-8")
        artifacts = {"model": str(model_path.resolve()), "preprocess": str(preprocess_path)}
        probe = ForecasterModel()
        probe.load_context(PythonModelContext(artifacts=artifacts, model_config={}))
        output = probe.predict(None, example)
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=name,
            python_model=ForecasterModel(),
            artifacts=artifacts,
            signature=_signature(example, output),
            input_example=example,
            code_paths=code_paths(),
            pip_requirements=pip_requirements(),
        )
    return info
