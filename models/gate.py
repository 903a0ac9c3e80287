"""The promotion gate: should a challenger replace the champion? Pure logic, no MLflow, no database.

::

    from config.promotion import PromotionPolicy
    from models.gate import GateInput, best_baseline, decide

    name, base = best_baseline({"buy_and_hold": bh, "sma_cross": sma}, "sharpe")
    inputs = GateInput(
        challenger=challenger_metrics, champion=champion_metrics,   # None when there is no champion
        baseline_name=name, baseline=base,
        window_start="2024-01-01", window_end="2024-06-30",
        data_validated=True, n_trades=42,
    )
    decision = decide(inputs, PromotionPolicy())
    decision.promote, decision.outcome     # True, "promoted"
    decision.reasons                       # ["Sharpe 0.61 beats champion 0.42 by 0.19 >= margin 0.05", ...]

The metrics dicts are out-of-sample backtest metrics over the same window (``sharpe``,
``max_drawdown``, ...). :func:`decide` runs every check of :class:`config.promotion.PromotionPolicy`
(champion, baseline, drawdown, trades, data) and promotes only when all pass. ``reasons`` are
sentences a person can read: the passed checks when it promotes, every failed check when it
refuses. ``decide(..., force=True)`` promotes anyway and keeps the reasons it would have refused
for, marked ``forced``. Apply a decision to the registry with :func:`models.registry.apply_decision`
and record it with :func:`storage.record_promotion`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from config.promotion import CLOSER_TO_ZERO_IS_BETTER, DRAWDOWN_METRIC, PromotionPolicy
from market.bars import as_utc

__all__ = [
    "CHECKS",
    "Decision",
    "GateInput",
    "best_baseline",
    "decide",
    "improvement",
]

CHECKS: tuple[str, ...] = ("champion", "baseline", "drawdown", "trades", "data")
"""The gate's checks, in the order :func:`decide` runs and reports them."""

_EPS = 1e-12  # float slack when comparing an improvement with its margin (0.47 - 0.42 vs 0.05)
_LABELS = {
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "calmar": "Calmar",
    "cagr": "CAGR",
    "max_drawdown": "Max drawdown",
    "total_return": "Total return",
    "win_rate": "Win rate",
}


def _finite(metrics: Mapping[str, Any] | None, key: str) -> float | None:
    """``metrics[key]`` as a finite float, or None when absent, not a number, NaN or infinite."""
    if metrics is None or key not in metrics:
        return None
    value = metrics[key]
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _score(metric: str, value: float) -> float:
    """``value`` on a higher-is-better scale: drawdowns by closeness to 0."""
    return -abs(value) if metric in CLOSER_TO_ZERO_IS_BETTER else value


def improvement(metric: str, value: float, other: float) -> float:
    """How much better ``value`` is than ``other`` on ``metric`` (positive: better).

    ``value - other`` for higher-is-better metrics; for ``max_drawdown`` the gain in closeness to
    0, ``|other| - |value|`` (so -0.12 improves on -0.20 by 0.08).
    """
    return _score(metric, value) - _score(metric, other)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _label(metric: str) -> str:
    return _LABELS.get(metric, metric)


def best_baseline(
    baselines: Mapping[str, Mapping[str, Any]], metric: str = "sharpe"
) -> tuple[str, dict[str, Any]]:
    """The baseline that is best on ``metric`` (higher, or closer to 0 for ``max_drawdown``).

    Baselines whose ``metric`` is missing or not finite are not candidates.

    Returns:
        ``(name, its metrics)``.

    Raises:
        ValueError: no baselines, or none has a finite ``metric``.
    """
    if not baselines:
        raise ValueError("best_baseline needs at least one baseline's metrics")
    candidates = {name: v for name, m in baselines.items() if (v := _finite(m, metric)) is not None}
    if not candidates:
        raise ValueError(f"no baseline has a finite {metric!r}; baselines: {sorted(baselines)}")
    name = max(candidates, key=lambda b: _score(metric, candidates[b]))
    return name, dict(baselines[name])


@dataclass(frozen=True)
class GateInput:
    """What the gate decides on: backtest metrics of one window, and facts about that backtest.

    Attributes:
        challenger: the challenger's backtest metrics (``{"sharpe": 0.61, "max_drawdown": -0.2}``).
        champion: the current champion's metrics on the same window, or None when there is no
            champion yet.
        baseline_name: the best baseline (see :func:`best_baseline`).
        baseline: that baseline's metrics on the same window.
        window_start, window_end: the backtest window (UTC ``pd.Timestamp``; naive values,
            datetimes and ISO strings are accepted and taken as UTC).
        data_validated: whether the window's data passed validation.
        n_trades: trades the challenger made in the backtest.

    Raises:
        ValueError: an empty ``baseline_name``, a window that is not two timestamps or ends
            before it starts, or a negative ``n_trades``.
        TypeError: a metrics argument that is not a mapping, ``data_validated`` not a bool or
            ``n_trades`` not an int.
    """

    challenger: Mapping[str, Any]
    champion: Mapping[str, Any] | None
    baseline_name: str
    baseline: Mapping[str, Any]
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    data_validated: bool
    n_trades: int

    def __post_init__(self) -> None:
        for name in ("challenger", "baseline"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a mapping of metrics, not {type(value).__name__}")
            object.__setattr__(self, name, dict(value))
        if self.champion is not None:
            if not isinstance(self.champion, Mapping):
                kind = type(self.champion).__name__
                raise TypeError(f"champion must be a mapping of metrics or None, not {kind}")
            object.__setattr__(self, "champion", dict(self.champion))
        if not isinstance(self.baseline_name, str) or not self.baseline_name.strip():
            raise ValueError(f"baseline_name must be a non-empty string, got {self.baseline_name!r}")
        start = as_utc(self.window_start, "window_start")
        end = as_utc(self.window_end, "window_end")
        if end < start:
            raise ValueError(f"window_end {end} is before window_start {start}")
        object.__setattr__(self, "window_start", start)
        object.__setattr__(self, "window_end", end)
        if not isinstance(self.data_validated, bool):
            raise TypeError(f"data_validated must be a bool, not {type(self.data_validated).__name__}")
        if isinstance(self.n_trades, bool) or not isinstance(self.n_trades, int):
            raise TypeError(f"n_trades must be an int, not {type(self.n_trades).__name__}")
        if self.n_trades < 0:
            raise ValueError(f"n_trades must not be negative, got {self.n_trades}")


@dataclass(frozen=True)
class Decision:
    """What the gate decided, and why.

    Attributes:
        promote: make the challenger the champion.
        forced: promoted by ``force=True`` (the reasons then say what would have refused it).
        reasons: sentences a person can read: the passed checks when promoted on merit, every
            failed check when refused or forced.
        metrics: a JSON-ready snapshot: ``primary_metric``, ``challenger_value``,
            ``champion_value``, ``baseline_name``, ``baseline_value``,
            ``improvement_vs_champion``, ``improvement_vs_baseline``, ``max_drawdown``,
            ``n_trades``, ``data_validated``, ``window_start``/``window_end`` (ISO),
            the three metrics dicts (``challenger``, ``champion``, ``baseline``), ``checks`` and
            the ``policy``. Values that were missing or not finite are None.
        checks: each check of :data:`CHECKS` and whether it passed.
    """

    promote: bool
    forced: bool
    reasons: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """``"forced"``, ``"promoted"`` or ``"refused"`` (the ``promotions.decision`` value)."""
        if self.forced:
            return "forced"
        return "promoted" if self.promote else "refused"

    @property
    def failed_checks(self) -> list[str]:
        """Names of the checks that failed, in :data:`CHECKS` order."""
        return [name for name in CHECKS if not self.checks.get(name, True)]


def _compare(
    what: str, metric: str, challenger: float | None, other: float | None, margin: float
) -> tuple[bool, str, float | None]:
    """One margin check; ``what`` is ``champion 0.42``-style text without the value."""
    label = _label(metric)
    if challenger is None:
        shown = "" if other is None else f" {_num(other)}"
        missing = f"{label} of the challenger is missing or not finite; it cannot be compared with {what}"
        missing += shown
        return False, missing, None
    if other is None:
        missing = f"{label} of the {what} is missing or not finite; the challenger cannot be compared with it"
        return False, missing, None
    gain = improvement(metric, challenger, other)
    ok = gain > 0 and gain >= margin - _EPS
    if ok:
        sentence = (
            f"{label} {_num(challenger)} beats {what} {_num(other)} by {_num(gain)} >= margin {_num(margin)}"
        )
    else:
        sentence = (
            f"{label} {_num(challenger)} does not beat {what} {_num(other)} by margin {_num(margin)}: "
            f"improvement {_num(gain)}"
        )
    return ok, sentence, gain


def decide(inputs: GateInput, policy: PromotionPolicy | None = None, *, force: bool = False) -> Decision:
    """Decide whether the challenger of ``inputs`` replaces the champion under ``policy``.

    Checks, in order (see :mod:`config.promotion`): it beats the champion (when there is one)
    and the best baseline on ``policy.primary_metric`` by the policy's margins; its max drawdown
    is not worse than ``policy.max_drawdown_floor``; it made at least ``policy.min_trades``
    trades; the window's data passed validation (when ``policy.require_validated_data``). A
    metric that is missing or not finite fails its check.

    Args:
        inputs: the backtest facts.
        policy: the thresholds; the defaults of :class:`PromotionPolicy` when None.
        force: promote whatever the checks say; the decision is ``forced`` and its reasons list
            what would have refused it (or say that every check passed anyway).

    Returns:
        The :class:`Decision`: promoted only when every check passes, or when forced.
    """
    policy = policy or PromotionPolicy()
    metric = policy.primary_metric
    challenger = _finite(inputs.challenger, metric)
    champion = None if inputs.champion is None else _finite(inputs.champion, metric)
    baseline = _finite(inputs.baseline, metric)
    checks: dict[str, bool] = {}
    sentences: dict[str, str] = {}

    gain_champion: float | None = None
    if inputs.champion is None:
        checks["champion"] = True
        sentences["champion"] = (
            "No champion yet: the challenger only has to beat the baseline and pass the guards"
        )
    else:
        checks["champion"], sentences["champion"], gain_champion = _compare(
            "champion", metric, challenger, champion, policy.min_margin_vs_champion
        )
    checks["baseline"], sentences["baseline"], gain_baseline = _compare(
        f"baseline '{inputs.baseline_name}'", metric, challenger, baseline, policy.min_margin_vs_baseline
    )

    drawdown = _finite(inputs.challenger, DRAWDOWN_METRIC)
    floor = policy.max_drawdown_floor
    if drawdown is None:
        checks["drawdown"] = False
        sentences["drawdown"] = (
            "Max drawdown of the challenger is missing or not finite; "
            f"the floor {floor:.1%} cannot be checked"
        )
    elif -abs(drawdown) >= floor - _EPS:
        checks["drawdown"] = True
        sentences["drawdown"] = f"Max drawdown {-abs(drawdown):.1%} is within the floor {floor:.1%}"
    else:
        checks["drawdown"] = False
        sentences["drawdown"] = f"Max drawdown {-abs(drawdown):.1%} is worse than the floor {floor:.1%}"

    trades = inputs.n_trades
    checks["trades"] = trades >= policy.min_trades
    sentences["trades"] = (
        f"{trades} trades >= minimum {policy.min_trades}"
        if checks["trades"]
        else f"{trades} trades < minimum {policy.min_trades}: too few for the metrics to be trusted"
    )

    window = f"{inputs.window_start.isoformat()} to {inputs.window_end.isoformat()}"
    if not policy.require_validated_data:
        checks["data"] = True
        sentences["data"] = "Validated data is not required by the policy"
    elif inputs.data_validated:
        checks["data"] = True
        sentences["data"] = f"Backtest data {window} passed validation"
    else:
        checks["data"] = False
        sentences["data"] = (
            f"Backtest data {window} has not passed validation; the policy requires validated data"
        )

    failed = [sentences[name] for name in CHECKS if not checks[name]]
    passed = [sentences[name] for name in CHECKS if checks[name]]
    if force:
        head = (
            f"Promotion forced over {len(failed)} failed check(s)"
            if failed
            else "Promotion forced; every check passed anyway"
        )
        reasons = [head, *(failed or passed)]
    else:
        reasons = failed if failed else passed

    snapshot: dict[str, Any] = {
        "primary_metric": metric,
        "challenger_value": challenger,
        "champion_value": champion,
        "baseline_name": inputs.baseline_name,
        "baseline_value": baseline,
        "improvement_vs_champion": gain_champion,
        "improvement_vs_baseline": gain_baseline,
        "max_drawdown": drawdown,
        "n_trades": trades,
        "data_validated": inputs.data_validated,
        "window_start": inputs.window_start.isoformat(),
        "window_end": inputs.window_end.isoformat(),
        "challenger": dict(inputs.challenger),
        "champion": None if inputs.champion is None else dict(inputs.champion),
        "baseline": dict(inputs.baseline),
        "checks": dict(checks),
        "policy": policy.model_dump(),
    }
    return Decision(
        promote=force or not failed,
        forced=force,
        reasons=reasons,
        metrics=snapshot,
        checks=checks,
    )
