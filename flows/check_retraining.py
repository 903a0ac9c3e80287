"""The ``check-retraining`` flow: input drift of the served forecaster and the paper account's live
performance against the ``FKS_RETRAIN_*`` thresholds; when one is crossed, notify and start the
retraining deployment."""

from __future__ import annotations

from prefect import flow

from config.retraining import RetrainCheckConfig
from config.settings import Settings, get_settings
from execution.monitor import RetrainDecision
from tasks.monitor import decide_retraining, start_retraining
from tasks.notify import notify_text


@flow(name="check-retraining", validate_parameters=False)
def check_retraining(
    config: RetrainCheckConfig | None = None, settings: Settings | None = None
) -> RetrainDecision:
    """Decide whether ``config.model`` needs retraining; start ``config.deployment`` when it does
    (and ``config.start``)."""
    config = config or RetrainCheckConfig()
    settings = settings or get_settings()
    decision = decide_retraining(config, settings)
    if decision.retrain:
        started = start_retraining(config.deployment) if config.start else "not started (start: false)"
        notify_text(
            "info",
            f"retraining {config.model}: {'; '.join(decision.reasons)}",
            {"deployment": config.deployment, "flow_run": started},
            settings,
        )
    return decision


if __name__ == "__main__":
    check_retraining()
