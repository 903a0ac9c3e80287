"""FKS models: one subpackage per family behind one protocol, and the parts every family shares.

Families: :mod:`models.forecaster` (the Keras LSTM) and :mod:`models.allocator` (a
Stable-Baselines3 agent allocating between N assets and cash). Each implements
:class:`ModelFamily` (:mod:`models.family`). Shared:

- training a family on a stored series and recording it: :func:`train_and_register`;
- the registry (aliases only): :func:`register`, :func:`set_alias`, :func:`resolve_model`,
  :func:`promote`, :func:`rollback`, :func:`apply_decision`;
- the promotion gate's decision (:func:`decide` on a :class:`GateInput`, the
  :func:`comparison_window`) and its registry and record side (:mod:`models.promotion`); the gate's
  run, which backtests, is :func:`backtest.promotion.run_gate`;
- tuning (:mod:`models.tuning`), tracking (:mod:`models.tracking`), SHAP (:mod:`models.explain`),
  metrics, baselines, splits, seeding and preprocessing.

Names are imported on first use, so ``import models`` (and loading a logged pyfunc, which ships
this package) stays cheap::

    from models import get_family, resolve_model
    ref = resolve_model(f"{get_family('forecaster').registered_name}@champion")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.exports import lazy_exports

if TYPE_CHECKING:
    from models.family import AnyFamily, FamilyConfig, ModelFamily, Trained, TrainingData, get_family
    from models.gate import ComparisonWindow, Decision, GateInput, best_baseline, comparison_window, decide
    from models.metrics import regression_metrics, uplift
    from models.promotion import PromotionSummary, rollback_champion
    from models.registry import (
        CHALLENGER,
        CHAMPION,
        PREVIOUS_CHAMPION,
        ModelRef,
        apply_decision,
        get_version_by_alias,
        promote,
        register,
        resolve_model,
        rollback,
        set_alias,
    )
    from models.tracking import TrainingRecord, ensure_experiment
    from models.trainer import TrainingOutcome, train_and_register
    from models.tuning import SearchSpace, TuningResult

_EXPORTS: dict[str, str] = {
    "AnyFamily": "models.family",
    "FamilyConfig": "models.family",
    "ModelFamily": "models.family",
    "Trained": "models.family",
    "TrainingData": "models.family",
    "get_family": "models.family",
    "ComparisonWindow": "models.gate",
    "Decision": "models.gate",
    "GateInput": "models.gate",
    "best_baseline": "models.gate",
    "comparison_window": "models.gate",
    "decide": "models.gate",
    "regression_metrics": "models.metrics",
    "uplift": "models.metrics",
    "PromotionSummary": "models.promotion",
    "rollback_champion": "models.promotion",
    "CHALLENGER": "models.registry",
    "CHAMPION": "models.registry",
    "PREVIOUS_CHAMPION": "models.registry",
    "ModelRef": "models.registry",
    "apply_decision": "models.registry",
    "get_version_by_alias": "models.registry",
    "promote": "models.registry",
    "register": "models.registry",
    "resolve_model": "models.registry",
    "rollback": "models.registry",
    "set_alias": "models.registry",
    "TrainingRecord": "models.tracking",
    "ensure_experiment": "models.tracking",
    "TrainingOutcome": "models.trainer",
    "train_and_register": "models.trainer",
    "SearchSpace": "models.tuning",
    "TuningResult": "models.tuning",
}

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS_CHAMPION",
    "AnyFamily",
    "ComparisonWindow",
    "Decision",
    "FamilyConfig",
    "GateInput",
    "ModelFamily",
    "ModelRef",
    "PromotionSummary",
    "SearchSpace",
    "Trained",
    "TrainingData",
    "TrainingOutcome",
    "TrainingRecord",
    "TuningResult",
    "apply_decision",
    "best_baseline",
    "comparison_window",
    "decide",
    "ensure_experiment",
    "get_family",
    "get_version_by_alias",
    "promote",
    "register",
    "regression_metrics",
    "resolve_model",
    "rollback",
    "rollback_champion",
    "set_alias",
    "train_and_register",
    "uplift",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
