"""Should the forecaster be retrained? Input drift of the served model and the paper account's live
performance, against the thresholds of the settings (``FKS_RETRAIN_*``).

::

    decision = check_retraining(settings, engine, "fks-forecaster", account="default")
    if decision.retrain:
        ...  # start the retraining deployment (tasks/monitor.py does)

- **Drift**: the largest PSI of a served feature against the version's training reference
  (:func:`models.drift.model_drift`, the figures ``fks drift`` prints), among features with at
  least ``FKS_DRIFT_MIN_SAMPLES`` served inputs; it starts a retraining from
  ``FKS_RETRAIN_DRIFT_PSI``.
- **Live performance** (:func:`live_performance`): over the account's last
  ``FKS_RETRAIN_PERF_CYCLES`` cycles, the return of its equity (``FKS_RETRAIN_MIN_PNL``) and
  its hit rate, the share of cycles whose equity rose among those whose equity moved
  (``FKS_RETRAIN_MIN_HIT_RATE``); judged from ``FKS_RETRAIN_MIN_CYCLES`` cycles.

A figure that cannot be had (no served inputs, no paper account yet) is a note, never a reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from storage.desk import Cycle, recent_cycles

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.settings import Settings

__all__ = ["LivePerformance", "RetrainDecision", "check_retraining", "decide", "live_performance"]


@dataclass(frozen=True)
class LivePerformance:
    """A paper account's recent cycles: how many, the return of its equity from the first to the
    last (a fraction), and its hit rate (None when no equity moved)."""

    account: str
    cycles: int
    pnl: float
    hit_rate: float | None
    moved: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {
            "account": self.account,
            "cycles": self.cycles,
            "pnl": self.pnl,
            "hit_rate": self.hit_rate,
            "moved": self.moved,
        }


def performance_of(account: str, cycles: Sequence[Cycle]) -> LivePerformance | None:
    """The :class:`LivePerformance` of ``cycles`` (oldest first); None for fewer than two."""
    equity = [c.equity for c in cycles if math.isfinite(c.equity)]
    if len(equity) < 2 or equity[0] <= 0:
        return None
    steps = [b - a for a, b in pairwise(equity)]
    moved = [s for s in steps if s != 0]
    return LivePerformance(
        account=account,
        cycles=len(equity),
        pnl=equity[-1] / equity[0] - 1.0,
        hit_rate=(sum(s > 0 for s in moved) / len(moved)) if moved else None,
        moved=len(moved),
    )


def live_performance(engine: Engine, account: str, cycles: int) -> LivePerformance | None:
    """The paper ``account``'s performance over its last ``cycles`` cycles (None before two)."""
    with engine.connect() as conn:
        return performance_of(account, recent_cycles(conn, account, cycles))


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain, why (``reasons``: the thresholds crossed, with their figures), and what
    was looked at (``notes``: figures that could not be had)."""

    retrain: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_psi: float | None = None
    psi_feature: str | None = None
    performance: LivePerformance | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {
            "retrain": self.retrain,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "max_psi": self.max_psi,
            "psi_feature": self.psi_feature,
            "performance": None if self.performance is None else self.performance.to_dict(),
        }


def decide(
    settings: Settings,
    *,
    max_psi: float | None,
    psi_feature: str | None = None,
    performance: LivePerformance | None,
    notes: Sequence[str] = (),
) -> RetrainDecision:
    """The decision from the figures, against ``settings``' ``retrain_*`` thresholds (a threshold
    set to None is never crossed; performance is judged from ``retrain_min_cycles`` cycles)."""
    reasons: list[str] = []
    kept = list(notes)
    if (
        max_psi is not None
        and settings.retrain_drift_psi is not None
        and max_psi >= settings.retrain_drift_psi
    ):
        reasons.append(
            f"input drift: PSI {max_psi:.3f} of {psi_feature or 'a feature'} "
            f">= {settings.retrain_drift_psi:g}"
        )
    perf = performance
    if perf is not None and perf.cycles < settings.retrain_min_cycles:
        kept.append(
            f"{perf.cycles} paper cycle(s) of {perf.account}: performance is judged from "
            f"{settings.retrain_min_cycles}"
        )
    elif perf is not None:
        if settings.retrain_min_pnl is not None and perf.pnl < settings.retrain_min_pnl:
            reasons.append(
                f"paper P&L {perf.pnl:+.2%} over {perf.cycles} cycles < {settings.retrain_min_pnl:+.2%}"
            )
        if perf.hit_rate is not None and perf.moved < settings.retrain_min_cycles:
            kept.append(
                f"{perf.moved} cycle(s) moved the equity: the hit rate is judged from "
                f"{settings.retrain_min_cycles}"
            )
        elif (
            perf.hit_rate is not None
            and settings.retrain_min_hit_rate is not None
            and perf.hit_rate < settings.retrain_min_hit_rate
        ):
            reasons.append(
                f"paper hit rate {perf.hit_rate:.0%} over {perf.moved} cycles "
                f"< {settings.retrain_min_hit_rate:.0%}"
            )
    return RetrainDecision(
        retrain=bool(reasons),
        reasons=reasons,
        notes=kept,
        max_psi=max_psi,
        psi_feature=psi_feature,
        performance=perf,
    )


def check_retraining(settings: Settings, engine: Engine, model: str, *, account: str) -> RetrainDecision:
    """Drift of ``model``'s served inputs and ``account``'s live performance, decided by
    :func:`decide`. A drift report that cannot be made (no such model, no reference) is a note."""
    from models.drift import model_drift

    notes: list[str] = []
    max_psi: float | None = None
    feature: str | None = None
    try:
        report = model_drift(settings, engine, model)
    except (LookupError, ValueError) as exc:
        notes.append(f"no drift figures for {model}: {exc}")
    else:
        judged = [
            f for f in report.features if f.psi is not None and f.n_served >= settings.drift_min_samples
        ]
        if judged:
            worst = max(judged, key=lambda f: float(f.psi or 0.0))
            max_psi, feature = float(worst.psi or 0.0), worst.feature
        else:
            notes.append(
                f"{report.n_served} served input(s) of {model}: drift is judged from "
                f"{settings.drift_min_samples}"
            )
    performance = live_performance(engine, account, settings.retrain_perf_cycles)
    if performance is None:
        notes.append(f"paper account {account!r} has fewer than two cycles")
    return decide(settings, max_psi=max_psi, psi_feature=feature, performance=performance, notes=notes)
