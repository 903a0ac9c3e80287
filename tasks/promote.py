"""Prefect tasks of the promotion stage: the gate (:func:`backtest.promotion.run_gate`), and rollback
(:func:`models.promotion.rollback_champion`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from backtest.promotion import run_gate
from config.backtest import PromoteConfig
from config.settings import Settings
from models.promotion import PromotionSummary, rollback_champion
from tasks.store import store_for

__all__ = ["gate_model", "rollback_model"]


@task(name="promotion-gate", task_run_name="gate-{config.model}", cache_policy=NONE)
def gate_model(config: PromoteConfig, settings: Settings) -> PromotionSummary:
    """Backtest challenger and champion on a window out of sample for both, decide, apply, record.

    Raises:
        InputError: no challenger, a challenger whose run does not say what it was trained on,
            or no stored bars of its test window.
    """
    return run_gate(config, settings, engine=store_for(settings))


def rollback_model(model: str, settings: Settings, *, actor: str, reason: str = "") -> str:
    """Give ``champion`` back to the previous champion and record it in ``promotions``.

    Raises:
        InputError: there is no previous champion.
    """
    return rollback_champion(model, settings, engine=store_for(settings), actor=actor, reason=reason)
