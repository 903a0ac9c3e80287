"""Input drift of a served model: its served feature rows against its training distribution.

For each feature of a model version, the training reference (:class:`DriftReference`, built from
the raw, unscaled feature rows the scaler was fitted on: :func:`models.reference.training_features`)
keeps the decile bin edges of the training values, the training fraction in each bin and a
deterministic sample of the values. The served inputs (table ``predictions``,
:func:`storage.predictions.served_features`) are compared with it by two measures:

- the **population stability index** (:func:`psi`) over the training deciles: the usual
  ``sum((a - e) * ln(a / e))`` of served (``a``) against training (``e``) fractions;
- the two-sample **Kolmogorov-Smirnov** test against the reference sample (its statistic and
  p-value).

Each feature gets a verdict (:func:`drift_report`): ``too few inputs`` below ``min_samples``
served values, ``drift`` when PSI >= ``psi_alert``, ``shift`` when PSI >= ``psi_warn`` or the KS
p-value < ``ks_pvalue``, else ``stable``; the report's verdict is the worst of them (``stable`` <
``too few inputs`` < ``shift`` < ``drift``). A report is a report: drift is a finding, not an error.

Sample size. PSI over ten bins is noisy on few inputs: on inputs drawn from the training
distribution itself its median is about 0.34 at 30 inputs, 0.09 at 100 and 0.02 at 500, so with
the usual 0.1 / 0.25 thresholds a verdict needs a few hundred inputs (``min_samples`` of about
200 or more) to be trusted.

::

    reference = DriftReference.from_frame(train_features)          # one column per feature
    report = drift_report(reference, served, psi_warn=0.1, psi_alert=0.25, ks_pvalue=0.01,
                          min_samples=200, model="fks-forecaster", version="3")
    report.verdict, [(f.feature, f.psi, f.verdict) for f in report.features]
    model_drift(settings, engine, "fks-forecaster", hours=24)     # the same, from the registry and store

The statistics are numpy/scipy only; :func:`model_drift` adds the registry (MLflow) and the store.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.settings import Settings

__all__ = [
    "DRIFT",
    "SHIFT",
    "STABLE",
    "TOO_FEW",
    "VERDICTS",
    "DriftReference",
    "DriftReport",
    "FeatureDrift",
    "FeatureReference",
    "drift_report",
    "model_drift",
    "psi",
]

STABLE = "stable"
TOO_FEW = "too few inputs"
SHIFT = "shift"
DRIFT = "drift"
VERDICTS: tuple[str, ...] = (STABLE, TOO_FEW, SHIFT, DRIFT)
"""The verdicts, from best to worst (a report's verdict is the worst of its features')."""

BINS = 10
"""Training quantile bins per feature (deciles)."""
SAMPLE_SIZE = 5000
"""Most reference values kept per feature for the KS test."""


def _finite(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


@dataclass(frozen=True)
class FeatureReference:
    """The training distribution of one feature.

    Attributes:
        feature: the feature's name (a column of the model's raw feature rows).
        edges: the interior bin edges, increasing and distinct: the training deciles (values of
            the data, above its minimum; fewer when values repeat, none for a constant feature).
            Bin ``i`` is ``[edges[i-1], edges[i])``; the first and last bins are open-ended, so
            every served value falls in one.
        expected: the fraction of training values in each bin (``len(edges) + 1`` of them, sum 1).
        sample: sorted reference values for the KS test: every training value when there are at
            most :data:`SAMPLE_SIZE`, else that many evenly spaced quantiles of them.
        n: how many (finite) training values there were.
    """

    feature: str
    edges: tuple[float, ...]
    expected: tuple[float, ...]
    sample: tuple[float, ...]
    n: int

    @classmethod
    def from_values(
        cls, feature: str, values: Any, *, bins: int = BINS, sample_size: int = SAMPLE_SIZE
    ) -> FeatureReference:
        """The reference of ``feature`` from its training ``values`` (NaN and infinities dropped).

        Raises:
            ValueError: no finite value, or ``bins`` / ``sample_size`` below 2.
        """
        if bins < 2 or sample_size < 2:
            raise ValueError(f"bins and sample_size must be >= 2, got {bins} and {sample_size}")
        data = np.sort(_finite(values))
        if data.size == 0:
            raise ValueError(f"feature {feature!r} has no finite training value to build a reference from")
        # deciles that are values of the data; an edge at the minimum would leave the first bin empty
        edges = np.unique(np.quantile(data, np.arange(1, bins) / bins, method="higher"))
        edges = edges[edges > data[0]]
        counts = np.bincount(np.searchsorted(edges, data, side="right"), minlength=edges.size + 1)
        if data.size <= sample_size:
            sample = data
        else:
            sample = np.quantile(data, (np.arange(sample_size) + 0.5) / sample_size)
        return cls(
            feature=str(feature),
            edges=tuple(float(e) for e in edges),
            expected=tuple(float(c) for c in counts / data.size),
            sample=tuple(float(v) for v in sample),
            n=int(data.size),
        )

    def fractions(self, values: np.ndarray) -> np.ndarray:
        """The fraction of ``values`` (finite) in each of this reference's bins."""
        edges = np.asarray(self.edges, dtype=np.float64)
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
        return counts / max(values.size, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{"feature", "edges", "expected", "sample", "n"}`` (lists of floats)."""
        return {
            "feature": self.feature,
            "edges": list(self.edges),
            "expected": list(self.expected),
            "sample": list(self.sample),
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureReference:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: a missing key, or bins and fractions that do not fit together.
        """
        try:
            ref = cls(
                feature=str(data["feature"]),
                edges=tuple(float(e) for e in data["edges"]),
                expected=tuple(float(e) for e in data["expected"]),
                sample=tuple(float(v) for v in data["sample"]),
                n=int(data["n"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a feature reference ({exc!r}): {sorted(data)}") from None
        if len(ref.expected) != len(ref.edges) + 1 or not ref.sample:
            raise ValueError(
                f"feature reference {ref.feature!r} has {len(ref.edges)} edges but "
                f"{len(ref.expected)} fractions (needs one more) or an empty sample"
            )
        return ref


@dataclass(frozen=True)
class DriftReference:
    """The training reference of a model version: one :class:`FeatureReference` per feature, in
    the order of the model's feature columns."""

    features: tuple[FeatureReference, ...]

    @property
    def names(self) -> list[str]:
        """The features' names, in order."""
        return [f.feature for f in self.features]

    @classmethod
    def from_frame(
        cls, features: pd.DataFrame, *, bins: int = BINS, sample_size: int = SAMPLE_SIZE
    ) -> DriftReference:
        """The reference of raw training feature rows (one column per feature).

        Raises:
            ValueError: no column, or a column without a finite value.
        """
        if features.shape[1] == 0:
            raise ValueError("the training features have no column to build a drift reference from")
        return cls(
            tuple(
                FeatureReference.from_values(str(name), features[name], bins=bins, sample_size=sample_size)
                for name in features.columns
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``{"features": [FeatureReference.to_dict(), ...]}``."""
        return {"features": [f.to_dict() for f in self.features]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: not the layout of :meth:`to_dict`.
        """
        items = data.get("features") if isinstance(data, Mapping) else None
        if not isinstance(items, list) or not items:
            raise ValueError("a drift reference needs a non-empty list 'features'")
        return cls(tuple(FeatureReference.from_dict(item) for item in items))


def psi(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, eps: float = 1e-4
) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))`` of the fractions ``actual`` against
    ``expected`` (same bins), each fraction floored at ``eps`` so an empty bin stays finite.

    0 for identical fractions; by the usual rule, < 0.1 is stable, 0.1 to 0.25 a shift, >= 0.25
    a drift.

    Raises:
        ValueError: the two have different lengths or are empty, or ``eps`` is not positive.
    """
    e = np.asarray(expected, dtype=np.float64).ravel()
    a = np.asarray(actual, dtype=np.float64).ravel()
    if e.size == 0 or e.shape != a.shape:
        raise ValueError(
            f"expected and actual need the same non-zero number of bins, got {e.size} and {a.size}"
        )
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    e = np.maximum(e, eps)
    a = np.maximum(a, eps)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's served values against its training reference.

    ``psi``, ``ks_statistic`` and ``ks_pvalue`` are None when no value was served; with fewer
    than ``min_samples`` they are computed but the verdict is ``too few inputs``.
    """

    feature: str
    n_served: int
    psi: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (None for a missing figure)."""
        return {
            "feature": self.feature,
            "n_served": self.n_served,
            "psi": _num(self.psi),
            "ks_statistic": _num(self.ks_statistic),
            "ks_pvalue": _num(self.ks_pvalue),
            "verdict": self.verdict,
        }


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _iso(value: pd.Timestamp | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class DriftReport:
    """The drift of a model version's served inputs over a window.

    Attributes:
        model, version: what was served ("" when unknown).
        window_start, window_end: the served window (None when not given).
        n_served: served feature rows in the window.
        features: one :class:`FeatureDrift` per reference feature, in the model's order.
        verdict: the worst feature verdict (see :data:`VERDICTS`).
        thresholds: ``psi_warn``, ``psi_alert``, ``ks_pvalue``, ``min_samples`` used.
    """

    model: str
    version: str
    window_start: pd.Timestamp | None
    window_end: pd.Timestamp | None
    n_served: int
    features: tuple[FeatureDrift, ...]
    verdict: str
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: timestamps as ISO 8601 strings, missing figures as None."""
        return {
            "model": self.model,
            "version": self.version,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "n_served": self.n_served,
            "verdict": self.verdict,
            "thresholds": dict(self.thresholds),
            "features": [f.to_dict() for f in self.features],
        }


def _verdict(
    n: int,
    value: float | None,
    pvalue: float | None,
    *,
    psi_warn: float,
    psi_alert: float,
    ks_pvalue: float,
    min_samples: int,
) -> str:
    if n < min_samples or value is None or pvalue is None:
        return TOO_FEW
    if value >= psi_alert:
        return DRIFT
    if value >= psi_warn or pvalue < ks_pvalue:
        return SHIFT
    return STABLE


def drift_report(
    reference: DriftReference,
    served: pd.DataFrame,
    *,
    psi_warn: float,
    psi_alert: float,
    ks_pvalue: float,
    min_samples: int,
    model: str = "",
    version: str = "",
    window_start: pd.Timestamp | None = None,
    window_end: pd.Timestamp | None = None,
) -> DriftReport:
    """Compare ``served`` feature rows (one column per feature; NaN ignored per feature) with
    ``reference``.

    Columns of ``served`` that the reference lacks are ignored. An empty ``served`` (no row) gives
    ``too few inputs`` for every feature, whatever its columns.

    Raises:
        ValueError: ``served`` has rows but lacks a reference feature (named), or the thresholds
            are inconsistent (``psi_warn`` > ``psi_alert``, a p-value outside (0, 1), a
            non-positive PSI threshold, ``min_samples`` < 1).
    """
    if not 0 < psi_warn <= psi_alert:
        raise ValueError(f"need 0 < psi_warn <= psi_alert, got {psi_warn} and {psi_alert}")
    if not 0 < ks_pvalue < 1:
        raise ValueError(f"ks_pvalue must be in (0, 1), got {ks_pvalue}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    if len(served):
        missing = [name for name in reference.names if name not in served.columns]
        if missing:
            raise ValueError(
                f"the served inputs lack feature(s) {', '.join(missing)} of the model's training "
                f"reference (they have {', '.join(map(str, served.columns)) or 'none'}); the service "
                "must record the model's own raw feature rows"
            )
    rows: list[FeatureDrift] = []
    for ref in reference.features:
        values = _finite(served[ref.feature]) if len(served) else np.empty(0)
        n = int(values.size)
        value = ks_stat = pvalue = None
        if n:
            value = psi(ref.expected, ref.fractions(values))
            test = ks_2samp(np.asarray(ref.sample), values)
            ks_stat, pvalue = float(test.statistic), float(test.pvalue)
        verdict = _verdict(
            n,
            value,
            pvalue,
            psi_warn=psi_warn,
            psi_alert=psi_alert,
            ks_pvalue=ks_pvalue,
            min_samples=min_samples,
        )
        rows.append(FeatureDrift(ref.feature, n, value, ks_stat, pvalue, verdict))
    overall = max((r.verdict for r in rows), key=VERDICTS.index, default=TOO_FEW)
    return DriftReport(
        model=model,
        version=str(version),
        window_start=window_start,
        window_end=window_end,
        n_served=len(served),
        features=tuple(rows),
        verdict=overall,
        thresholds={
            "psi_warn": float(psi_warn),
            "psi_alert": float(psi_alert),
            "ks_pvalue": float(ks_pvalue),
            "min_samples": int(min_samples),
        },
    )


# -- from the registry and the store ------------------------------------------------------------

_CACHE_SIZE = 32
_references: dict[tuple[str, str, str], DriftReference] = {}
_lock = threading.Lock()


def _resolve_version(model: str, version: str | None) -> tuple[str, str]:
    """``(version, run_id)`` of ``model``: ``version`` when given, else @champion, else @challenger."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from models.registry import CHALLENGER, CHAMPION, get_version_by_alias

    client = MlflowClient()
    try:
        client.get_registered_model(model)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise LookupError(
            f"no registered model {model!r}; the registry has {', '.join(names) or 'none'} "
            "(train one with `fks train forecaster`)"
        ) from None
    if version is not None:
        try:
            mv = client.get_model_version(model, str(version))
        except MlflowException:
            versions = sorted(
                (str(v.version) for v in client.search_model_versions(f"name='{model}'")), key=_version_key
            )
            raise LookupError(
                f"{model!r} has no version {version!r}; it has {', '.join(versions) or 'none'}"
            ) from None
        return str(mv.version), str(mv.run_id)
    for alias in (CHAMPION, CHALLENGER):
        found = get_version_by_alias(model, alias)
        if found is not None:
            return str(found.version), str(found.run_id)
    raise LookupError(
        f"no version of {model!r} is {CHAMPION!r} or {CHALLENGER!r}; name one with --version "
        "or register one (`fks train forecaster`)"
    )


def _version_key(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 62, value)


def _reference(model: str, version: str, run_id: str, engine: Engine) -> DriftReference:
    key = (model, version, run_id)
    with _lock:
        cached = _references.get(key)
    if cached is not None:
        return cached
    from models.reference import training_features

    built = DriftReference.from_frame(training_features(run_id, engine=engine))
    with _lock:
        if len(_references) >= _CACHE_SIZE:
            _references.clear()
        _references[key] = built
    return built


def model_drift(
    settings: Settings,
    engine: Engine,
    model: str,
    *,
    version: str | None = None,
    hours: float | None = None,
) -> DriftReport:
    """The drift report of a registered model's served inputs over the last ``hours``.

    The version is ``version`` when given, else the one at ``@champion``, else ``@challenger``;
    its reference is its training run's raw training features
    (:func:`models.reference.training_features`, recomputed from the store's bars when the run
    did not log them), cached per model, version and run. The served inputs are the
    non-shadow rows of table ``predictions`` of that version from ``now - hours`` on
    (``hours`` defaults to ``settings.drift_window_hours``); the thresholds are the settings'
    ``drift_psi_warn``, ``drift_psi_alert``, ``drift_ks_pvalue`` and ``drift_min_samples``.

    Points MLflow at ``settings.mlflow_tracking_uri``.

    Raises:
        LookupError: unknown model (the message names the registered ones) or version, no
            champion or challenger, or a training reference that can be neither read nor rebuilt.
        ValueError: ``hours`` not positive; the reference cannot be rebuilt (feature set changed,
            bars missing); the served rows lack a feature of the reference.
    """
    from models.tracking import use_tracking
    from storage.predictions import served_features

    window = float(settings.drift_window_hours if hours is None else hours)
    if not (math.isfinite(window) and window > 0):
        raise ValueError(f"hours must be a positive number, got {hours!r}")
    use_tracking(settings.mlflow_tracking_uri)
    resolved, run_id = _resolve_version(model, version)
    reference = _reference(model, resolved, run_id, engine)
    end = pd.Timestamp.now(tz="UTC")
    start = end - pd.Timedelta(hours=window)
    with engine.connect() as conn:
        served = served_features(conn, model, since=start, version=resolved)
    return drift_report(
        reference,
        served,
        psi_warn=settings.drift_psi_warn,
        psi_alert=settings.drift_psi_alert,
        ks_pvalue=settings.drift_ks_pvalue,
        min_samples=settings.drift_min_samples,
        model=model,
        version=resolved,
        window_start=start,
        window_end=end,
    )
