"""The validation policy: what a failed expectation does, and how wide the return bound is.

An operator tunes it in ``config/validation.yaml`` (or a file of the same shape) without code::

    version: 1
    suites:
      bars:
        default: critical          # severity of any expectation not listed below
        severity:
          prices_positive: critical
          ts_in_order: warning
          ...
      features:
        default: critical
        severity: {}
    returns:
      min_periods: 10              # past returns needed before the rolling statistics count
      spike_reversion: 0.5         # a spike's round trip is at most this share of its smaller leg
      bounds:
        equity:
          1m: {window: 240, k: 14.0, floor: 0.02}
          1h: {window: 120, k: 14.0, floor: 0.05}
          1d: {window: 60,  k: 14.0, floor: 0.15}
        etf: ...                   # index, fx, crypto likewise

Severities:

* ``critical``: a failing row is quarantined (it lands in ``ValidationReport.failures``);
* ``warning``: a failing row is reported (``ValidationReport.warnings``) and kept;
* ``off``: the expectation is not run.

Return rules (see :func:`expectations.checks.return_scores` and ``config/validation.yaml``, which
documents each rule with the real case it protects): a one-bar log return ``r`` beyond
``max(k * 1.4826 * rolling MAD, floor)`` of the rolling median is reported (``return_in_bound``,
a warning: real markets make such moves); quarantine needs evidence of an error: a spike the next
bar takes back (``no_spike``, its own tighter ``spike_k``/``spike_floor``), a one-way jump by a
split or unit ratio with no recorded split (``split_like``), or a move beyond the asset class's
hard ``ceiling`` (``return_ceiling``). No bound is judged from fewer than ``min_periods`` past
returns; the ceiling applies from the first. ``floor``, ``spike_floor`` and ``ceiling`` are log
returns (``0.15`` is about 16 %).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.assets import AssetClass

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "validation.yaml"
TIMEFRAMES: tuple[str, ...] = ("1m", "1h", "1d")


class Severity(StrEnum):
    """What a failing expectation does to a row."""

    CRITICAL = "critical"
    WARNING = "warning"
    OFF = "off"


class SuitePolicy(BaseModel):
    """Severities of one suite's expectations, by expectation id; unlisted ids get ``default``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: Severity = Severity.CRITICAL
    severity: dict[str, Severity] = Field(default_factory=dict)

    def severity_of(self, expectation_id: str) -> Severity:
        """The severity of ``expectation_id``."""
        return self.severity.get(expectation_id, self.default)


class ReturnBound(BaseModel):
    """Return-rule parameters of one asset class at one timeframe.

    ``window``: past returns in the rolling statistics (>= 5); ``k``: MAD multiple (> 0) and
    ``floor``: smallest bound as an absolute log return (in (0, 5]) of ``return_in_bound``;
    ``spike_k`` and ``spike_floor``: the same for both legs of a reverting spike (``no_spike``);
    ``ceiling``: the hard ceiling on an absolute one-bar log return (``return_ceiling``);
    ``stale_run``: repeats of the previous close that make a close stale (``stale_price``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(ge=5, le=100_000)
    k: float = Field(gt=0, le=1000)
    floor: float = Field(gt=0, le=5)
    spike_k: float = Field(default=6.0, gt=0, le=1000)
    spike_floor: float = Field(default=0.05, gt=0, le=5)
    ceiling: float = Field(default=3.0, gt=0, le=20)
    stale_run: int = Field(default=3, ge=1, le=10_000)


class ReturnPolicy(BaseModel):
    """Return-bound parameters for every asset class and timeframe, plus the spike rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_periods: int = Field(default=10, ge=2)
    spike_reversion: float = Field(default=0.5, gt=0, le=1)
    split_ratios: tuple[float, ...] = Field(default=(2.0, 3.0, 4.0, 5.0, 10.0, 100.0), min_length=1)
    split_tolerance: float = Field(default=0.02, gt=0, lt=0.5)
    bounds: dict[AssetClass, dict[str, ReturnBound]]

    @field_validator("split_ratios")
    @classmethod
    def _ratios_above_one(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        bad = [r for r in value if not r > 1.0]
        if bad:
            raise ValueError(f"split_ratios must be > 1 (their inverses are added), got {bad}")
        return value

    @field_validator("bounds")
    @classmethod
    def _every_class_and_timeframe(
        cls, value: dict[AssetClass, dict[str, ReturnBound]]
    ) -> dict[AssetClass, dict[str, ReturnBound]]:
        missing = [a.value for a in AssetClass if a not in value]
        if missing:
            raise ValueError(f"no bounds for asset class(es) {', '.join(missing)}")
        for asset_class, per_tf in value.items():
            unknown = sorted(set(per_tf) - set(TIMEFRAMES))
            if unknown:
                raise ValueError(
                    f"{asset_class.value}: unknown timeframe(s) {', '.join(unknown)}; use 1m, 1h, 1d"
                )
            absent = [tf for tf in TIMEFRAMES if tf not in per_tf]
            if absent:
                raise ValueError(f"{asset_class.value}: no bounds for timeframe(s) {', '.join(absent)}")
        return value


class ValidationPolicy(BaseModel):
    """The whole policy file. See the module documentation for its format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = 1
    suites: dict[str, SuitePolicy] = Field(default_factory=dict)
    returns: ReturnPolicy

    def suite(self, name: str) -> SuitePolicy:
        """The policy of suite ``name`` (every expectation ``critical`` when the file omits it)."""
        return self.suites.get(name, SuitePolicy())

    def return_bound(self, asset_class: str, timeframe: str) -> ReturnBound:
        """Return-bound parameters of ``asset_class`` at ``timeframe``.

        Raises:
            ValueError: for an unknown asset class or timeframe; the message lists the known ones.
        """
        try:
            key = AssetClass(str(asset_class).strip().lower())
        except ValueError:
            known = ", ".join(a.value for a in AssetClass)
            raise ValueError(f"unknown asset class {asset_class!r}: use one of {known}") from None
        per_tf = self.returns.bounds[key]
        tf = str(timeframe).strip().lower()
        if tf not in per_tf:
            raise ValueError(f"unknown timeframe {timeframe!r}: use one of {', '.join(TIMEFRAMES)}")
        return per_tf[tf]

    def with_severity(self, suite: str, expectation_id: str, severity: Severity | str) -> ValidationPolicy:
        """A copy with ``expectation_id`` of ``suite`` set to ``severity`` (for scripts and tests)."""
        current = self.suite(suite)
        updated = current.model_copy(
            update={"severity": {**current.severity, expectation_id: Severity(severity)}}
        )
        return self.model_copy(update={"suites": {**self.suites, suite: updated}})


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_validation_policy(path: Path | str | None = None) -> ValidationPolicy:
    """Read a validation policy file; ``None`` reads the shipped ``config/validation.yaml``.

    Raises:
        ValueError: the file is missing, is not YAML, or a key is invalid; the message names the
            file and the key (``returns.bounds.fx.1h.k``) and what is wrong with it.
    """
    file = DEFAULT_POLICY_FILE if path is None else Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{file}: validation policy not found; pass an existing file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: expected a mapping with keys version, suites, returns")
    try:
        return ValidationPolicy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ValueError(f"{file}: invalid validation policy: {problems}") from None
