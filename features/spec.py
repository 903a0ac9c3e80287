"""Feature sets: a named, versioned list of indicators (configuration; :mod:`features.build` builds them).

A feature set is configuration, not code. ``config/feature_sets.yaml`` holds the shipped sets::

    version: 1
    feature_sets:
      minimal:
        description: a handful of features for quick experiments
        indicators:
          - {kind: rsi, params: {period: 14}}
          - {kind: macd, params: {ratio: true}}
          - {kind: log_returns}

Each entry is an :class:`IndicatorSpec`: ``kind`` names a function of :mod:`features.indicators`,
``params`` its arguments (missing ones take the defaults below, which are TA-Lib's), ``name``
optionally overrides the column name. :func:`build_features` turns bars into one float64 column
per output, named after the indicator and its parameters:

=====================  ==========================  ==============================================
kind                   params (default)            columns (defaults shown)
=====================  ==========================  ==============================================
``sma``                period (30), ratio (false)  ``sma_30``; with ratio ``sma_ratio_30``
``ema``                period (30), ratio (false)  ``ema_30``; with ratio ``ema_ratio_30``
``rsi``                period (14)                 ``rsi_14`` in [0, 100]
``macd``               fast (12), slow (26),       ``macd_12_26_9``, ``macd_signal_12_26_9``,
                       signal (9), ratio (false)   ``macd_hist_12_26_9``; with ratio
                                                   ``macd_ratio_...``, ``macd_signal_ratio_...``,
                                                   ``macd_hist_ratio_...``
``bollinger``          period (20), k (2.0),       ``bb_upper_20_2``, ``bb_middle_20_2``,
                       ratio (false)               ``bb_lower_20_2`` (``bb_upper_ratio_20_2``...
                                                   with ratio), ``bb_width_20_2``, ``bb_pctb_20_2``
``atr``                period (14), ratio (false)  ``atr_14``; with ratio ``atr_ratio_14``
``obv``                (none)                      ``obv`` (a cumulative level: research only)
``obv_zscore``         window (20)                 ``obv_zscore_20``, OBV's z-score over window
``roc``                period (10)                 ``roc_10`` (percent)
``stoch``              fastk (5), slowk (3),       ``stoch_k_5_3_3``, ``stoch_d_5_3_3`` in [0, 100]
                       slowd (3)
``adx``                period (14)                 ``adx_14`` in [0, 100]
``cci``                period (14)                 ``cci_14``
``willr``              period (14)                 ``williams_r_14`` in [-100, 0]
``mfi``                period (14)                 ``mfi_14`` in [0, 100]
``returns``            n (1)                       ``ret_1`` (simple return over n bars)
``log_returns``        n (1)                       ``log_ret_1``
``rolling_volatility`` window (20)                 ``volatility_20``
``rolling_zscore``     window (20), source (close) ``zscore_close_20``
``rolling_skew``       window (20),                ``skew_log_ret_20``
                       source (log_ret)
``rolling_kurt``       window (20),                ``kurt_log_ret_20``
                       source (log_ret)
``volume_zscore``      window (20)                 ``volume_zscore_20``
``calendar_features``  (none)                      ``day_of_week`` (0 = Monday); ``hour`` (UTC)
                                                   for intraday bars only
=====================  ==========================  ==============================================

Normalisation. ``ratio: true`` divides the price-level outputs (moving averages, MACD lines,
Bollinger bands, ATR) by the bar's close, so that a model sees the same scale in 1999 and in
2019: ``sma_ratio_20 = sma_20 / close``, ``atr_ratio_14 = atr_14 / close``. ``bb_width`` is
``(upper - lower) / middle`` and ``bb_pctb`` is ``(close - lower) / (upper - lower)`` (0.5 where
the bands coincide, i.e. the close did not move over the window); neither depends on ``ratio``.
The ``source`` of the rolling statistics is one of ``open, high, low, close, volume`` or the
one-bar ``ret`` / ``log_ret`` of the close. A float parameter appears in a name with its point
written ``p`` (``k: 2.5`` gives ``bb_upper_20_2p5``).

``name`` replaces the column name of a single-output kind and becomes the prefix of a
multi-output kind's columns (``{name}_macd``, ``{name}_signal``, ``{name}_hist``; bollinger
``upper, middle, lower, width, pctb``; stoch ``k, d``; calendar ``{name}_day_of_week`` ...). The
``features`` validation suite checks ranges by column name (``rsi*``, ``stoch*``, ``mfi*``,
``williams_r*``, ``atr*``, ``volatility*``, ``bb_width*``): a name that drops those prefixes
drops those checks.

Bounded oscillators (``rsi``, ``stoch``, ``mfi``, ``adx`` in [0, 100], ``willr`` in [-100, 0]) are
TA-Lib's numbers, except that a value within 1e-9 outside the range (rounding in TA-Lib's running
sums, e.g. %D at -2e-15) is put on the bound, so the validation suite's range checks hold.

Every column at row ``t`` uses bars ``<= t`` only. The first :attr:`FeatureSet.warmup` rows hold
NaN in at least one column (indicator warm-up); NaN is never filled.

History invariance. A set meant for serving (``serving: true``, the default) has only indicators
that forget where the series starts: computed on the last :attr:`FeatureSet.min_history` bars
ending at ``t``, every column at ``t`` equals its full-history value to 1e-6 relative
(:mod:`features.history` derives each indicator's horizon: its window, or for exponential
smoothing the bars until the seed weighs less than 1e-9). ``obv`` is a cumulative level that
depends on the first bar, so only a set marked ``serving: false`` (research only; no model can
be trained on it) may hold it; use ``obv_zscore`` instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.feature_sets import load_feature_sets
from features.history import indicator_horizon, indicator_warmup
from market.bars import Timeframe

FEATURE_CODE_VERSION = "2"
"""Version of the code that turns a feature set into columns. Bump it whenever a change to this
module or to :mod:`features.indicators` changes any built value: every
:attr:`FeatureSet.version` changes with it, so stored features of the old code are not reused."""

IndicatorKind = Literal[
    "sma",
    "ema",
    "rsi",
    "macd",
    "bollinger",
    "atr",
    "obv",
    "obv_zscore",
    "roc",
    "stoch",
    "adx",
    "cci",
    "willr",
    "mfi",
    "returns",
    "log_returns",
    "rolling_volatility",
    "rolling_zscore",
    "rolling_skew",
    "rolling_kurt",
    "volume_zscore",
    "calendar_features",
]

ParamValue = int | float | str | bool

_SOURCES: tuple[str, ...] = ("open", "high", "low", "close", "volume", "ret", "log_ret")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


# ---------------------------------------------------------------------------------------------
# Parameters of each kind


@dataclass(frozen=True)
class _Param:
    """One parameter of an indicator kind: its type, default and bounds."""

    type: type
    default: ParamValue
    minimum: float | None = None
    choices: tuple[str, ...] | None = None

    def describe(self) -> str:
        rule = ""
        if self.choices is not None:
            rule = f", one of {'/'.join(self.choices)}"
        elif self.minimum is not None:
            rule = f", >= {self.minimum:g}" if self.type is int else f", > {self.minimum:g}"
        return f"{self.type.__name__} (default {self.default!r}{rule})"


def _period(default: int, minimum: int = 2) -> _Param:
    return _Param(int, default, minimum)


_RATIO = _Param(bool, False)

_KINDS: dict[str, dict[str, _Param]] = {
    "sma": {"period": _period(30, 1), "ratio": _RATIO},
    "ema": {"period": _period(30, 1), "ratio": _RATIO},
    "rsi": {"period": _period(14)},
    "macd": {"fast": _period(12), "slow": _period(26), "signal": _period(9, 1), "ratio": _RATIO},
    "bollinger": {"period": _period(20), "k": _Param(float, 2.0, 0.0), "ratio": _RATIO},
    "atr": {"period": _period(14, 1), "ratio": _RATIO},
    "obv": {},
    "obv_zscore": {"window": _period(20)},
    "roc": {"period": _period(10, 1)},
    "stoch": {"fastk": _period(5, 1), "slowk": _period(3, 1), "slowd": _period(3, 1)},
    "adx": {"period": _period(14)},
    "cci": {"period": _period(14)},
    "willr": {"period": _period(14)},
    "mfi": {"period": _period(14)},
    "returns": {"n": _period(1, 1)},
    "log_returns": {"n": _period(1, 1)},
    "rolling_volatility": {"window": _period(20)},
    "rolling_zscore": {"window": _period(20), "source": _Param(str, "close", choices=_SOURCES)},
    "rolling_skew": {"window": _period(20, 3), "source": _Param(str, "log_ret", choices=_SOURCES)},
    "rolling_kurt": {"window": _period(20, 4), "source": _Param(str, "log_ret", choices=_SOURCES)},
    "volume_zscore": {"window": _period(20)},
    "calendar_features": {},
}


def _known_kinds() -> str:
    return ", ".join(_KINDS)


def _coerce(kind: str, key: str, spec: _Param, value: Any) -> ParamValue:
    """Return ``value`` as the parameter's type, or raise ValueError saying what is accepted."""
    where = f"{kind} parameter {key!r}"
    if spec.type is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if spec.type is str:
        if not isinstance(value, str) or (spec.choices is not None and value not in spec.choices):
            raise ValueError(f"{where} must be one of {', '.join(spec.choices or ())}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number, got {value!r}")
    if spec.type is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{where} must be a whole number of bars, got {value!r}")
        number: int | float = int(value)
        if spec.minimum is not None and number < spec.minimum:
            raise ValueError(f"{where} must be >= {spec.minimum:g}, got {value!r}")
        return number
    number = float(value)
    if not np.isfinite(number) or (spec.minimum is not None and number <= spec.minimum):
        raise ValueError(f"{where} must be a finite number > {spec.minimum:g}, got {value!r}")
    return number


def _resolve_params(kind: str, params: Mapping[str, Any]) -> dict[str, ParamValue]:
    """Fill defaults, coerce types and check bounds of ``params`` for ``kind``."""
    accepted = _KINDS[kind]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        if accepted:
            what = "; ".join(f"{k}: {p.describe()}" for k, p in accepted.items())
            raise ValueError(f"{kind} has no parameter {', '.join(map(repr, unknown))}; it accepts {what}")
        raise ValueError(f"{kind} takes no parameters, got {', '.join(map(repr, unknown))}")
    out = {k: _coerce(kind, k, p, params.get(k, p.default)) for k, p in accepted.items()}
    if kind == "macd" and not int(out["fast"]) < int(out["slow"]):
        raise ValueError(f"macd needs fast < slow, got fast={out['fast']} slow={out['slow']}")
    return out


def _fmt(value: ParamValue) -> str:
    """A parameter as it appears in a column name: ``14``, ``2`` for 2.0, ``2p5`` for 2.5."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value).replace(".", "p").replace("-", "m")
    return str(value)


# ---------------------------------------------------------------------------------------------
# Configuration models


class IndicatorSpec(BaseModel):
    """One indicator of a feature set.

    Attributes:
        kind: a function of :mod:`features.indicators` (see the module table).
        params: its parameters; after validation every accepted parameter is present (missing
            ones filled with their default) with its proper type, so ``{}`` and the explicit
            defaults describe, and version, the same indicator.
        name: optional override of the column name (single output) or column prefix (several
            outputs); lower snake case.

    Raises:
        pydantic.ValidationError (a ValueError): unknown kind or parameter, wrong type, value
            out of bounds; the message lists what the kind accepts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: IndicatorKind
    params: dict[str, ParamValue] = Field(default_factory=dict)
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_kind_and_params(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ValueError(f"unknown indicator kind {kind!r}: use one of {_known_kinds()}")
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ValueError(f"{kind} params must be a mapping of name to value, got {params!r}")
        return {**data, "params": _resolve_params(kind, params)}

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME_RE.match(value):
            raise ValueError(f"column name {value!r} must be lower snake case (a-z, 0-9, _), starting a-z")
        return value

    def columns(self, timeframe: str | Timeframe = Timeframe.D1) -> list[str]:
        """Names of the columns this indicator builds on bars of ``timeframe``, in order."""
        return _column_names(self, Timeframe.parse(timeframe).is_intraday)

    @property
    def min_history(self) -> int | None:
        """Bars ending at ``t`` that give this indicator's full-history value at ``t`` (to 1e-6
        relative); None for an indicator that never forgets the start (``obv``).
        See :func:`features.history.indicator_horizon`."""
        return indicator_horizon(self.kind, self.params)


class FeatureSet(BaseModel):
    """A named list of indicators: what :func:`build_features` builds.

    Attributes:
        name: the set's name (as in ``config/feature_sets.yaml``).
        description: free text for people; not part of :attr:`version`.
        indicators: the indicators, in column order; at least one, and no two may build a
            column of the same name.
        serving: True (default) for a set a model may be trained on and served with: every
            indicator must be history-invariant (see the module documentation). False marks a
            research-only set, which may hold cumulative levels such as ``obv``.

    Raises:
        pydantic.ValidationError (a ValueError): an empty list, a bad indicator, a repeated
            column name, or (in a serving set) an indicator that never forgets the start of the
            series; the message names it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    indicators: list[IndicatorSpec] = Field(min_length=1)
    serving: bool = True

    @model_validator(mode="after")
    def _check_history_invariance(self) -> FeatureSet:
        if not self.serving:
            return self
        for spec in self.indicators:
            if spec.min_history is None:
                raise ValueError(
                    f"feature set {self.name!r} is meant for serving but indicator {spec.kind!r} "
                    f"({', '.join(spec.columns())}) is a cumulative level that depends on where the series "
                    "starts, so a served model would see other values than training did; use a windowed "
                    "form (obv_zscore for obv) or mark the set 'serving: false' (research only)"
                )
        return self

    @model_validator(mode="after")
    def _check_unique_columns(self) -> FeatureSet:
        seen: set[str] = set()
        for spec in self.indicators:
            for column in _column_names(spec, intraday=True):
                if column in seen:
                    raise ValueError(
                        f"feature set {self.name!r} builds column {column!r} twice; drop the repeated "
                        f"indicator or give one a different 'name'"
                    )
                seen.add(column)
        return self

    def canonical_json(self) -> str:
        """The configuration that determines the built values, as canonical JSON.

        Name and indicators (kinds, resolved params, names) with sorted keys and no spaces,
        plus :data:`FEATURE_CODE_VERSION`; the description is left out.
        """
        payload: dict[str, Any] = {
            "name": self.name,
            "indicators": [spec.model_dump(mode="json") for spec in self.indicators],
            "feature_code_version": FEATURE_CODE_VERSION,
        }
        if not self.serving:
            payload["serving"] = False
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def version(self) -> str:
        """First 12 hex digits of the SHA-256 of :meth:`canonical_json`.

        Changes with any parameter, indicator, column name, the set's name or
        :data:`FEATURE_CODE_VERSION`; does not change with the order of keys in ``params``,
        with spelling a default explicitly, or between runs and machines.
        """
        return hashlib.sha256(self.canonical_json().encode("ascii")).hexdigest()[:12]

    @property
    def warmup(self) -> int:
        """Leading bars before every column is defined (no NaN from row ``warmup`` on): the
        largest TA-Lib lookback of the set's indicators (:func:`features.history.indicator_warmup`)."""
        return max(indicator_warmup(spec.kind, spec.params) for spec in self.indicators)

    @property
    def min_history(self) -> int:
        """Bars ending at ``t`` that give every column's full-history value at ``t`` (1e-6 relative).

        The largest horizon of the set's indicators (:func:`features.history.indicator_horizon`),
        and never less than ``warmup + 1``. A model with a lookback of ``L`` rows needs
        ``min_history + L - 1`` bars.

        Raises:
            ValueError: a research-only set (``serving: false``) with an indicator that never
                forgets the start of the series; the message names it.
        """
        horizons = {spec.kind: spec.min_history for spec in self.indicators}
        unbounded = [kind for kind, h in horizons.items() if h is None]
        if unbounded:
            raise ValueError(
                f"feature set {self.name!r} has no history horizon: {', '.join(unbounded)} never forget(s) "
                "the start of the series; it is research only (serving: false) and cannot be served"
            )
        return max([self.warmup + 1, *(h for h in horizons.values() if h is not None)])

    def columns(self, timeframe: str | Timeframe = Timeframe.D1) -> list[str]:
        """Names of the columns :func:`build_features` returns for bars of ``timeframe``."""
        intraday = Timeframe.parse(timeframe).is_intraday
        return [c for spec in self.indicators for c in _column_names(spec, intraday)]


# ---------------------------------------------------------------------------------------------
# Column names


_ROLES: dict[str, tuple[str, ...]] = {
    "macd": ("macd", "signal", "hist"),
    "bollinger": ("upper", "middle", "lower", "width", "pctb"),
    "stoch": ("k", "d"),
}


def _column_names(spec: IndicatorSpec, intraday: bool) -> list[str]:
    """Column names of ``spec``, in the order :func:`_compute` returns its outputs."""
    p = spec.params
    kind = spec.kind
    if kind == "calendar_features":
        roles: tuple[str, ...] = ("day_of_week", "hour") if intraday else ("day_of_week",)
        return [f"{spec.name}_{r}" for r in roles] if spec.name else list(roles)
    if kind in _ROLES:
        if spec.name:
            return [f"{spec.name}_{r}" for r in _ROLES[kind]]
        if kind == "macd":
            suffix = f"{p['fast']}_{p['slow']}_{p['signal']}"
            r = "_ratio" if p["ratio"] else ""
            return [f"macd{r}_{suffix}", f"macd_signal{r}_{suffix}", f"macd_hist{r}_{suffix}"]
        if kind == "bollinger":
            suffix = f"{p['period']}_{_fmt(p['k'])}"
            r = "_ratio" if p["ratio"] else ""
            return [
                f"bb_upper{r}_{suffix}",
                f"bb_middle{r}_{suffix}",
                f"bb_lower{r}_{suffix}",
                f"bb_width_{suffix}",
                f"bb_pctb_{suffix}",
            ]
        suffix = f"{p['fastk']}_{p['slowk']}_{p['slowd']}"
        return [f"stoch_k_{suffix}", f"stoch_d_{suffix}"]
    if spec.name:
        return [spec.name]
    simple = {
        "rsi": "rsi",
        "roc": "roc",
        "adx": "adx",
        "cci": "cci",
        "willr": "williams_r",
        "mfi": "mfi",
        "rolling_volatility": "volatility",
        "volume_zscore": "volume_zscore",
        "obv_zscore": "obv_zscore",
    }
    if kind in ("sma", "ema", "atr"):
        return [f"{kind}{'_ratio' if p['ratio'] else ''}_{p['period']}"]
    if kind in simple:
        (value,) = (v for k, v in p.items())
        return [f"{simple[kind]}_{value}"]
    if kind == "obv":
        return ["obv"]
    if kind in ("returns", "log_returns"):
        return [f"{'ret' if kind == 'returns' else 'log_ret'}_{p['n']}"]
    stem = {"rolling_zscore": "zscore", "rolling_skew": "skew", "rolling_kurt": "kurt"}[kind]
    return [f"{stem}_{p['source']}_{p['window']}"]


# ---------------------------------------------------------------------------------------------
# Loading


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def feature_set_names(path: str | Path | None = None) -> list[str]:
    """Names of the feature sets in ``path`` (default ``config/feature_sets.yaml``), in file order.

    Raises:
        ValueError: the file is missing, not YAML, or has no ``feature_sets`` mapping.
    """
    return [str(name) for name in load_feature_sets(path)[1]]


def get_feature_set(name: str, path: str | Path | None = None) -> FeatureSet:
    """Load the feature set ``name`` from ``path`` (default ``config/feature_sets.yaml``).

    Raises:
        ValueError: the file is missing or malformed, ``name`` is not in it (the message lists
            the sets it has), or the set is invalid (unknown indicator kind, unknown or bad
            parameter, repeated column; the message names the file, the set and what works).
    """
    file, sets = load_feature_sets(path)
    if name not in sets:
        raise ValueError(f"unknown feature set {name!r} in {file}: use one of {', '.join(map(str, sets))}")
    body = sets[name]
    if not isinstance(body, dict):
        raise ValueError(f"{file}: feature set {name!r} must be a mapping of 'description' and 'indicators'")
    try:
        return FeatureSet(name=name, **body)
    except ValidationError as exc:
        raise ValueError(f"{file}: feature set {name!r}: {_errors(exc)}") from None
    except TypeError as exc:
        raise ValueError(f"{file}: feature set {name!r}: {exc}") from None
