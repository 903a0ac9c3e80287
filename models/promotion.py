"""The promotion's registry and record side: who is judged, which baseline counts, apply and record.

The gate's run needs backtests, so it lives above ``models/``
(:func:`backtest.promotion.run_gate`); the parts it shares with any caller live here, with no
backtest and no Prefect::

    rivals = resolve_rivals("fks-forecaster", family=FORECASTER)   # challenger and champion refs
    name, metrics = gate_baseline(evaluated, problems, "sharpe")   # the baseline that counts
    validated = window_validated(engine, "SPX", "1d", start, end)  # nothing pending in quarantine
    summary = apply_and_record(judgement, name="fks-forecaster", actor="ci", engine=engine)
    rollback_champion("fks-forecaster", settings, engine=engine, actor="ci", reason="live Sharpe fell")

:func:`apply_and_record` moves the aliases (:func:`models.registry.apply_decision`), writes the
row of table ``promotions`` (:func:`storage.record_promotion`) and returns the
:class:`PromotionSummary` that ``fks promote`` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel

from config.flows import InputError
from models.gate import ComparisonWindow, Decision, best_baseline
from models.registry import CHAMPION, ModelRef, get_version_by_alias, resolve_model

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.backtest import PromoteConfig
    from config.settings import Settings
    from models.family import AnyFamily

__all__ = [
    "Judgement",
    "PromotionSummary",
    "Rivals",
    "apply_and_record",
    "gate_baseline",
    "resolve_rivals",
    "rollback_champion",
    "window_validated",
]


class PromotionSummary(BaseModel):
    """The gate's decision and why."""

    model: str
    outcome: str
    promoted: bool
    forced: bool
    challenger_version: str
    champion_version: str | None
    primary_metric: str
    challenger_value: float | None
    champion_value: float | None
    baseline_name: str
    baseline_value: float | None
    window: str
    window_bars: int | None = None
    window_narrowed: bool = False
    baseline_problems: dict[str, str] = {}
    reasons: list[str]
    promotion_id: int
    tearsheet: str | None = None
    """The tearsheet of the backtests the gate decided on (its run's own folder), when written."""


@dataclass(frozen=True)
class Rivals:
    """The challenger the gate judges and the champion it must beat.

    Attributes:
        challenger: the ``@challenger`` version.
        champion: the ``@champion`` version when it can be compared (None when there is none,
            when it is the challenger itself, or when its run does not say what it saw).
        champion_version: the champion's version whenever there is one.
        champion_problem: why a champion that exists cannot be compared, or None.
    """

    challenger: ModelRef
    champion: ModelRef | None
    champion_version: str | None
    champion_problem: str | None = None


def resolve_rivals(name: str, *, family: AnyFamily) -> Rivals:
    """The challenger and champion of registered model ``name`` (in the current MLflow store).

    Raises:
        InputError: no ``@challenger``, or a challenger whose run does not say what it was
            trained on.
    """
    try:
        challenger = resolve_model(f"{name}@challenger", family=family)
    except LookupError:
        raise InputError(
            f"{name} has no @challenger to judge; train one with `{family.train_command}`"
        ) from None
    except ValueError as exc:
        raise InputError(f"cannot judge the challenger: {exc}") from None
    champion: ModelRef | None = None
    champion_version: str | None = None
    champion_problem: str | None = None
    try:
        champion = resolve_model(f"{name}@champion", family=family)
        champion_version = champion.version
    except LookupError:
        pass  # no champion yet
    except ValueError as exc:  # a champion whose run does not say what it saw cannot be compared
        current = get_version_by_alias(name, CHAMPION)
        champion_version = None if current is None else str(current.version)
        champion_problem = f"The champion cannot be compared: {exc}"
    if champion is not None and champion.version == challenger.version:
        champion = None  # the same version is no rival of itself
    return Rivals(challenger, champion, champion_version, champion_problem)


def gate_baseline(
    evaluated: Mapping[str, Mapping[str, Any]], problems: Mapping[str, str], metric: str
) -> tuple[str, dict[str, Any]]:
    """The baseline the challenger is compared with: the best evaluated one on ``metric``; the first
    evaluated one when none has a finite ``metric`` (the check then fails, saying so); the first
    that could not be evaluated (with no metrics) when none was (the problems fail the check)."""
    if evaluated:
        try:
            return best_baseline(evaluated, metric)
        except ValueError:
            name = next(iter(evaluated))
            return name, dict(evaluated[name])
    return next(iter(problems)), {}


def window_validated(
    engine: Engine, symbol: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
) -> bool:
    """True when no row of the window ``[start, end]`` is waiting in quarantine (its data passed
    validation)."""
    from storage import list_quarantine

    with engine.connect() as conn:
        pending = list_quarantine(conn, status="quarantined", symbol=symbol, timeframe=timeframe)
    return not any(e.ts is None or start <= e.ts <= end for e in pending)


@dataclass(frozen=True)
class Judgement:
    """A gate decision and what it was decided on (the backtests of one window).

    Attributes:
        decision: :func:`models.gate.decide`'s.
        rivals: who was judged.
        window: the comparison window the backtests ran on.
        challenger, champion: their backtest metrics (``champion`` None when not compared).
        baseline_name, baseline: the baseline that counted and its metrics.
        baseline_problems: ``{baseline: why it could not be evaluated}``.
    """

    decision: Decision
    rivals: Rivals
    window: ComparisonWindow
    challenger: Mapping[str, Any]
    champion: Mapping[str, Any] | None
    baseline_name: str
    baseline: Mapping[str, Any]
    baseline_problems: dict[str, str] = field(default_factory=dict)


def _value(metrics: Mapping[str, Any] | None, key: str) -> float | None:
    if not metrics or key not in metrics:
        return None
    value = float(metrics[key])
    return value if pd.notna(value) else None


def apply_and_record(
    judgement: Judgement, *, name: str, actor: str, engine: Engine, tearsheet: str | None = None
) -> PromotionSummary:
    """Carry out the decision in the registry (aliases and ``gate_*`` tags, with ``actor``), record
    it in table ``promotions`` (with ``tearsheet``, the report of the backtests it was decided on)
    and summarise it."""
    from models.registry import apply_decision
    from storage import record_promotion

    decision, rivals, window = judgement.decision, judgement.rivals, judgement.window
    metric = str(decision.metrics["primary_metric"])
    apply_decision(name, decision, challenger_version=rivals.challenger.version, reason_tags={"actor": actor})
    facts: dict[str, Any] = {
        "challenger_version": rivals.challenger.version,
        "champion_version": rivals.champion_version,
        "primary_metric": metric,
        "challenger_value": _value(judgement.challenger, metric),
        "champion_value": _value(judgement.champion, metric),
        "baseline_name": judgement.baseline_name,
        "baseline_value": _value(judgement.baseline, metric),
    }
    with engine.begin() as conn:
        promotion_id = record_promotion(
            conn,
            model_name=name,
            decision=decision.outcome,
            actor=actor,
            window_start=window.start,
            window_end=window.end,
            reasons=decision.reasons,
            metrics=decision.metrics,
            tearsheet=tearsheet,
            **facts,
        )
    return PromotionSummary(
        model=name,
        outcome=decision.outcome,
        promoted=decision.promote,
        forced=decision.forced,
        **facts,
        window=f"{window.start:%Y-%m-%d} .. {window.end:%Y-%m-%d}",
        window_bars=window.n_bars,
        window_narrowed=window.narrowed,
        baseline_problems=judgement.baseline_problems,
        reasons=list(decision.reasons),
        promotion_id=promotion_id,
        tearsheet=tearsheet,
    )


def rollback_champion(name: str, settings: Settings, *, engine: Engine, actor: str, reason: str = "") -> str:
    """Give ``champion`` of ``name`` back to the previous champion and record it in ``promotions``.

    Returns:
        The version that is champion again.

    Raises:
        InputError: there is no previous champion.
    """
    from models.registry import rollback
    from models.tracking import use_tracking
    from storage import record_promotion

    use_tracking(settings.mlflow_tracking_uri)
    current = get_version_by_alias(name, CHAMPION)
    try:
        restored = rollback(name, reason=reason)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    with engine.begin() as conn:
        record_promotion(
            conn,
            model_name=name,
            challenger_version=restored,
            decision="rolled_back",
            actor=actor,
            champion_version=str(current.version) if current is not None else None,
            reasons=[reason or f"rolled back to version {restored}"],
        )
    return restored


def judge_and_record(
    config: PromoteConfig,
    rivals: Rivals,
    window: ComparisonWindow,
    *,
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    baselines: Mapping[str, Mapping[str, Any]],
    problems: dict[str, str],
    data_validated: bool,
    engine: Engine,
    tearsheet: str | None = None,
) -> PromotionSummary:
    """The gate's last step for any family: pick the best baseline (:func:`gate_baseline`),
    decide (:func:`models.gate.decide`) on the comparison ``window``, apply the decision to the
    registry and record it (:func:`apply_and_record`), linking ``tearsheet``, the report of the
    backtests decided on."""
    from models.gate import GateInput, decide

    baseline_name, baseline_metrics = gate_baseline(baselines, problems, config.policy.primary_metric)
    inputs = GateInput(
        challenger=challenger,
        champion=champion,
        baseline_name=baseline_name,
        baseline=baseline_metrics,
        window_start=window.start,
        window_end=window.end,
        data_validated=data_validated,
        n_trades=int(challenger.get("trades", 0)),
        champion_problem=rivals.champion_problem or window.problem,
        window_note=window.note,
        baseline_problems=problems,
    )
    judgement = Judgement(
        decision=decide(inputs, config.policy, force=config.force),
        rivals=rivals,
        window=window,
        challenger=challenger,
        champion=champion,
        baseline_name=baseline_name,
        baseline=baseline_metrics,
        baseline_problems=problems,
    )
    return apply_and_record(
        judgement, name=config.model, actor=config.actor, engine=engine, tearsheet=tearsheet
    )
