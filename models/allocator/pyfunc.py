"""The allocator as an MLflow pyfunc: raw bars of the universe and the current weights in, target
weights out.

A logged allocator carries everything between bars and the policy, so that what is served is
exactly what was trained (ARCHITECTURE.md section 2, "Models in the registry"):

- artifact ``policy``: the Stable-Baselines3 policy (``PPO`` or ``SAC``, a ``.zip`` of
  ``model.save``), run deterministically on the CPU;
- artifact ``vecnorm``: the ``VecNormalize`` statistics of the observations (a pickle of
  ``VecNormalize.save``), frozen at training's best validation point;
- artifact ``spec``: a JSON file (see :func:`build_spec`) with the feature set's configuration
  and version, the fitted scaler (:class:`models.preprocessing.FeatureScaler`), ``window``, the
  timeframe, the universe (asset order) and the environment's options (long only or long/short,
  ``max_weight``, ``gross_cap``, ``rebalance_band``, costs);
- the code of ``config``, ``market``, ``features``, ``envs`` and ``models`` (``code_paths``), so
  a fresh process builds features and observations with the code the policy was trained with.

Input of ``predict``: a frame of raw bars, one row per bar, columns ``symbol`` (every symbol of
the universe, no other), ``ts`` (ISO 8601 strings or datetimes; naive means UTC),
``open, high, low, close, volume`` (numbers), all of the model's timeframe, and optionally
``weight``: the current weight of that symbol in the account (a fraction of equity; the value on
the symbol's last row counts, missing or NaN counts 0; what the assets do not hold is cash, so
no ``weight`` column means all cash). Each symbol needs at least :attr:`AllocatorModel.min_bars`
bars: the feature set's ``min_history`` plus ``window - 1``; fewer are refused with a message that
says how many. The features are history-invariant, so any history at or beyond ``min_bars`` gives
the observation training built on the same bar (to 1e-6 relative).

The bars go on one calendar as in training (:func:`envs.align_assets`: a closed market's row
carries its last bar), the last ``window`` rows of features are scaled with the training scaler,
the current weights (assets, then cash) are appended, the observation is normalised with the
frozen statistics, and the policy's action becomes weights by the environment's own rule
(:func:`envs.portfolio.action_weights`). The answer is the policy's *desired* weights at the
close of the last common bar: the account applies the rebalancing band and closed markets (as
the environment does) when it trades them at the next open.

Output: one row per symbol of the universe, in its order, then ``CASH``: ``symbol``, ``ts`` (the
decision bar's open time, ISO 8601 UTC) and ``weight`` (fractions of equity; they sum to 1 with
cash).
"""

from __future__ import annotations

import json
import pickle
import tempfile
from collections.abc import Mapping, Sequence
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

__all__ = [
    "CASH",
    "CODE_PACKAGES",
    "OUTPUT_COLUMNS",
    "RUNTIME_DISTRIBUTIONS",
    "SPEC_FORMAT",
    "AllocatorModel",
    "AllocatorSpec",
    "build_spec",
    "log_allocator",
]

SPEC_FORMAT = 1
"""Version of the layout of the ``spec`` JSON; bumped on incompatible changes."""

CASH = "CASH"
"""The output row of the cash weight."""

OUTPUT_COLUMNS: tuple[str, ...] = ("symbol", "ts", "weight")
"""Columns of the output frame, in order."""

CODE_PACKAGES: tuple[str, ...] = ("config", "market", "features", "envs", "models")
"""Our packages shipped with the model (``code_paths``)."""

RUNTIME_DISTRIBUTIONS: tuple[str, ...] = (
    "mlflow",
    "stable-baselines3",
    "gymnasium",
    "torch",
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
_SPEC_KEYS: tuple[str, ...] = (
    "format",
    "algo",
    "feature_set",
    "feature_set_version",
    "scaler",
    "window",
    "timeframe",
    "universe",
    "feature_columns",
    "min_history",
    "long_short",
    "max_weight",
    "gross_cap",
    "rebalance_band",
)
_ALGOS = ("ppo", "sac")


@dataclass(frozen=True)
class AllocatorSpec:
    """The parsed and checked ``spec`` JSON (:func:`build_spec`) of an allocator."""

    algo: str
    feature_set: FeatureSet
    scaler: dict[str, Any]
    window: int
    timeframe: str
    universe: tuple[str, ...]
    feature_columns: tuple[str, ...]
    min_history: int
    long_short: bool
    max_weight: float
    gross_cap: float
    rebalance_band: float
    costs: dict[str, float]

    @property
    def min_bars(self) -> int:
        """Bars each symbol needs at least: the feature set's history horizon plus ``window - 1``."""
        return self.min_history + self.window - 1


def build_spec(
    feature_set: FeatureSet,
    scaler: Any,
    *,
    algo: str,
    window: int,
    timeframe: str,
    universe: Sequence[str],
    long_short: bool,
    max_weight: float,
    gross_cap: float,
    rebalance_band: float,
    costs: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The ``spec`` dict that :func:`log_allocator` stores beside the policy.

    Args:
        feature_set: the feature set the observations were built from.
        scaler: the scaler fitted on the training rows (a ``FeatureScaler`` or its ``to_dict()``).
        algo: ``ppo`` or ``sac``.
        window: feature rows per asset in an observation.
        timeframe: ``1m``, ``1h`` or ``1d``.
        universe: the assets, in the order of the observation and the action.
        long_short, max_weight, gross_cap, rebalance_band: the environment's options.
        costs: the costs trained with (``commission_bps``, ``slippage_bps``, ``min_fee``), for
            the record.

    Raises:
        ValueError: a bad value, a scaler without ``to_dict``, or a research-only feature set.
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
        "format": SPEC_FORMAT,
        "algo": algo,
        "feature_set": feature_set.model_dump(mode="json"),
        "feature_set_version": feature_set.version,
        "feature_code_version": FEATURE_CODE_VERSION,
        "scaler": scaler_dict,
        "window": window,
        "timeframe": tf.value,
        "universe": list(universe),
        "feature_columns": feature_set.columns(tf),
        "min_history": feature_set.min_history,
        "long_short": bool(long_short),
        "max_weight": float(max_weight),
        "gross_cap": float(gross_cap),
        "rebalance_band": float(rebalance_band),
        "costs": dict(costs or {}),
    }
    parse_spec(out)
    return out


def parse_spec(payload: Mapping[str, Any]) -> AllocatorSpec:
    """Check a ``spec`` dict against the installed features code and return it parsed.

    Raises:
        ValueError: a key is missing or malformed, or the features code builds other columns (or
            another version of the feature set) than the policy was trained with.
    """
    from pydantic import ValidationError

    from features import FeatureSet
    from market.bars import Timeframe

    if not isinstance(payload, Mapping):
        raise ValueError(f"spec must be a dict (see models.allocator.pyfunc.build_spec), got {payload!r}")
    missing = [k for k in _SPEC_KEYS if k not in payload]
    if missing:
        raise ValueError(f"spec lacks {', '.join(missing)}; build it with models.allocator.pyfunc.build_spec")
    if payload["format"] != SPEC_FORMAT:
        raise ValueError(
            f"spec format {payload['format']!r} is not supported (this code reads {SPEC_FORMAT}); retrain "
            "the allocator with this code (`fks train allocator`)"
        )
    if payload["algo"] not in _ALGOS:
        raise ValueError(f"spec['algo'] must be one of {', '.join(_ALGOS)}, got {payload['algo']!r}")
    try:
        feature_set = FeatureSet.model_validate(payload["feature_set"])
    except ValidationError as exc:
        raise ValueError(f"spec['feature_set'] is not a valid feature set: {exc}") from None
    if feature_set.version != payload["feature_set_version"]:
        raise ValueError(
            f"feature set {feature_set.name!r} has version {feature_set.version} with this features code, "
            f"but the allocator was trained on version {payload['feature_set_version']}: retrain it (or "
            "serve it with the code it was logged with)"
        )
    tf = Timeframe.parse(payload["timeframe"])
    columns = tuple(str(c) for c in payload["feature_columns"])
    if columns != tuple(feature_set.columns(tf)):
        raise ValueError(
            f"spec['feature_columns'] {list(columns)} differ from the columns feature set "
            f"{feature_set.name!r} builds on {tf.value} bars; rebuild the spec with build_spec"
        )
    min_history = payload["min_history"]
    if min_history != feature_set.min_history:
        raise ValueError(
            f"spec['min_history'] is {min_history} but feature set {feature_set.name!r} needs "
            f"{feature_set.min_history} bars with this features code; retrain the allocator"
        )
    window = payload["window"]
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"spec['window'] must be a whole number >= 1, got {window!r}")
    universe = tuple(str(s) for s in payload["universe"])
    if len(universe) < 1 or len(set(universe)) != len(universe) or CASH in universe:
        raise ValueError(f"spec['universe'] must list distinct symbols (not {CASH}), got {list(universe)}")
    scaler = payload["scaler"]
    if not isinstance(scaler, Mapping):
        raise ValueError(f"spec['scaler'] must be the scaler's to_dict(), got {scaler!r}")
    return AllocatorSpec(
        algo=str(payload["algo"]),
        feature_set=feature_set,
        scaler=dict(scaler),
        window=window,
        timeframe=tf.value,
        universe=universe,
        feature_columns=columns,
        min_history=int(min_history),
        long_short=bool(payload["long_short"]),
        max_weight=float(payload["max_weight"]),
        gross_cap=float(payload["gross_cap"]),
        rebalance_band=float(payload["rebalance_band"]),
        costs={str(k): float(v) for k, v in dict(payload.get("costs") or {}).items()},
    )


def _current_weights(model_input: pd.DataFrame, symbols: np.ndarray, universe: tuple[str, ...]) -> np.ndarray:
    """Each asset's current weight (its last row's ``weight``; 0 when absent) and cash's, ``(N + 1,)``."""
    weights = np.zeros(len(universe) + 1)
    if "weight" not in model_input.columns:
        weights[-1] = 1.0
        return weights
    column = model_input["weight"].reset_index(drop=True)
    if pd.api.types.is_bool_dtype(column):
        raise ValueError("column weight holds true/false values; send fractions of equity")
    values = pd.to_numeric(column, errors="coerce")
    bad = (values.isna() & column.notna()).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"column weight at row {row} holds {column.iloc[row]!r}, which is not a number")
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    if np.isinf(numbers).any():
        raise ValueError("column weight holds an infinite value; send fractions of equity")
    for j, symbol in enumerate(universe):
        rows = np.flatnonzero(symbols == symbol)
        value = numbers[rows[-1]] if len(rows) else np.nan
        weights[j] = 0.0 if np.isnan(value) else value
    weights[-1] = 1.0 - weights[:-1].sum()
    return weights


class AllocatorModel(PythonModel):
    """The RL allocator with its preprocessing: raw bars of the universe and the current weights in,
    target weights out (see the module documentation). Log it with :func:`log_allocator`."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._spec: AllocatorSpec | None = None
        self._scaler: Any = None
        self._policy: Any = None
        self._vecnorm: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # What is loaded from the artifacts is never pickled with the model.
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._reset()

    @property
    def spec(self) -> AllocatorSpec:
        """The loaded spec (feature set, scaler, window, universe, environment options)."""
        return self._loaded()[0]

    @property
    def min_bars(self) -> int:
        """Bars each symbol needs at least: the feature set's ``min_history`` plus ``window - 1``."""
        return self.spec.min_bars

    @property
    def universe(self) -> tuple[str, ...]:
        """The symbols the model allocates between, in its order."""
        return self.spec.universe

    @property
    def timeframe(self) -> str:
        """The bars' timeframe (``1d``, ``1h``): what the REST service reads of stored bars."""
        return self.spec.timeframe

    def load_context(self, context: Any) -> None:
        """Load the spec, the scaler, the policy and the frozen observation statistics.

        Raises:
            ValueError: the spec does not match the features code, or the policy's observation
                size does not match the spec.
        """
        from models.preprocessing import FeatureScaler

        artifacts = context.artifacts
        spec = parse_spec(json.loads(Path(artifacts["spec"]).read_text(encoding="utf-8")))
        from stable_baselines3 import PPO, SAC

        algorithm: type[PPO] | type[SAC] = PPO if spec.algo == "ppo" else SAC
        policy = algorithm.load(
            artifacts["policy"],
            device="cpu",
            custom_objects={"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0},
        )
        with open(artifacts["vecnorm"], "rb") as handle:
            vecnorm = pickle.load(handle)  # our own artifact, logged with the policy
        vecnorm.training = False
        vecnorm.norm_reward = False
        n, f = len(spec.universe), len(spec.feature_columns)
        size = spec.window * n * f + n + 1
        shape = tuple(policy.observation_space.shape or ())
        if shape != (size,) or tuple(vecnorm.obs_rms.mean.shape) != (size,):
            raise ValueError(
                f"the policy observes {shape} values but the spec builds {size} (window {spec.window} x "
                f"{n} assets x {f} features + {n + 1} weights); log the policy with its own spec"
            )
        self._scaler = FeatureScaler.from_dict(spec.scaler)
        self._spec, self._policy, self._vecnorm = spec, policy, vecnorm

    def _loaded(self) -> tuple[AllocatorSpec, Any, Any, Any]:
        if self._spec is None or self._policy is None:
            raise RuntimeError(
                "AllocatorModel is not loaded; load it with mlflow.pyfunc.load_model(model_uri)"
            )
        return self._spec, self._scaler, self._policy, self._vecnorm

    def observation(self, model_input: pd.DataFrame) -> tuple[pd.Timestamp, np.ndarray]:
        """The decision bar and the raw observation (``float32``, before normalisation) of ``model_input``.

        Raises:
            ValueError: bad input (see :meth:`predict`).
        """
        from envs.data import align_assets
        from features import infer_timeframe
        from market.bars import canonical_bars
        from models.forecaster.pyfunc import clean_bar_input

        spec, scaler, _, _ = self._loaded()
        if isinstance(model_input, pd.DataFrame) and "symbol" not in model_input.columns:
            raise ValueError(
                f"input lacks column symbol; send the bars of every symbol of the universe "
                f"({', '.join(spec.universe)}) in one frame with a symbol column"
            )
        frame = clean_bar_input(model_input)
        symbols = frame["symbol"].to_numpy(dtype=object)
        sent = list(pd.unique(symbols))
        missing = [s for s in spec.universe if s not in sent]
        extra = [s for s in sent if s not in spec.universe]
        if missing or extra:
            parts = [
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(extra)}" if extra else "",
            ]
            raise ValueError(
                f"the allocator's universe is {', '.join(spec.universe)}; the input has "
                f"{'; '.join(p for p in parts if p)}: send bars of exactly these symbols"
            )
        bars: dict[str, pd.DataFrame] = {}
        for symbol in spec.universe:
            rows = frame.loc[symbols == symbol, ["ts", *_PRICE_COLUMNS]]
            try:
                series = canonical_bars(rows)
            except ValueError as exc:
                raise ValueError(f"symbol {symbol!r}: {exc}") from None
            got = infer_timeframe(pd.DatetimeIndex(series.index)).value if len(series) > 1 else None
            if got is not None and got != spec.timeframe:
                raise ValueError(
                    f"symbol {symbol!r}: these are {got} bars (from their open times), the allocator was "
                    f"trained on {spec.timeframe} bars; send {spec.timeframe} bars (resample with "
                    "market.resample_bars)"
                )
            if len(series) < spec.min_bars:
                raise ValueError(
                    f"symbol {symbol!r}: got {len(series)} bars, the allocator needs at least "
                    f"{spec.min_bars} {spec.timeframe} bars per symbol (min_bars: {spec.min_history} for its "
                    f"features to be history-invariant + window {spec.window} - 1); send more history"
                )
            bars[symbol] = series
        try:
            aligned = align_assets(bars, spec.feature_set, timeframe=spec.timeframe)
        except ValueError as exc:
            raise ValueError(f"the universe's bars cannot be aligned: {exc}") from None
        if len(aligned.index) < spec.window:
            raise ValueError(
                f"the symbols share {len(aligned.index)} complete rows, the allocator needs {spec.window}: "
                "send at least min_bars bars of each symbol ending at the same time"
            )
        raw = aligned.features[-spec.window :]  # (W, N, F)
        if not np.isfinite(raw).all():
            w, a, c = np.argwhere(~np.isfinite(raw))[0]
            raise ValueError(
                f"symbol {spec.universe[a]!r}: feature {spec.feature_columns[c]!r} is undefined at "
                f"{aligned.index[len(aligned.index) - spec.window + w]} (flat prices or zero volume?); "
                "send more or repaired bars"
            )
        f = len(spec.feature_columns)
        scaled = np.asarray(scaler.transform(raw.reshape(-1, f)), dtype=np.float64).astype(np.float32)
        weights = np.clip(_current_weights(model_input, symbols, spec.universe), -10.0, 10.0)
        obs = np.concatenate([scaled.reshape(-1), weights.astype(np.float32)])
        return aligned.index[-1], obs

    def weights(self, obs: np.ndarray) -> np.ndarray:
        """The policy's weights (assets, then cash) for raw observations ``(n, obs_size)``: normalised
        with the frozen statistics, the deterministic action, the environment's rule."""
        from envs.portfolio import action_weights

        spec, _, policy, vecnorm = self._loaded()
        actions, _ = policy.predict(vecnorm.normalize_obs(np.atleast_2d(obs)), deterministic=True)
        out = np.empty((len(actions), len(spec.universe) + 1))
        for i, action in enumerate(np.asarray(actions, dtype=np.float64)):
            assets = action_weights(
                action, long_short=spec.long_short, max_weight=spec.max_weight, gross_cap=spec.gross_cap
            )
            out[i, :-1] = assets
            out[i, -1] = 1.0 - assets.sum()
        return out

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Target weights for the universe at the close of the last common bar of ``model_input``.

        Args:
            context: unused (MLflow passes the model context).
            model_input: raw bars of every symbol of the universe (see the module documentation),
                with an optional ``weight`` column (the current weights; none: all cash).
            params: unused.

        Returns:
            One row per symbol in the universe's order, then ``CASH``: ``symbol``, ``ts`` (the
            decision bar, ISO 8601 UTC), ``weight``.

        Raises:
            ValueError: a missing column, a missing or unknown symbol, a time, number or weight
                that cannot be read, bars of another timeframe, or fewer than ``min_bars`` bars of
                a symbol (the message says how many).
        """
        spec = self.spec
        ts, obs = self.observation(model_input)
        weights = self.weights(obs)[0]
        names = [*spec.universe, CASH]
        return pd.DataFrame(
            {
                "symbol": pd.Series(names, dtype=object),
                "ts": pd.Series([ts.isoformat()] * len(names), dtype=object),
                "weight": weights,
            }
        )


# ---------------------------------------------------------------------------------------------
# Logging


def _example_frame(input_example: pd.DataFrame) -> pd.DataFrame:
    """The input example as MLflow stores it: ``ts`` as ISO 8601 strings, float64 prices, ``weight``."""
    from models.forecaster.pyfunc import clean_bar_input

    clean = clean_bar_input(input_example)
    out = pd.DataFrame({"symbol": clean["symbol"].astype(object)})
    out["ts"] = clean["ts"].map(lambda t: t.isoformat()).astype(object)
    for name in _PRICE_COLUMNS:
        out[name] = clean[name]
    if "weight" in input_example.columns:
        out["weight"] = pd.to_numeric(input_example["weight"].reset_index(drop=True)).astype("float64")
    return out


def _signature(example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    from mlflow.models import infer_signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, DataType, Schema, TensorSpec

    inferred = infer_signature(example.drop(columns=["weight"], errors="ignore"), output)
    inputs: list[ColSpec | TensorSpec] = [ColSpec(DataType.string, "symbol"), ColSpec(AnyType(), "ts")]
    inputs += [ColSpec(AnyType(), name) for name in _PRICE_COLUMNS]
    inputs.append(ColSpec(AnyType(), "weight", required=False))
    return ModelSignature(inputs=Schema(inputs), outputs=inferred.outputs)


def log_allocator(
    *,
    policy_path: str | Path,
    vecnorm_path: str | Path,
    spec: Mapping[str, Any],
    input_example: pd.DataFrame,
    name: str = "model",
) -> ModelInfo:
    """Log the allocator as an MLflow pyfunc (:class:`AllocatorModel`) in the active run.

    The model is first loaded and run on ``input_example`` here, so a policy, statistics, spec and
    example that do not fit together are refused before anything is logged; its output gives the
    signature. The logged model ships the code of :data:`CODE_PACKAGES` and pins
    :data:`RUNTIME_DISTRIBUTIONS`.

    Args:
        policy_path: the Stable-Baselines3 ``.zip`` (``model.save``).
        vecnorm_path: the ``VecNormalize`` pickle (``vecnorm.save``).
        spec: :func:`build_spec` of what the policy was trained with.
        input_example: raw bars of every symbol (``min_bars`` each at least), optionally with
            ``weight``; stored with the model.
        name: the model's name in the run.

    Raises:
        RuntimeError: no active run.
        ValueError: missing files, a bad spec, or an example the model cannot answer.
    """
    from models.forecaster.pyfunc import code_paths, pip_requirements

    if mlflow.active_run() is None:
        raise RuntimeError(
            "log_allocator logs into the active run; call it inside `with mlflow.start_run():`"
        )
    for path in (policy_path, vecnorm_path):
        if not Path(path).is_file():
            raise ValueError(f"{path} is not a file; save the policy and its VecNormalize first")
    parse_spec(spec)
    example = _example_frame(input_example)
    with tempfile.TemporaryDirectory(prefix="fks-allocator-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(dict(spec), indent=2, sort_keys=True), encoding="utf-8")
        artifacts = {
            "policy": str(Path(policy_path).resolve()),
            "vecnorm": str(Path(vecnorm_path).resolve()),
            "spec": str(spec_path),
        }
        probe = AllocatorModel()
        probe.load_context(PythonModelContext(artifacts=artifacts, model_config={}))
        output = probe.predict(None, example)
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=name,
            python_model=AllocatorModel(),
            artifacts=artifacts,
            signature=_signature(example, output),
            input_example=example,
            code_paths=code_paths(CODE_PACKAGES),
            pip_requirements=pip_requirements(RUNTIME_DISTRIBUTIONS),
        )
    return info
